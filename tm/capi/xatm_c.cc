// The C API of include/xatm/xatm.h over the C++ TransactionManager. Status
// and Outcome become XATM_* codes here, and only here; no exception leaves.
#include <atomic>
#include <cstring>
#include <new>
#include <string>
#include <unordered_map>

#include "capi/handles.h"
#include "core/config.h"
#include "core/gtrid.h"
#include "core/transaction_manager.h"
#include "log/decision_log.h"
#include "mysql/mysql_rm.h"
#include "xatm/xatm.h"


namespace {

using xtm::Status;
using xtm::tm::Outcome;

// The last error of each handle, per thread: "valid until the next call on
// that handle" holds for every thread that shares the handle.
thread_local std::unordered_map<const xatm*, std::string> tls_errors;

int SetError(const xatm* tm, int rc, const std::string& msg) {
  tls_errors[tm] = msg;
  return rc;
}

void ClearError(const xatm* tm) { tls_errors.erase(tm); }

int CodeOf(const Status& s) {
  switch (s.code()) {
    case Status::Code::kOk: return XATM_OK;
    case Status::Code::kNotFound: return XATM_ENOTFOUND;
    case Status::Code::kCorruption: return XATM_ECORRUPT;
    case Status::Code::kIOError: return XATM_ELOG;
    case Status::Code::kInvalidArgument: return XATM_EINVAL;
    case Status::Code::kBusy: return XATM_EBUSY;
    case Status::Code::kNotSupported: return XATM_ELOG;
    case Status::Code::kUnknownOutcome: return XATM_EUNKNOWN;
    case Status::Code::kFenced: return XATM_EFENCED;
  }
  return XATM_ERROR;
}

int CodeOf(Outcome o) {
  switch (o) {
    case Outcome::kOk: return XATM_OK;
    case Outcome::kRolledBack: return XATM_EROLLEDBACK;
    case Outcome::kTimedOut: return XATM_ETIMEDOUT;
    case Outcome::kPending: return XATM_EPENDING;
    case Outcome::kHeurMix: return XATM_EHEURMIX;
    case Outcome::kHeurHaz: return XATM_EHEURHAZ;
    case Outcome::kHeurRb: return XATM_EHEURRB;
    case Outcome::kUnknown: return XATM_EUNKNOWN;
    case Outcome::kInvalid: return XATM_EINVAL;
    case Outcome::kRmError: return XATM_ERM;
    case Outcome::kNotFound: return XATM_ENOTFOUND;
    case Outcome::kLogError: return XATM_ELOG;
    case Outcome::kFenced: return XATM_EFENCED;
  }
  return XATM_ERROR;
}

// Errors of opening: configuration problems and unreachable RMs are told
// apart from log problems.
int OpenCode(const Status& s) {
  if (s.IsInvalidArgument()) {
    const std::string& m = s.message();
    if (m.find("resource manager \"") != std::string::npos && m.find("cannot be opened") != std::string::npos) {
      return XATM_ERM;
    }
    if (m.find("log_dir") != std::string::npos) return XATM_ELOG;
    return XATM_ECONFIG;
  }
  return CodeOf(s);
}

int OpenWith(const xtm::tm::TmConfig& cfg, xatm** out) {
  xatm* h = new (std::nothrow) xatm;
  if (h == nullptr) return XATM_ENOMEM;
  *out = h;
  Status s = xtm::tm::TransactionManager::Open(cfg, &h->tm);
  if (!s.ok()) {
    h->open_error = s.message();
    return SetError(h, OpenCode(s), s.message());
  }
  return XATM_OK;
}

template <typename F>
int Guard(const xatm* tm, F f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return SetError(tm, XATM_ENOMEM, "out of memory");
  } catch (const std::exception& e) {
    return SetError(tm, XATM_ERROR, std::string("internal error: ") + e.what());
  } catch (...) {
    return SetError(tm, XATM_ERROR, "internal error");
  }
}

bool GtridOf(const XID* xid, std::string* gtrid) {
  if (xid == nullptr || xid->gtrid_length < 1 || xid->gtrid_length > MAXGTRIDSIZE) return false;
  gtrid->assign(xid->data, static_cast<size_t>(xid->gtrid_length));
  return true;
}

}  // namespace

extern "C" {

int xatm_open(const char* config_path, xatm** out) {
  if (out == nullptr) return XATM_EINVAL;
  *out = nullptr;
  if (config_path == nullptr) {
    xatm* h = new (std::nothrow) xatm;
    if (h == nullptr) return XATM_ENOMEM;
    *out = h;
    return SetError(h, XATM_EINVAL, "xatm_open: config_path is NULL (use xatm_open_config for a configuration built in code)");
  }
  try {
    xtm::tm::TmConfig cfg;
    Status s = xtm::tm::LoadConfig(config_path, &cfg);
    if (!s.ok()) {
      xatm* h = new xatm;
      *out = h;
      h->open_error = s.message();
      return SetError(h, XATM_ECONFIG, s.message());
    }
    return OpenWith(cfg, out);
  } catch (const std::bad_alloc&) {
    return XATM_ENOMEM;
  } catch (const std::exception& e) {
    if (*out) SetError(*out, XATM_ERROR, e.what());
    return XATM_ERROR;
  }
}

int xatm_open_config(const xatm_config* cfg, xatm** out) {
  if (out == nullptr) return XATM_EINVAL;
  *out = nullptr;
  if (cfg == nullptr) return XATM_EINVAL;
  try {
    return OpenWith(cfg->cfg, out);
  } catch (...) {
    return XATM_ERROR;
  }
}

int xatm_close(xatm* tm) {
  if (tm == nullptr) return XATM_OK;
  if (const long n = tm->transactions.load(); n > 0) {
    // Each xatm_tx points into the handle: freeing it now would leave them
    // dangling. The handle stays open and usable.
    return SetError(tm, XATM_EINVAL, "xatm_close: " + std::to_string(n) +
                                         " transaction(s) of this handle are not freed yet: finish them and "
                                         "xatm_tx_free each first (the handle is still open)");
  }
  int rc = XATM_OK;
  try {
    if (tm->tm) {
      std::string msg;
      if (tm->tm->Close(&msg) == Outcome::kPending) rc = XATM_EPENDING;
      tm->tm.reset();
    }
  } catch (...) {
    rc = XATM_ERROR;
  }
  tls_errors.erase(tm);
  delete tm;
  return rc;
}

const char* xatm_errmsg(const xatm* tm) {
  if (tm == nullptr) return "no xatm handle (NULL)";
  auto it = tls_errors.find(tm);
  return it == tls_errors.end() ? "" : it->second.c_str();
}

// --- configuration in code ---------------------------------------------------

int xatm_config_new(xatm_config** out) {
  if (out == nullptr) return XATM_EINVAL;
  *out = new (std::nothrow) xatm_config;
  return *out ? XATM_OK : XATM_ENOMEM;
}

int xatm_config_load(const char* path, xatm_config** out) {
  if (out == nullptr || path == nullptr) return XATM_EINVAL;
  *out = new (std::nothrow) xatm_config;
  if (*out == nullptr) return XATM_ENOMEM;
  try {
    Status s = xtm::tm::LoadConfig(path, &(*out)->cfg);
    if (!s.ok()) {
      (*out)->error = s.message();
      return XATM_ECONFIG;
    }
    return XATM_OK;
  } catch (...) {
    return XATM_ERROR;
  }
}

int xatm_config_set(xatm_config* cfg, const char* key, const char* value) {
  if (cfg == nullptr || key == nullptr || value == nullptr) return XATM_EINVAL;
  try {
    const std::string k = key;
    Status s = k.rfind("server.", 0) == 0 ? xtm::tm::SetServerKey(&cfg->cfg, k.substr(7), value)
                                          : xtm::tm::SetTmKey(&cfg->cfg, k, value);
    cfg->error = s.message();
    return s.ok() ? XATM_OK : XATM_ECONFIG;
  } catch (...) {
    return XATM_ERROR;
  }
}

static int AddRmSpec(xatm_config* cfg, xtm::tm::RmSpec spec) {
  try {
    Status s = xtm::tm::AddRm(&cfg->cfg, std::move(spec));
    cfg->error = s.message();
    return s.ok() ? XATM_OK : XATM_ECONFIG;
  } catch (...) {
    return XATM_ERROR;
  }
}

int xatm_config_add_pgsql(xatm_config* cfg, const char* name, const char* conninfo) {
  if (cfg == nullptr || name == nullptr || conninfo == nullptr) return XATM_EINVAL;
  xtm::tm::RmSpec r;
  r.name = name;
  r.type = xtm::tm::RmSpec::Type::kPostgres;
  r.conninfo = conninfo;
  return AddRmSpec(cfg, std::move(r));
}

int xatm_config_add_sqlite(xatm_config* cfg, const char* name, const char* xa_info) {
  if (cfg == nullptr || name == nullptr || xa_info == nullptr) return XATM_EINVAL;
  xtm::tm::RmSpec r;
  r.name = name;
  r.type = xtm::tm::RmSpec::Type::kSqlite;
  // "path=FILE [busy_timeout_ms=N]", or a bare path.
  std::string info = xa_info;
  if (info.rfind("path=", 0) != 0) info = "path=" + info;
  size_t sp = info.find(' ');
  r.path = info.substr(5, sp == std::string::npos ? std::string::npos : sp - 5);
  if (sp != std::string::npos) {
    std::string rest = info.substr(sp + 1);
    if (rest.rfind("busy_timeout_ms=", 0) == 0) {
      r.busy_timeout_ms = std::atoi(rest.c_str() + 16);
    } else if (!rest.empty()) {
      cfg->error = "xatm_config_add_sqlite: unknown option \"" + rest + "\" (known: busy_timeout_ms)";
      return XATM_ECONFIG;
    }
  }
  return AddRmSpec(cfg, std::move(r));
}

int xatm_config_add_mysql(xatm_config* cfg, const char* name, const char* xa_info) {
  if (cfg == nullptr || name == nullptr || xa_info == nullptr) return XATM_EINVAL;
  xtm::mysql::ConnParams p;
  if (std::string why = xtm::mysql::ParseConnParams(xa_info, &p); !why.empty()) {
    cfg->error = "xatm_config_add_mysql: " + why;
    return XATM_ECONFIG;
  }
  xtm::tm::RmSpec r;
  r.name = name;
  r.type = xtm::tm::RmSpec::Type::kMysql;
  r.conninfo = xa_info;
  return AddRmSpec(cfg, std::move(r));
}

int xatm_config_add_switch(xatm_config* cfg, const char* name, struct xa_switch_t* sw, const char* xa_info) {
  if (cfg == nullptr || name == nullptr || sw == nullptr) return XATM_EINVAL;
  xtm::tm::RmSpec r;
  r.name = name;
  r.type = xtm::tm::RmSpec::Type::kSwitch;
  r.sw = sw;
  r.xa_info = xa_info ? xa_info : "";
  return AddRmSpec(cfg, std::move(r));
}

const char* xatm_config_errmsg(const xatm_config* cfg) { return cfg ? cfg->error.c_str() : "no configuration (NULL)"; }

void xatm_config_free(xatm_config* cfg) { delete cfg; }

// --- transactions ----------------------------------------------------------------

int xatm_start(xatm* tm, xatm_tx** out) {
  if (out) *out = nullptr;
  if (tm == nullptr || out == nullptr) return XATM_EINVAL;
  if (!tm->tm) return SetError(tm, XATM_EINVAL, "this handle did not open: " + tm->open_error);
  return Guard(tm, [&] {
    ClearError(tm);
    auto* t = new xatm_tx;
    t->owner = tm;
    Status s = tm->tm->Begin(&t->tx);
    if (!s.ok()) {
      delete t;
      return SetError(tm, CodeOf(s), s.message());
    }
    ++tm->transactions;
    *out = t;
    return XATM_OK;
  });
}

static void* Join(xatm_tx* tx, const char* rm, xtm::tm::RmSpec::Type type) {
  if (tx == nullptr || rm == nullptr) return nullptr;
  void* native = nullptr;
  Guard(tx->owner, [&] {
    Status s = tx->tx->Join(rm, type, &native);
    if (!s.ok()) return SetError(tx->owner, s.IsBusy() ? XATM_ETIMEDOUT : CodeOf(s), s.message());
    ClearError(tx->owner);
    return XATM_OK;
  });
  return native;
}

struct pg_conn* xatm_pgconn(xatm_tx* tx, const char* rm) {
  return static_cast<struct pg_conn*>(Join(tx, rm, xtm::tm::RmSpec::Type::kPostgres));
}

struct sqlite3* xatm_sqlite(xatm_tx* tx, const char* rm) {
  return static_cast<struct sqlite3*>(Join(tx, rm, xtm::tm::RmSpec::Type::kSqlite));
}

struct st_mysql* xatm_mysql(xatm_tx* tx, const char* rm) {
  return static_cast<struct st_mysql*>(Join(tx, rm, xtm::tm::RmSpec::Type::kMysql));
}

int xatm_join(xatm_tx* tx, const char* rm) {
  if (tx == nullptr || rm == nullptr) return XATM_EINVAL;
  return Guard(tx->owner, [&] {
    void* native = nullptr;
    xtm::tm::Rm* r = tx->owner->tm->FindRm(rm);
    Status s = tx->tx->Join(rm, r ? r->spec.type : xtm::tm::RmSpec::Type::kSwitch, &native);
    if (!s.ok()) {
      int code = s.IsBusy() ? XATM_ETIMEDOUT : s.IsIOError() ? XATM_ERM : CodeOf(s);
      return SetError(tx->owner, code, s.message());
    }
    ClearError(tx->owner);
    return XATM_OK;
  });
}

static int Finish(xatm_tx* tx, Outcome (xtm::tm::Transaction::*op)(std::string*)) {
  if (tx == nullptr) return XATM_EINVAL;
  return Guard(tx->owner, [&] {
    std::string msg;
    Outcome o = (tx->tx.get()->*op)(&msg);
    int rc = CodeOf(o);
    if (rc == XATM_OK) {
      ClearError(tx->owner);
      return rc;
    }
    return SetError(tx->owner, rc, msg);
  });
}

int xatm_prepare(xatm_tx* tx) { return Finish(tx, &xtm::tm::Transaction::Prepare); }
int xatm_commit(xatm_tx* tx) { return Finish(tx, &xtm::tm::Transaction::Commit); }
int xatm_rollback(xatm_tx* tx) { return Finish(tx, &xtm::tm::Transaction::Rollback); }

void xatm_tx_free(xatm_tx* tx) {
  if (tx == nullptr) return;
  try {
    tx->tx.reset();  // rolls back an unfinished transaction
  } catch (...) {
  }
  --tx->owner->transactions;
  delete tx;
}

int xatm_tx_xid(const xatm_tx* tx, XID* out) {
  if (tx == nullptr || out == nullptr) return XATM_EINVAL;
  *out = xtm::tm::MakeXid(tx->tx->gtrid(), "");
  return XATM_OK;
}

int xatm_get_stats(xatm* tm, xatm_stats* out) {
  if (tm == nullptr || out == nullptr || !tm->tm) return XATM_EINVAL;
  *out = xatm_stats{};
  const auto c = tm->tm->counters();
  out->begun = c.begun;
  out->committed = c.committed;
  out->rolled_back = c.rolled_back;
  {
    const xtm::log::LogStats ls = tm->tm->store()->Stats();
    out->log_records = ls.records;
    out->log_writes = ls.batches;
    out->log_syncs = ls.syncs;
    out->log_max_batch = ls.max_batch;
  }
  return XATM_OK;
}

// --- recovery and administration -------------------------------------------------

int xatm_recover(xatm* tm) {
  if (tm == nullptr) return XATM_EINVAL;
  if (!tm->tm) return SetError(tm, XATM_EINVAL, "this handle did not open: " + tm->open_error);
  return Guard(tm, [&] {
    xtm::tm::RecoveryReport r;
    Status s = tm->tm->Recover(false, &r);
    if (!s.ok()) return SetError(tm, CodeOf(s), s.message());
    if (r.left > 0 || !r.unreachable.empty()) {
      std::string m = std::to_string(r.left) + " branch(es) could not be resolved now";
      for (const std::string& u : r.unreachable) m += "; unreachable: " + u;
      return SetError(tm, XATM_EPENDING, m);
    }
    ClearError(tm);
    return XATM_OK;
  });
}

int xatm_indoubt_list(xatm* tm, xatm_indoubt** out, size_t* count) {
  if (out) *out = nullptr;
  if (count) *count = 0;
  if (tm == nullptr || out == nullptr || count == nullptr) return XATM_EINVAL;
  if (!tm->tm) return SetError(tm, XATM_EINVAL, "this handle did not open: " + tm->open_error);
  return Guard(tm, [&] {
    std::vector<xtm::tm::InDoubt> list;
    std::vector<std::string> unreachable;
    Status s = tm->tm->ListInDoubt(&list, &unreachable);
    if (!s.ok()) return SetError(tm, CodeOf(s), s.message());
    auto* arr = static_cast<xatm_indoubt*>(std::calloc(list.empty() ? 1 : list.size(), sizeof(xatm_indoubt)));
    if (arr == nullptr) return SetError(tm, XATM_ENOMEM, "out of memory");
    for (size_t i = 0; i < list.size(); ++i) {
      arr[i].xid = list[i].xid;
      std::snprintf(arr[i].rm, sizeof arr[i].rm, "%s", list[i].rm.c_str());
      arr[i].decision = list[i].decision == xtm::tm::InDoubt::Decision::kCommit      ? XATM_DECISION_COMMIT
                        : list[i].decision == xtm::tm::InDoubt::Decision::kHeuristic ? XATM_DECISION_HEURISTIC
                        : list[i].decision == xtm::tm::InDoubt::Decision::kUnknown   ? XATM_DECISION_UNKNOWN
                                                                                      : XATM_DECISION_NONE;
      arr[i].ours = list[i].ours ? 1 : 0;
      arr[i].age_s = list[i].age_s;
    }
    *out = arr;
    *count = list.size();
    if (!unreachable.empty()) {
      std::string m = "listed what could be reached; unreachable:";
      for (const std::string& u : unreachable) m += " " + u;
      return SetError(tm, XATM_ERM, m);
    }
    ClearError(tm);
    return XATM_OK;
  });
}

void xatm_indoubt_free(xatm_indoubt* list) { std::free(list); }

int xatm_resolve(xatm* tm, const XID* xid, int commit, const char* who, const char* why) {
  if (tm == nullptr) return XATM_EINVAL;
  if (!tm->tm) return SetError(tm, XATM_EINVAL, "this handle did not open: " + tm->open_error);
  std::string gtrid;
  if (!GtridOf(xid, &gtrid)) return SetError(tm, XATM_EINVAL, "xatm_resolve: invalid XID");
  return Guard(tm, [&] {
    Outcome o;
    Status s = tm->tm->Resolve(gtrid, commit != 0, who ? who : "", why ? why : "", &o);
    if (!s.ok()) return SetError(tm, CodeOf(o), s.message());
    ClearError(tm);
    return XATM_OK;
  });
}

int xatm_forget(xatm* tm, const XID* xid) {
  if (tm == nullptr) return XATM_EINVAL;
  if (!tm->tm) return SetError(tm, XATM_EINVAL, "this handle did not open: " + tm->open_error);
  std::string gtrid;
  if (!GtridOf(xid, &gtrid)) return SetError(tm, XATM_EINVAL, "xatm_forget: invalid XID");
  return Guard(tm, [&] {
    Status s = tm->tm->Forget(gtrid);
    if (!s.ok()) return SetError(tm, CodeOf(s), s.message());
    ClearError(tm);
    return XATM_OK;
  });
}

}  // extern "C"
