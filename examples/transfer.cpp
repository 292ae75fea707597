// transfer.cpp - transfer.c in C++ (xatm.hpp): moves money from a PostgreSQL
// account to a SQLite account and back as single global transactions, then
// shows that a transfer that breaks a CHECK constraint on either side leaves
// both databases untouched. A failure is an exception; a transaction left
// unfinished (an early return, an exception) rolls back by itself.
//
//   transfer_cpp CONFIG
//
// Tables: bank_pg.sql in the PostgreSQL database ("bank"), bank_sqlite.sql in
// the SQLite file ("ledger").
#include <libpq-fe.h>
#include <sqlite3.h>

#include <cstdio>
#include <string>

#include <xatm/xatm.hpp>

namespace {

// Both balances, read inside one global transaction.
void Show(xatmpp::TransactionManager& tm, const char* when) {
  xatmpp::Transaction tx = tm.begin();
  long alice = -1, bob = -1;
  PGresult* r = PQexec(tx.pg("bank"), "SELECT balance FROM accounts WHERE name = 'alice'");
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) alice = std::stol(PQgetvalue(r, 0, 0));
  PQclear(r);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(tx.sqlite("ledger"), "SELECT balance FROM accounts WHERE name = 'bob'", -1, &st, nullptr) ==
          SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    bob = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  tx.commit();  // read-only on both sides: nothing is logged
  std::printf("  %-44s alice (PostgreSQL) %4ld   bob (SQLite) %4ld   total %ld\n", when, alice, bob, alice + bob);
}

// Moves amount from alice (PostgreSQL) to bob (SQLite); a negative amount
// moves it back. True if committed on both.
bool Transfer(xatmpp::TransactionManager& tm, int amount) {
  try {
    xatmpp::Transaction tx = tm.begin();
    const std::string a = std::to_string(amount);
    PGresult* r = PQexec(tx.pg("bank"), ("UPDATE accounts SET balance = balance - " + a + " WHERE name = 'alice'").c_str());
    if (PQresultStatus(r) != PGRES_COMMAND_OK) std::printf("    PostgreSQL refused: %s", PQresultErrorMessage(r));
    PQclear(r);
    sqlite3* db = tx.sqlite("ledger");
    if (sqlite3_exec(db, ("UPDATE accounts SET balance = balance + " + a + " WHERE name = 'bob'").c_str(), nullptr,
                     nullptr, nullptr) != SQLITE_OK) {
      std::printf("    SQLite refused: %s\n", sqlite3_errmsg(db));
      return false;  // tx goes out of scope unfinished: rolled back on both
    }
    tx.commit();
    return true;
  } catch (const xatmpp::Error& e) {
    std::printf("    not committed (%s): %s\n", xatm_errstr(e.code()), e.what());
    return false;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CONFIG\n", argv[0]);
    return 2;
  }
  try {
    xatmpp::TransactionManager tm(argv[1]);  // opens both RMs and runs recovery
    bool ok = true;
    Show(tm, "before:");
    std::printf("transfer 30 from alice to bob\n");
    ok &= Transfer(tm, 30);
    Show(tm, "committed on both:");
    std::printf("transfer 30 back from bob to alice\n");
    ok &= Transfer(tm, -30);
    Show(tm, "committed on both:");
    std::printf("transfer 5000 from alice (more than she has: CHECK fails in PostgreSQL)\n");
    ok &= !Transfer(tm, 5000);
    Show(tm, "rolled back on both:");
    std::printf("transfer 5000 from bob (more than he has: CHECK fails in SQLite)\n");
    ok &= !Transfer(tm, -5000);
    Show(tm, "rolled back on both:");
    tm.close();
    std::printf("%s\n", ok ? "transfer_cpp: every outcome as expected" : "transfer_cpp: UNEXPECTED OUTCOME");
    return ok ? 0 : 1;
  } catch (const xatmpp::Error& e) {
    std::fprintf(stderr, "transfer_cpp: %s: %s\n", xatm_errstr(e.code()), e.what());
    return 1;
  }
}
