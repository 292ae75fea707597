// Helpers shared by the benchmark drivers.
#pragma once

#include <libpq-fe.h>
#include <sqlite3.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

namespace xtm::bench {

// The p-th quantile (0..1) of v; reorders v. 0 for an empty v.
inline double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  size_t k = static_cast<size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

// The round whose `field` is the median of the rounds.
template <typename R>
R MedianBy(std::vector<R> rounds, double R::*field) {
  std::sort(rounds.begin(), rounds.end(), [field](const R& a, const R& b) { return a.*field < b.*field; });
  return rounds[rounds.size() / 2];
}

// Runs sql on c; true if it succeeded.
inline bool PgOk(PGconn* c, const std::string& sql) {
  PGresult* r = PQexec(c, sql.c_str());
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
  PQclear(r);
  return ok;
}

// A fresh table accounts (id PRIMARY KEY, balance 0) with ids first..last,
// in the PostgreSQL database of conninfo. "" or the error.
inline std::string MakePgAccounts(const std::string& conninfo, int first, int last) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  std::string err;
  if (PQstatus(c) != CONNECTION_OK) {
    err = PQerrorMessage(c);
  } else if (!PgOk(c, "SET client_min_messages = warning") || !PgOk(c, "DROP TABLE IF EXISTS accounts") ||
             !PgOk(c, "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL)") ||
             !PgOk(c, "INSERT INTO accounts SELECT g, 0 FROM generate_series(" + std::to_string(first) + ", " +
                          std::to_string(last) + ") g") ||
             !PgOk(c, "VACUUM ANALYZE accounts")) {
    err = PQerrorMessage(c);
  }
  PQfinish(c);
  return err;
}

// The same in a new SQLite file at path (WAL mode). "" or the error.
inline std::string MakeSqliteAccounts(const std::string& path, int first, int last) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  const std::string sql = "PRAGMA journal_mode = WAL;"
                          "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);"
                          "WITH RECURSIVE s(i) AS (SELECT " + std::to_string(first) +
                          " UNION ALL SELECT i + 1 FROM s WHERE i < " + std::to_string(last) +
                          ") INSERT INTO accounts SELECT i, 0 FROM s;";
  std::string err;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) err = sqlite3_errmsg(db);
  sqlite3_close(db);
  return err;
}

// "a,b,c" as its parts.
inline std::vector<std::string> List(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream s(text);
  for (std::string part; std::getline(s, part, ',');) out.push_back(part);
  return out;
}

// "1,4,16" as numbers.
inline std::vector<int> IntList(const std::string& text) {
  std::vector<int> out;
  for (const std::string& n : List(text)) out.push_back(std::atoi(n.c_str()));
  return out;
}

// The command-line options the transfer drivers (xatm-bench,
// xatm-server-bench) share.
struct TransferArgs {
  std::string pg, pg2, dir = "bench-data", csv;
  double seconds = 2;
  int rounds = 3;
  // Takes "--key value" if key is one of the shared options.
  bool Take(const std::string& k, const std::string& v) {
    if (k == "--pg") pg = v;
    else if (k == "--pg2") pg2 = v;
    else if (k == "--dir") dir = v;
    else if (k == "--csv") csv = v;
    else if (k == "--seconds") seconds = std::atof(v.c_str());
    else if (k == "--rounds") rounds = std::atoi(v.c_str());
    else return false;
    return true;
  }
};

}  // namespace xtm::bench
