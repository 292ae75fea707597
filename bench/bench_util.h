// Helpers shared by the benchmark drivers.
#pragma once

#include <libpq-fe.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
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

// CPU seconds (user + system) used so far by this process, every thread.
inline double ProcessCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return secs(ru.ru_utime) + secs(ru.ru_stime);
}

// CPU seconds used so far by a PostgreSQL cluster: its postmaster (from
// DATA/postmaster.pid) and the children alive now (backends, WAL writer,
// checkpointer...). -1 if it cannot be read.
inline double ClusterCpuSeconds(const std::string& data_dir) {
  std::ifstream pidf(data_dir + "/postmaster.pid");
  long pm = 0;
  if (!(pidf >> pm) || pm <= 0) return -1;
  long ticks = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream st(e.path() / "stat");
    std::string line;
    if (!std::getline(st, line)) continue;  // gone meanwhile
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::string state;
    long ppid = 0, skip = 0, utime = 0, stime = 0;
    rest >> state >> ppid;
    for (int i = 0; i < 9; ++i) rest >> skip;  // pgrp .. cmajflt
    rest >> utime >> stime;
    if (std::stol(name) == pm || ppid == pm) ticks += utime + stime;
  }
  return static_cast<double>(ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
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

// Walks argv: an option named in flags is a bare switch (its bool is set);
// every other one takes the next argument as its value, given to
// take(key, value), which says whether it knows the key. Returns "" or what
// is wrong.
inline std::string Options(int argc, char** argv, const std::vector<std::pair<const char*, bool*>>& flags,
                           const std::function<bool(const std::string&, const std::string&)>& take) {
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto flag = std::find_if(flags.begin(), flags.end(), [&](const auto& f) { return k == f.first; });
    if (flag != flags.end()) {
      *flag->second = true;
    } else if (i + 1 >= argc) {
      return "give a value after " + k;
    } else if (!take(k, argv[++i])) {
      return "unknown option " + k;
    }
  }
  return "";
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
