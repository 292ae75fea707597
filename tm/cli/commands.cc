// The subcommands of the xatm admin tool. Each is one function: list, show,
// recover, commit/rollback, forget, log dump, log verify, health.
#include <libpq-fe.h>
#include <pwd.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <ctime>
#include <functional>
#include <iomanip>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "cli/json.h"
#include "common/xid_util.h"
#include "core/config.h"
#include "core/gtrid.h"
#include "core/transaction_manager.h"
#include "log/decision_log.h"
#include "mysql/mysql_rm.h"
#include "pgsql/gid.h"
#include "server/client.h"
#include "sqlite/sqlite_rm.h"
#include "store/decision_store.h"
#include "store/postgres_store.h"
#include "util/coding.h"
#include "util/version.h"

namespace po = boost::program_options;

namespace xtm::cli {
namespace {

struct Options {
  std::string command, sub;
  std::vector<std::string> args;
  std::string config, log_dir, op, reason, server, token_file, node;
  bool json = false, force = false, dry_run = false;
  int64_t warn_age_s = 60;
  int64_t warn_xid_age = 10000000;
};

struct Ctx {
  Options o;
  std::ostream& out;
  std::ostream& err;
  tm::TmConfig cfg;
  tm::TransactionManager* tm = nullptr;
  std::unique_ptr<tm::TransactionManager> owned_tm;
  tm::TransactionManager* server_tm = nullptr;  // run inside xatmd: its TM, its log
  bool log_owned_elsewhere = false;  // a running process holds the log
};

// One prepared branch, as the RMs report it.
struct Branch {
  std::string rm;
  XID xid{};
  int64_t age_s = -1;
  std::string note;  // e.g. a recorded hazard
};

// Everything known about one global transaction.
struct Txn {
  std::string gtrid;
  std::vector<Branch> branches;
  bool ours = false;
  bool live = false;
  bool decided = false;  // a COMMIT record without END
  bool heuristic = false;
  bool unknown = false;  // a decision row may exist where it cannot be read now
  int64_t decided_age_s = -1;
  std::string decision_row;  // the RM whose last-resource row decided it
  std::string DecisionText() const {
    return Decision() + (decision_row.empty() ? "" : " (a last-resource decision row in " + decision_row + ")");
  }
  std::string Plan() const {
    if (!ours) return "none: another TM's transaction";
    if (heuristic) return "none: a heuristic outcome is recorded (xatm forget when dealt with)";
    if (decided) return branches.empty() ? "write END" : "commit (decided)";
    if (live) return "none: in flight in the running TM";
    if (unknown) {
      return "none for now: its decision cannot be known (a resource manager that may hold its decision row is "
             "unreachable, or a transaction that may be committing it holds its lock)";
    }
    return "roll back (no decision: presumed abort)";
  }
  std::string Decision() const {
    return heuristic ? "heuristic" : decided ? "commit" : unknown ? "unknown" : "none";
  }
  int64_t OldestAge() const {
    int64_t a = -1;
    for (const Branch& b : branches) a = std::max(a, b.age_s);
    return a;
  }
};

std::string XidKey(const XID& x) {
  return std::to_string(x.formatID) + ":" + std::string(rm::Gtrid(x)) + ":" + std::string(rm::Bqual(x));
}

std::string Age(int64_t s) {
  if (s < 0) return "?";
  if (s < 120) return std::to_string(s) + "s";
  if (s < 7200) return std::to_string(s / 60) + "m";
  if (s < 172800) return std::to_string(s / 3600) + "h";
  return std::to_string(s / 86400) + "d";
}

std::string LoginName() {
  if (const char* u = ::getenv("SUDO_USER")) return u;
  if (struct passwd* pw = ::getpwuid(::geteuid())) return pw->pw_name;
  return "unknown";
}

int Fail(Ctx& c, int code, const std::string& msg) {
  c.err << "xatm: " << msg << "\n";
  return code;
}

int ExitFor(const Status& s) {
  if (s.IsCorruption()) return kExitCorruptLog;
  if (s.IsBusy()) return kExitLogBusy;
  if (s.IsInvalidArgument() && s.message().find("cannot be opened") != std::string::npos) return kExitRmUnreachable;
  if (s.IsInvalidArgument() || s.IsNotSupported()) return kExitBadInput;
  return kExitFailed;
}

int LoadConfig(Ctx& c) {
  if (c.o.config.empty()) return Fail(c, kExitBadInput, "--config FILE is required for this command");
  Status s = tm::LoadConfig(c.o.config, &c.cfg);
  if (!s.ok()) return Fail(c, kExitBadInput, s.message());
  c.cfg.log_level = "off";  // the tool reports on its own output
  return kExitOk;
}

// Opens the TM without recovery. read_only: looking only; if a running
// process owns the log, refuse unless --force.
int OpenTm(Ctx& c, bool read_only) {
  if (c.server_tm) {
    c.tm = c.server_tm;
    c.cfg = c.tm->config();
    return kExitOk;
  }
  if (int r = LoadConfig(c); r != kExitOk) return r;
  if (!c.cfg.server.empty()) {
    return Fail(c, kExitBadInput,
                c.o.config + " names xatmd ([tm] server = " + c.cfg.server + "): its log belongs to the server; "
                "use xatm --server " + c.cfg.server + " " + c.o.command);
  }
  tm::OpenOptions opt;
  opt.read_only = read_only;
  opt.recover = false;
  opt.tolerate_unreachable_rms = true;
  Status s = tm::TransactionManager::Open(c.cfg, &c.owned_tm, opt);
  if (s.IsBusy() && read_only && c.o.force) {
    opt.force = true;
    c.log_owned_elsewhere = true;
    s = tm::TransactionManager::Open(c.cfg, &c.owned_tm, opt);
  }
  c.tm = c.owned_tm.get();
  if (s.IsBusy()) {
    return Fail(c, kExitLogBusy,
                s.message() + (read_only ? "\n  To look anyway (read-only, nothing changes): add --force."
                                         : "\n  Resolve through that process, or stop it first."));
  }
  if (!s.ok()) return Fail(c, ExitFor(s), s.message());
  return kExitOk;
}

bool ParseGtrid(Ctx& c, const std::string& hex, std::string* gtrid) {
  if (!tm::FromHex(hex, gtrid) || gtrid->empty() || gtrid->size() > MAXGTRIDSIZE) {
    Fail(c, kExitBadInput, "\"" + hex + "\" is not a gtrid: give it in hex, as `xatm list` shows it");
    return false;
  }
  return true;
}

using SqliteHandle = std::unique_ptr<sqlite3, decltype(&sqlite3_close)>;

// The SQLite RM's sidecar, opened read-only so that looking never takes a
// write lock; empty when it cannot be opened (e.g. nothing was ever prepared).
SqliteHandle OpenSidecar(const tm::RmSpec& spec) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(sqlite::SidecarPath(spec.path).c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    db = nullptr;
  }
  return SqliteHandle(db, &sqlite3_close);
}

// Ages and notes of prepared branches, read from each RM directly.
void Inspect(Ctx& c, std::map<std::string, Branch>* by_xid) {
  for (const auto& rm : c.tm->rms()) {
    if (rm->spec.type == tm::RmSpec::Type::kPostgres) {
      PGconn* pg = PQconnectdb(rm->spec.conninfo.c_str());
      if (PQstatus(pg) == CONNECTION_OK) {
        PGresult* r = PQexec(pg, "SELECT gid, extract(epoch FROM now() - prepared)::bigint FROM pg_prepared_xacts "
                                 "WHERE database = current_database()");
        for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); ++i) {
          XID x;
          if (!pgsql::GidToXid(PQgetvalue(r, i, 0), &x)) continue;
          Branch& b = (*by_xid)[rm->spec.name + "|" + XidKey(x)];
          b.age_s = std::atoll(PQgetvalue(r, i, 1));
        }
        PQclear(r);
      }
      PQfinish(pg);
    } else if (rm->spec.type == tm::RmSpec::Type::kSqlite) {
      if (SqliteHandle side = OpenSidecar(rm->spec)) {
        sqlite3* db = side.get();
        sqlite3_stmt* st = nullptr;
        if (sqlite3_prepare_v2(db, "SELECT format_id, gtrid, bqual, strftime('%s','now') - prepared_at, "
                                   "coalesce(hazard, '') FROM prepared", -1, &st, nullptr) == SQLITE_OK) {
          while (sqlite3_step(st) == SQLITE_ROW) {
            XID x;
            std::string g(static_cast<const char*>(sqlite3_column_blob(st, 1)), sqlite3_column_bytes(st, 1));
            const void* bq = sqlite3_column_blob(st, 2);
            std::string q(bq ? static_cast<const char*>(bq) : "", sqlite3_column_bytes(st, 2));
            if (!rm::MakeXid(static_cast<long>(sqlite3_column_int64(st, 0)), g, q, &x)) continue;
            Branch& b = (*by_xid)[rm->spec.name + "|" + XidKey(x)];
            b.age_s = sqlite3_column_int64(st, 3);
            const unsigned char* h = sqlite3_column_text(st, 4);
            if (h && *h) b.note = reinterpret_cast<const char*>(h);
          }
        }
        sqlite3_finalize(st);
      }
    }
  }
}

// Every in-doubt global transaction: from the RMs and the log.
int Collect(Ctx& c, std::map<std::string, Txn>* txns, std::vector<std::string>* unreachable) {
  std::vector<tm::InDoubt> list;
  Status s = c.tm->ListInDoubt(&list, unreachable);
  if (!s.ok()) return Fail(c, ExitFor(s), s.message());
  std::map<std::string, Branch> details;
  Inspect(c, &details);
  log::LogState st;
  if (Status ss = c.tm->DecisionState(&st); !ss.ok()) return Fail(c, ExitFor(ss), ss.message());
  const uint64_t now_ms = log::NowMs();
  const bool writer_alive = c.log_owned_elsewhere;
  for (const tm::InDoubt& d : list) {
    const std::string g(rm::Gtrid(d.xid));
    Txn& t = (*txns)[g];
    t.gtrid = g;
    t.ours = d.ours;
    t.decided = t.decided || d.decision == tm::InDoubt::Decision::kCommit;
    t.unknown = t.unknown || d.decision == tm::InDoubt::Decision::kUnknown;
    if (!d.decision_row.empty()) t.decision_row = d.decision_row;
    Branch b;
    b.rm = d.rm;
    b.xid = d.xid;
    auto it = details.find(d.rm + "|" + XidKey(d.xid));
    if (it != details.end()) {
      b.age_s = it->second.age_s;
      b.note = it->second.note;
    }
    t.branches.push_back(b);
    // Live only if the process that owns the log is running and made it.
    t.live = d.live && (writer_alive || c.server_tm != nullptr);
  }
  for (const auto& [g, commit] : st.open_commits) {
    Txn& t = (*txns)[g];
    t.gtrid = g;
    t.ours = true;
    t.decided = true;
    t.decided_age_s = static_cast<int64_t>((now_ms - commit.time_ms) / 1000);
  }
  for (const auto& [key, h] : st.heuristics) {
    Txn& t = (*txns)[std::get<0>(key)];
    t.gtrid = std::get<0>(key);
    t.ours = true;
    t.heuristic = true;
  }
  return kExitOk;
}

void PrintUnreachable(Ctx& c, const std::vector<std::string>& unreachable) {
  for (const std::string& u : unreachable) c.err << "xatm: resource manager unreachable: " << u << "\n";
}

// --------------------------------------------------------------------------

int CmdList(Ctx& c) {
  if (int r = OpenTm(c, /*read_only=*/true); r != kExitOk) return r;
  std::map<std::string, Txn> txns;
  std::vector<std::string> unreachable;
  if (int r = Collect(c, &txns, &unreachable); r != kExitOk) return r;
  if (c.o.json) {
    Json j;
    j.BeginObject().Key("transactions").BeginArray();
    for (const auto& [g, t] : txns) {
      j.BeginObject().Field("gtrid", tm::ToHex(g)).Field("ours", t.ours).Field("decision", t.Decision());
      if (!t.decision_row.empty()) j.Field("decision_row", t.decision_row);
      j.Field("oldest_prepared_age_s", t.OldestAge()).Field("plan", t.Plan()).Key("branches").BeginArray();
      for (const Branch& b : t.branches) {
        j.BeginObject().Field("rm", b.rm).Field("state", "prepared").Field("bqual", tm::ToHex(rm::Bqual(b.xid)));
        j.Field("format_id", static_cast<int64_t>(b.xid.formatID)).Field("age_s", b.age_s);
        if (!b.note.empty()) j.Field("note", b.note);
        j.EndObject();
      }
      j.EndArray().EndObject();
    }
    j.EndArray().Key("unreachable").BeginArray();
    for (const std::string& u : unreachable) j.Value(u);
    j.EndArray().EndObject();
    c.out << j.str() << "\n";
  } else if (txns.empty()) {
    c.out << "nothing in doubt\n";
  } else {
    c.out << std::left << std::setw(42) << "GTRID" << std::setw(10) << "DECISION" << std::setw(8) << "AGE"
          << "BRANCHES / PLAN\n";
    for (const auto& [g, t] : txns) {
      std::string branches;
      for (const Branch& b : t.branches) branches += (branches.empty() ? "" : ", ") + b.rm + " prepared";
      if (branches.empty()) branches = "no branch left in any RM";
      c.out << std::setw(42) << tm::ToHex(g) << std::setw(10) << t.Decision() << std::setw(8)
            << Age(t.OldestAge() >= 0 ? t.OldestAge() : t.decided_age_s) << branches << "\n"
            << std::setw(60) << "" << "-> " << t.Plan() << "\n";
    }
  }
  PrintUnreachable(c, unreachable);
  if (!unreachable.empty()) return kExitRmUnreachable;
  return txns.empty() ? kExitOk : kExitInDoubt;
}

int CmdShow(Ctx& c) {
  if (c.o.args.size() != 1) return Fail(c, kExitBadInput, "usage: xatm show GTRID");
  std::string g;
  if (!ParseGtrid(c, c.o.args[0], &g)) return kExitBadInput;
  if (int r = OpenTm(c, /*read_only=*/true); r != kExitOk) return r;
  std::map<std::string, Txn> txns;
  std::vector<std::string> unreachable;
  if (int r = Collect(c, &txns, &unreachable); r != kExitOk) return r;
  log::LogScan scan;
  Status s = log::ScanLog(c.cfg.log_dir, &scan);
  if (!s.ok()) return Fail(c, ExitFor(s), s.message());
  struct Rec {
    std::string where, type, what;
  };
  std::vector<Rec> records;
  for (const log::LoggedRecord& r : scan.records) {
    Rec out{r.segment + ":" + std::to_string(r.offset), log::RecordTypeName(r.type), ""};
    if (r.type == log::RecordType::kCommit) {
      log::CommitRecord x;
      if (!log::Decode(r.payload, &x).ok() || x.gtrid != g) continue;
      for (const auto& b : x.branches) out.what += (out.what.empty() ? "branches: " : ", ") + b.rm;
    } else if (r.type == log::RecordType::kEnd) {
      log::EndRecord x;
      if (!log::Decode(r.payload, &x).ok() || x.gtrid != g) continue;
    } else if (r.type == log::RecordType::kHeuristic) {
      log::HeuristicRecord x;
      if (!log::Decode(r.payload, &x).ok() || x.gtrid != g) continue;
      out.what = std::string(log::HeuristicOutcomeName(x.outcome)) + (x.rm.empty() ? "" : " on " + x.rm) +
                 " by " + x.who + ": " + x.why;
    } else if (r.type == log::RecordType::kForget) {
      log::ForgetRecord x;
      if (!log::Decode(r.payload, &x).ok() || x.gtrid != g) continue;
    } else {
      continue;
    }
    records.push_back(out);
  }
  auto it = txns.find(g);
  if (it == txns.end() && records.empty()) {
    return Fail(c, kExitBadInput, "no transaction " + tm::ToHex(g) + " in the decision log or any resource manager");
  }
  Txn t = it != txns.end() ? it->second : Txn{g};
  tm::GtridParts p;
  const bool xatm_form = tm::ParseGtrid(g, &p);
  if (c.o.json) {
    Json j;
    j.BeginObject().Field("gtrid", tm::ToHex(g)).Field("ours", t.ours || !records.empty());
    if (xatm_form) j.Field("node", tm::ToHex(p.node_id)).Field("incarnation", static_cast<int64_t>(p.incarnation));
    j.Field("decision", t.Decision());
    if (!t.decision_row.empty()) j.Field("decision_row", t.decision_row);
    j.Field("plan", t.Plan()).Key("branches").BeginArray();
    for (const Branch& b : t.branches) {
      j.BeginObject().Field("rm", b.rm).Field("state", "prepared").Field("bqual", tm::ToHex(rm::Bqual(b.xid)));
      j.Field("age_s", b.age_s);
      if (!b.note.empty()) j.Field("note", b.note);
      j.EndObject();
    }
    j.EndArray().Key("log").BeginArray();
    for (const Rec& r : records) j.BeginObject().Field("at", r.where).Field("type", r.type).Field("detail", r.what).EndObject();
    j.EndArray().EndObject();
    c.out << j.str() << "\n";
  } else {
    c.out << "gtrid      " << tm::ToHex(g) << "\n";
    if (xatm_form) c.out << "made by    node " << tm::ToHex(p.node_id) << ", incarnation " << p.incarnation
                         << ", sequence " << p.sequence << "\n";
    c.out << "decision   " << t.DecisionText() << "\n";
    for (const Branch& b : t.branches) {
      c.out << "branch     " << b.rm << ": prepared " << Age(b.age_s) << " ago (bqual " << tm::ToHex(rm::Bqual(b.xid))
            << ")" << (b.note.empty() ? "" : " - " + b.note) << "\n";
    }
    if (t.branches.empty()) c.out << "branches   none left in any reachable resource manager\n";
    for (const Rec& r : records) c.out << "log        " << r.where << " " << r.type << (r.what.empty() ? "" : " " + r.what) << "\n";
    c.out << "plan       " << t.Plan() << "\n";
  }
  PrintUnreachable(c, unreachable);
  return unreachable.empty() ? kExitOk : kExitRmUnreachable;
}

int CmdRecover(Ctx& c) {
  // Another node's transactions: this node's own decisions are not touched,
  // so its lease (held by a running application) is not needed.
  const bool other_node = !c.o.node.empty();
  if (int r = OpenTm(c, /*read_only=*/c.o.dry_run || other_node); r != kExitOk) return r;
  tm::RecoveryReport rep;
  Status s = other_node ? c.tm->RecoverNode(c.o.node, c.o.force, c.o.dry_run, &rep) : c.tm->Recover(c.o.dry_run, &rep);
  if (s.IsBusy() && other_node) {
    return Fail(c, kExitLogBusy, s.message());
  }
  if (!s.ok()) return Fail(c, ExitFor(s), s.message());
  if (c.o.json) {
    Json j;
    j.BeginObject().Field("dry_run", c.o.dry_run).Key("actions").BeginArray();
    for (const std::string& a : rep.actions) j.Value(a);
    j.EndArray().Field("committed", rep.committed).Field("rolled_back", rep.rolled_back);
    j.Field("ended", rep.ended).Field("left", rep.left).Key("unreachable").BeginArray();
    for (const std::string& u : rep.unreachable) j.Value(u);
    j.EndArray().EndObject();
    c.out << j.str() << "\n";
  } else {
    if (rep.actions.empty()) c.out << "nothing to do\n";
    for (const std::string& a : rep.actions) c.out << (c.o.dry_run ? "would " : "") << a << "\n";
    if (!c.o.dry_run) {
      c.out << rep.committed << " committed, " << rep.rolled_back << " rolled back, " << rep.ended << " ended, "
            << rep.left << " left\n";
    }
  }
  PrintUnreachable(c, rep.unreachable);
  if (!rep.unreachable.empty()) return kExitRmUnreachable;
  return rep.left > 0 ? kExitInDoubt : kExitOk;
}

int CmdResolve(Ctx& c, bool commit) {
  const char* verb = commit ? "commit" : "rollback";
  if (c.o.args.size() != 1) return Fail(c, kExitBadInput, std::string("usage: xatm ") + verb + " GTRID --reason TEXT");
  std::string g;
  if (!ParseGtrid(c, c.o.args[0], &g)) return kExitBadInput;
  if (c.o.reason.empty()) {
    return Fail(c, kExitBadInput, std::string("say why with --reason: a decision by hand is recorded with who and why"));
  }
  if (int r = OpenTm(c, /*read_only=*/false); r != kExitOk) return r;
  tm::Outcome o;
  const std::string who = c.o.op.empty() ? LoginName() : c.o.op;
  Status s = c.tm->Resolve(g, commit, who, c.o.reason, &o, c.o.force);
  if (!s.ok()) {
    int code = o == tm::Outcome::kNotFound ? kExitBadInput
               : o == tm::Outcome::kRmError ? kExitRmUnreachable
                                            : kExitFailed;
    return Fail(c, code, s.message());
  }
  if (c.o.json) {
    Json j;
    j.BeginObject().Field("gtrid", tm::ToHex(g)).Field("action", verb).Field("operator", who);
    j.Field("reason", c.o.reason).EndObject();
    c.out << j.str() << "\n";
  } else {
    c.out << (commit ? "committed " : "rolled back ") << tm::ToHex(g) << " (recorded: by " << who << ", \""
          << c.o.reason << "\")\n";
  }
  return kExitOk;
}

int CmdForget(Ctx& c) {
  if (c.o.args.size() != 1) return Fail(c, kExitBadInput, "usage: xatm forget GTRID");
  std::string g;
  if (!ParseGtrid(c, c.o.args[0], &g)) return kExitBadInput;
  if (int r = OpenTm(c, /*read_only=*/false); r != kExitOk) return r;
  Status s = c.tm->Forget(g);
  if (s.IsNotFound()) return Fail(c, kExitBadInput, s.message());
  if (!s.ok()) return Fail(c, kExitFailed, s.message());
  c.out << (c.o.json ? "{\"gtrid\":\"" + tm::ToHex(g) + "\",\"forgotten\":true}" : "forgot the heuristic outcome of " + tm::ToHex(g)) << "\n";
  return kExitOk;
}

std::string LogDir(Ctx& c, int* code) {
  *code = kExitOk;
  if (!c.o.log_dir.empty()) return c.o.log_dir;
  if (c.server_tm) return c.server_tm->config().log_dir;
  if ((*code = LoadConfig(c)) != kExitOk) return "";
  return c.cfg.log_dir;
}

void DescribeRecord(const log::LoggedRecord& r, Json* j, std::string* text) {
  std::string gtrid, detail;
  switch (r.type) {
    case log::RecordType::kNode: {
      log::NodeRecord x;
      if (log::Decode(r.payload, &x).ok()) {
        detail = "node " + tm::ToHex(x.node_id) + " (" + x.node_name + "), incarnation " + std::to_string(x.incarnation);
      }
      break;
    }
    case log::RecordType::kCommit: {
      log::CommitRecord x;
      if (log::Decode(r.payload, &x).ok()) {
        gtrid = x.gtrid;
        for (const auto& b : x.branches) detail += (detail.empty() ? "branches: " : ", ") + b.rm;
      }
      break;
    }
    case log::RecordType::kEnd: {
      log::EndRecord x;
      if (log::Decode(r.payload, &x).ok()) gtrid = x.gtrid;
      break;
    }
    case log::RecordType::kHeuristic: {
      log::HeuristicRecord x;
      if (log::Decode(r.payload, &x).ok()) {
        gtrid = x.gtrid;
        detail = std::string(log::HeuristicOutcomeName(x.outcome)) + (x.rm.empty() ? "" : " on " + x.rm) + " by " +
                 x.who + ": " + x.why;
      }
      break;
    }
    case log::RecordType::kForget: {
      log::ForgetRecord x;
      if (log::Decode(r.payload, &x).ok()) gtrid = x.gtrid;
      break;
    }
    case log::RecordType::kBatch: break;  // framing; ScanLog leaves them out
  }
  if (j) {
    j->BeginObject().Field("segment", r.segment).Field("offset", static_cast<int64_t>(r.offset));
    j->Field("type", log::RecordTypeName(r.type));
    if (!gtrid.empty()) j->Field("gtrid", tm::ToHex(gtrid));
    if (!detail.empty()) j->Field("detail", detail);
    j->EndObject();
  }
  if (text) {
    std::ostringstream s;
    s << std::left << std::setw(26) << r.segment << std::right << std::setw(9) << r.offset << "  " << std::left
      << std::setw(10) << log::RecordTypeName(r.type) << tm::ToHex(gtrid)
      << (!gtrid.empty() && !detail.empty() ? " " : "") << detail;
    *text = s.str();
  }
}

// `log dump`: every record, a line (or a JSON object) each.
int DumpRecords(Ctx& c, const log::LogScan& scan) {
  if (c.o.json) {
    Json j;
    j.BeginObject().Key("records").BeginArray();
    for (const auto& r : scan.records) DescribeRecord(r, &j, nullptr);
    j.EndArray().EndObject();
    c.out << j.str() << "\n";
  } else {
    for (const auto& r : scan.records) {
      std::string line;
      DescribeRecord(r, nullptr, &line);
      c.out << line << "\n";
    }
  }
  return kExitOk;
}

// `log dump|verify` of a postgresql store: every node's records, each node
// as a segment.
int StoreLog(Ctx& c, const std::string& conninfo) {
  log::LogScan scan;
  std::vector<std::string> problems;
  Status s = store::PostgresStore::ScanRecords(conninfo, &scan, &problems);
  if (!s.ok()) return Fail(c, ExitFor(s), s.message());
  if (c.o.args[0] == "verify") {
    if (c.o.json) {
      Json j;
      j.BeginObject().Field("ok", problems.empty()).Field("records", static_cast<int64_t>(scan.records.size()));
      j.Field("nodes", static_cast<int64_t>(scan.segments.size())).Key("problems").BeginArray();
      for (const std::string& p : problems) j.Value(p);
      j.EndArray().EndObject();
      c.out << j.str() << "\n";
    } else {
      for (const std::string& p : problems) c.out << "bad record: " << p << "\n";
      c.out << "decision store: " << scan.records.size() << " records of " << scan.segments.size() << " node(s), "
            << (problems.empty() ? "every one good" : std::to_string(problems.size()) + " bad") << "\n";
    }
    return problems.empty() ? kExitOk : kExitCorruptLog;
  }
  return DumpRecords(c, scan);
}

// `store init`: the schema, once, by a role that may create it; `store
// nodes`: the nodes, their leases and who took them over.
int CmdStore(Ctx& c) {
  if (c.o.args.size() != 1 || (c.o.args[0] != "init" && c.o.args[0] != "nodes")) {
    return Fail(c, kExitBadInput, "usage: xatm -c FILE store init|nodes");
  }
  if (!c.server_tm) {
    if (int r = LoadConfig(c); r != kExitOk) return r;
  }
  const tm::TmConfig& cfg = c.server_tm ? c.server_tm->config() : c.cfg;
  if (cfg.log_store != tm::TmConfig::LogStore::kPostgres) {
    return Fail(c, kExitBadInput, "the configuration keeps its decisions in log_dir, not in a postgresql store "
                                  "([tm] log_store = postgresql and log_conninfo)");
  }
  if (c.o.args[0] == "init") {
    Status s = store::PostgresStore::InitSchema(cfg.log_conninfo);
    if (!s.ok()) return Fail(c, kExitFailed, s.message());
    c.out << "the schema xatm is ready; a role of the nodes needs: GRANT USAGE ON SCHEMA xatm TO r; GRANT SELECT, "
             "INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA xatm TO r; GRANT EXECUTE ON FUNCTION "
             "xatm.check_epoch(bytea, bigint) TO r\n";
    return kExitOk;
  }
  std::vector<store::StoreNode> nodes;
  Status s = store::PostgresStore::ListNodes(cfg.log_conninfo, &nodes);
  if (!s.ok()) return Fail(c, ExitFor(s), s.message());
  bool waiting = false;
  for (const store::StoreNode& n : nodes) waiting = waiting || (n.lease_left_s < 0 && !n.settled);
  if (c.o.json) {
    Json j;
    j.BeginObject().Key("nodes").BeginArray();
    for (const store::StoreNode& n : nodes) {
      j.BeginObject().Field("name", n.name).Field("node_id", n.node_id_hex).Field("owner", n.owner);
      j.Field("incarnation", static_cast<int64_t>(n.incarnation)).Field("epoch", static_cast<int64_t>(n.epoch));
      j.Field("lease_left_s", n.lease_left_s).Field("settled", n.settled);
      j.Field("taken_over_upto", static_cast<int64_t>(n.taken_over_upto)).Field("taken_over_by", n.taken_over_by);
      j.Field("open_decisions", n.open_decisions).Field("resource_managers", n.rms).EndObject();
    }
    j.EndArray().EndObject();
    c.out << j.str() << "\n";
  } else {
    c.out << std::left << std::setw(16) << "NODE" << std::setw(8) << "INC" << std::setw(8) << "EPOCH" << std::setw(12)
          << "LEASE" << std::setw(10) << "DECIDED" << "STATE\n";
    for (const store::StoreNode& n : nodes) {
      const std::string state = n.lease_left_s >= 0 ? "held by " + n.owner
                                : n.settled       ? "stopped, nothing left"
                                                  : "expired: to be taken over";
      c.out << std::setw(16) << n.name << std::setw(8) << n.incarnation << std::setw(8) << n.epoch << std::setw(12)
            << (n.lease_left_s >= 0 ? std::to_string(n.lease_left_s) + "s left" : Age(-n.lease_left_s) + " ago")
            << std::setw(10) << n.open_decisions << state << "\n";
      if (!n.taken_over_by.empty()) {
        c.out << "  incarnations up to " << n.taken_over_upto << " taken over (" << n.taken_over_by << ")\n";
      }
    }
  }
  return waiting ? kExitInDoubt : kExitOk;
}

int CmdLog(Ctx& c) {
  if (c.o.args.size() != 1 || (c.o.args[0] != "dump" && c.o.args[0] != "verify")) {
    return Fail(c, kExitBadInput, "usage: xatm log dump|verify");
  }
  int code;
  const std::string dir = LogDir(c, &code);
  if (code != kExitOk) return code;
  const tm::TmConfig& cfg = c.server_tm ? c.server_tm->config() : c.cfg;
  if (c.o.log_dir.empty() && cfg.log_store == tm::TmConfig::LogStore::kPostgres) return StoreLog(c, cfg.log_conninfo);
  log::LogScan scan;
  Status s = log::ScanLog(dir, &scan);
  if (!s.ok()) return Fail(c, ExitFor(s), s.message());
  if (c.o.args[0] == "verify") {
    if (c.o.json) {
      Json j;
      j.BeginObject().Field("ok", true).Field("records", static_cast<int64_t>(scan.records.size()));
      j.Field("segments", static_cast<int64_t>(scan.segments.size())).Field("torn_tail", scan.torn_tail).EndObject();
      c.out << j.str() << "\n";
    } else {
      c.out << dir << ": " << scan.records.size() << " records in " << scan.segments.size()
            << " segment(s), every checksum good";
      if (scan.torn_tail) {
        c.out << "; the newest segment ends in an incomplete record at offset " << scan.torn_offset
              << " (a torn tail: cut at the next open)";
      }
      c.out << "\n";
    }
    return kExitOk;
  }
  return DumpRecords(c, scan);
}

int CmdHealth(Ctx& c) {
  if (int r = OpenTm(c, /*read_only=*/true); r != kExitOk) return r;
  struct RmHealth {
    std::string name, type, error;
    int64_t in_doubt = 0, oldest_s = -1;
    int64_t max_prepared = -1, prepared_cluster = -1, xid_age = -1;
    std::vector<std::string> warnings;
  };
  std::vector<RmHealth> rows;
  bool unreachable = false, warned = false;
  for (const auto& rm : c.tm->rms()) {
    RmHealth h;
    h.name = rm->spec.name;
    h.type = tm::RmTypeName(rm->spec.type);
    if (rm->spec.type == tm::RmSpec::Type::kPostgres) {
      PGconn* pg = PQconnectdb(rm->spec.conninfo.c_str());
      if (PQstatus(pg) != CONNECTION_OK) {
        h.error = PQerrorMessage(pg);
        while (!h.error.empty() && h.error.back() == '\n') h.error.pop_back();
      } else {
        PGresult* r = PQexec(pg,
            "SELECT current_setting('max_prepared_transactions')::bigint, "
            "(SELECT count(*) FROM pg_prepared_xacts), "
            "(SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()), "
            "(SELECT coalesce(max(extract(epoch FROM now() - prepared)), -1)::bigint FROM pg_prepared_xacts "
            "  WHERE database = current_database()), "
            "(SELECT coalesce(max(age(transaction)), -1) FROM pg_prepared_xacts)");
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
          h.max_prepared = std::atoll(PQgetvalue(r, 0, 0));
          h.prepared_cluster = std::atoll(PQgetvalue(r, 0, 1));
          h.in_doubt = std::atoll(PQgetvalue(r, 0, 2));
          h.oldest_s = std::atoll(PQgetvalue(r, 0, 3));
          h.xid_age = std::atoll(PQgetvalue(r, 0, 4));
        } else {
          h.error = PQresultErrorMessage(r);
        }
        PQclear(r);
        if (h.max_prepared > 0 && h.max_prepared - h.prepared_cluster <= std::max<int64_t>(1, h.max_prepared / 10)) {
          h.warnings.push_back("only " + std::to_string(h.max_prepared - h.prepared_cluster) +
                               " prepared-transaction slot(s) left of " + std::to_string(h.max_prepared));
        }
        if (h.xid_age >= c.o.warn_xid_age) {
          h.warnings.push_back("a prepared transaction holds back the xmin horizon by " + std::to_string(h.xid_age) +
                               " transactions: VACUUM cannot remove dead rows newer than it");
        }
      }
      PQfinish(pg);
    } else if (rm->spec.type == tm::RmSpec::Type::kMysql) {
      // Server-wide: XA branches belong to the server, not to a database.
      if (!mysql::PreparedSummary(rm->spec.conninfo, &h.in_doubt, &h.oldest_s, &h.error)) h.in_doubt = 0;
    } else if (rm->spec.type == tm::RmSpec::Type::kSqlite) {
      if (SqliteHandle side = OpenSidecar(rm->spec)) {
        sqlite3* db = side.get();
        sqlite3_stmt* st = nullptr;
        if (sqlite3_prepare_v2(db, "SELECT count(*), coalesce(max(strftime('%s','now') - prepared_at), -1) "
                                   "FROM prepared", -1, &st, nullptr) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW) {
          h.in_doubt = sqlite3_column_int64(st, 0);
          h.oldest_s = sqlite3_column_int64(st, 1);
        }
        sqlite3_finalize(st);
      }
    }
    if (h.oldest_s >= c.o.warn_age_s) {
      h.warnings.push_back("a branch has been prepared for " + Age(h.oldest_s) + " (threshold " + Age(c.o.warn_age_s) + ")");
    }
    unreachable = unreachable || !h.error.empty();
    warned = warned || !h.warnings.empty() || h.in_doubt > 0;
    rows.push_back(std::move(h));
  }
  store::StoreHealth store;
  const Status store_status = c.tm->store()->Health(&store);
  unreachable = unreachable || !store_status.ok();
  warned = warned || !store.warnings.empty();
  if (c.o.json) {
    Json j;
    j.BeginObject().Key("store").BeginObject().Field("kind", store.kind).Field("reachable", store_status.ok());
    if (!store_status.ok()) j.Field("error", store_status.message());
    for (const auto& [k, v] : store.facts) j.Field(k, v);
    j.Key("warnings").BeginArray();
    for (const std::string& w : store.warnings) j.Value(w);
    j.EndArray().EndObject();
    j.Key("resource_managers").BeginArray();
    for (const RmHealth& h : rows) {
      j.BeginObject().Field("name", h.name).Field("type", h.type).Field("reachable", h.error.empty());
      if (!h.error.empty()) j.Field("error", h.error);
      j.Field("in_doubt", h.in_doubt).Field("oldest_prepared_age_s", h.oldest_s);
      if (h.max_prepared >= 0) {
        j.Field("max_prepared_transactions", h.max_prepared).Field("prepared_in_cluster", h.prepared_cluster);
        j.Field("slots_left", h.max_prepared - h.prepared_cluster).Field("xmin_held_back_by", h.xid_age);
      }
      j.Key("warnings").BeginArray();
      for (const std::string& w : h.warnings) j.Value(w);
      j.EndArray().EndObject();
    }
    j.EndArray().EndObject();
    c.out << j.str() << "\n";
  } else {
    c.out << std::left << std::setw(14) << "RM" << std::setw(12) << "TYPE" << std::setw(10) << "IN DOUBT"
          << std::setw(9) << "OLDEST" << std::setw(14) << "SLOTS LEFT" << "XMIN HELD BACK\n";
    for (const RmHealth& h : rows) {
      c.out << std::setw(14) << h.name << std::setw(12) << h.type;
      if (!h.error.empty()) {
        c.out << "UNREACHABLE: " << h.error << "\n";
        continue;
      }
      c.out << std::setw(10) << h.in_doubt << std::setw(9) << (h.oldest_s >= 0 ? Age(h.oldest_s) : "-")
            << std::setw(14)
            << (h.max_prepared >= 0 ? std::to_string(h.max_prepared - h.prepared_cluster) + "/" + std::to_string(h.max_prepared) : "-")
            << (h.xid_age >= 0 ? std::to_string(h.xid_age) + " xids" : "-") << "\n";
      for (const std::string& w : h.warnings) c.out << "  warning: " << w << "\n";
    }
    if (store.kind != "file") {
      c.out << "\ndecision store: " << store.kind << "\n";
      if (!store_status.ok()) c.out << "  UNREACHABLE: " << store_status.message() << "\n";
      for (const auto& [k, v] : store.facts) c.out << "  " << k << ": " << v << "\n";
      for (const std::string& w : store.warnings) c.out << "  warning: " << w << "\n";
    }
  }
  if (unreachable) return kExitRmUnreachable;
  return warned ? kExitInDoubt : kExitOk;
}

// --------------------------------------------------------------------------

const char kUsage[] = R"(xatm - find, explain and resolve in-doubt transactions of the xatm transaction manager

usage: xatm [--config FILE] [--json] COMMAND [ARGS] [OPTIONS]

commands:
  list                     every in-doubt global transaction: branches, the log's decision, age, plan
  show GTRID               everything known about one transaction, with its log records
  recover [--dry-run]      apply the log's decisions; --dry-run prints the plan only
  recover --node NAME      take node NAME of a postgresql store over and resolve its transactions
                           (refused while its lease is live, unless --force)
  commit GTRID             commit every branch by hand (a heuristic decision, recorded)
  rollback GTRID           roll every branch back by hand (a heuristic decision, recorded)
  forget GTRID             clear a recorded heuristic outcome once dealt with
  log dump                 every record of the decision log (of a postgresql store: of every node)
  log verify               check every checksum (every record); non-zero exit on corruption
  health                   per RM: in-doubt count, oldest age, PostgreSQL slots left and xmin held back;
                           a postgresql store: its standbys, and nodes waiting to be taken over
  store init               create the postgresql store's schema (as a role that may)
  store nodes              the nodes of a postgresql store: incarnation, epoch, lease, takeovers

options:
  -c, --config FILE        the TM's configuration (the applications' file)
  --server ADDRESS         work through a running xatmd (unix:/path or tcp:host:port; several,
                           comma-separated: the one that leads); the log and the RM connections
                           are the server's
  --token-file FILE        the shared secret for a tcp: server (default: [server] token_file of --config)
  --json                   machine-readable output
  --force                  list/show/health while a running process owns the log (read-only);
                           commit/rollback against the log's decision; recover --node while the
                           node's lease is live (it then fails every commit it attempts)
  --node NAME              recover: the node of a postgresql store to take over
  --operator NAME          who decides (default: your login name)
  --reason TEXT            why (required for commit and rollback)
  --log-dir DIR            for `log dump|verify` without a configuration
  --warn-age-s N           health: warn about branches prepared longer (default 60)
  --warn-xid-age N         health: warn when prepared transactions hold back the xmin horizon
                           by this many transactions (default 10000000)
  -h, --help               this text;  --version  the version

exit codes:
  0 ok   1 something is in doubt   2 bad input   3 corrupt log   4 RM unreachable
  5 the log is owned by a running process   6 refused or failed

examples:
  xatm -c /etc/app/xatm.conf list
  xatm -c /etc/app/xatm.conf show 5a1c...09
  xatm -c /etc/app/xatm.conf recover --dry-run
  xatm -c /etc/app/xatm.conf recover --node billing-7
  xatm -c /etc/app/xatm.conf rollback 5a1c...09 --reason "customer cancelled; ticket 4711"
  xatm --log-dir /var/lib/xatm/log log verify
  xatm -c /etc/app/xatm.conf health --json
  xatm --server unix:/run/xatm/xatmd.sock list
)";

}  // namespace

// The command line again, for xatmd to run: what was parsed, with the
// operator made explicit (the server's login is not the operator's).
std::vector<std::string> ForServer(const Options& o, const std::vector<std::string>& words) {
  std::vector<std::string> a(words);
  if (o.json) a.push_back("--json");
  if (o.force) a.push_back("--force");
  if (o.dry_run) a.push_back("--dry-run");
  a.insert(a.end(), {"--operator", o.op.empty() ? LoginName() : o.op});
  if (!o.reason.empty()) a.insert(a.end(), {"--reason", o.reason});
  if (!o.log_dir.empty()) a.insert(a.end(), {"--log-dir", o.log_dir});
  if (!o.node.empty()) a.insert(a.end(), {"--node", o.node});
  a.insert(a.end(), {"--warn-age-s", std::to_string(o.warn_age_s), "--warn-xid-age", std::to_string(o.warn_xid_age)});
  return a;
}

int ThroughServer(Ctx& c, const std::vector<std::string>& words) {
  server::ClientOptions co;
  // Several (active/passive): whichever leads answers.
  Status s = server::ParseAddressList(c.o.server, &co.servers);
  if (!s.ok()) return Fail(c, kExitBadInput, "--server: " + s.message());
  co.address = co.servers.front();
  bool tcp = false;
  for (const server::Address& a : co.servers) tcp = tcp || !a.unix_socket;
  std::string token_file = c.o.token_file;
  if (token_file.empty() && !c.o.config.empty() && tcp) {
    if (int r = LoadConfig(c); r != kExitOk) return r;
    token_file = c.cfg.srv.token_file;
  }
  if (tcp) {
    if (token_file.empty()) return Fail(c, kExitBadInput, "a tcp: server needs --token-file FILE (or --config with [server] token_file)");
    s = server::ReadTokenFile(token_file, &co.token);
    if (!s.ok()) return Fail(c, kExitBadInput, s.message());
  }
  co.admin = true;
  co.client_name = "xatm " + LoginName();
  co.reconnect_ms = 0;
  std::unique_ptr<server::ServerClient> client;
  s = server::ServerClient::Connect(co, &client);
  if (!s.ok()) return Fail(c, kExitFailed, s.message());  // unreachable, or refused (token, uid)
  std::string payload, body;
  const std::vector<std::string> args = ForServer(c.o, words);
  PutFixed32(&payload, static_cast<uint32_t>(args.size()));
  for (const std::string& a : args) PutBytes(&payload, a);
  s = client->Call(server::Kind::kAdmin, payload, &body);
  client->Close();
  if (!s.ok()) return Fail(c, kExitFailed, "xatmd at " + c.o.server + ": " + s.message());
  Decoder d(body);
  uint32_t code = 0;
  std::string o, e;
  if (!d.GetFixed32(&code) || !d.GetBytes(&o, server::kMaxFrame) || !d.GetBytes(&e, server::kMaxFrame)) {
    return Fail(c, kExitFailed, "xatmd at " + c.o.server + " sent a malformed reply");
  }
  c.out << o;
  c.err << e;
  return static_cast<int>(code);
}

int RunImpl(int argc, char** argv, std::ostream& out, std::ostream& err, tm::TransactionManager* server_tm) {
  Ctx c{Options{}, out, err};
  c.server_tm = server_tm;
  po::options_description desc;
  desc.add_options()("config,c", po::value(&c.o.config))("json", po::bool_switch(&c.o.json))(
      "server", po::value(&c.o.server))("token-file", po::value(&c.o.token_file))(
      "force", po::bool_switch(&c.o.force))("dry-run", po::bool_switch(&c.o.dry_run))(
      "operator", po::value(&c.o.op))("reason", po::value(&c.o.reason))("log-dir", po::value(&c.o.log_dir))("node", po::value(&c.o.node))(
      "warn-age-s", po::value(&c.o.warn_age_s))("warn-xid-age", po::value(&c.o.warn_xid_age))("help,h", "")(
      "version", "")("words", po::value<std::vector<std::string>>());
  po::positional_options_description pos;
  pos.add("words", -1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(desc).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    err << "xatm: " << e.what() << "\n(xatm --help for usage)\n";
    return kExitBadInput;
  }
  if (vm.count("version")) {
    out << "xatm " << VersionWithCommit() << "\n";
    return kExitOk;
  }
  std::vector<std::string> words = vm.count("words") ? vm["words"].as<std::vector<std::string>>() : std::vector<std::string>();
  if (vm.count("help") || words.empty() || words[0] == "help") {
    out << kUsage << "\n" << tm::ConfigKeysHelp();
    return words.empty() && !vm.count("help") ? kExitBadInput : kExitOk;
  }
  c.o.command = words[0];
  c.o.args.assign(words.begin() + 1, words.end());
  if (server_tm && (!c.o.server.empty() || !c.o.config.empty())) {
    err << "xatm: --server and --config are not taken through the server\n";
    return kExitBadInput;
  }
  if (!c.o.server.empty()) return ThroughServer(c, words);
  try {
    static const std::map<std::string, std::function<int(Ctx&)>> kCommands = {
        {"list", CmdList},
        {"show", CmdShow},
        {"recover", CmdRecover},
        {"commit", [](Ctx& x) { return CmdResolve(x, true); }},
        {"rollback", [](Ctx& x) { return CmdResolve(x, false); }},
        {"forget", CmdForget},
        {"log", CmdLog},
        {"health", CmdHealth},
        {"store", CmdStore},
    };
    auto it = kCommands.find(c.o.command);
    if (it == kCommands.end()) {
      err << "xatm: unknown command \"" << c.o.command << "\" (xatm --help for the list)\n";
      return kExitBadInput;
    }
    return it->second(c);
  } catch (const std::exception& e) {
    err << "xatm: internal error: " << e.what() << "\n";
    return kExitFailed;
  }
}

int Run(int argc, char** argv, std::ostream& out, std::ostream& err) {
  return RunImpl(argc, argv, out, err, nullptr);
}

int RunOnServer(const std::vector<std::string>& args, tm::TransactionManager* server_tm, std::ostream& out,
                std::ostream& err) {
  std::vector<std::string> a = {"xatm"};
  a.insert(a.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : a) argv.push_back(s.data());
  return RunImpl(static_cast<int>(argv.size()), argv.data(), out, err, server_tm);
}

}  // namespace xtm::cli
