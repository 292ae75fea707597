// The X/Open TX interface (include/xatm/tx.h) over the C API.
//
// States of a thread (the TX specification's state table):
//   S0  not open                     tx_open -> S1
//   S1  open, no transaction         tx_begin -> S3; tx_close -> S0
//   S3  in a transaction             tx_commit / tx_rollback -> S1, or with
//                                    TX_CHAINED a new transaction (S3), or
//                                    S1 with *_NO_BEGIN if it cannot start
// (the specification's S2/S4 are S1/S3 with transaction_control chained:
// the thread keeps it in `control`). Everything else is TX_PROTOCOL_ERROR.
//
// One transaction manager per process, opened by the first tx_open from
// the file XATM_CONFIG names and closed by the last tx_close. It runs with
// background_phase_two's threads so that TX_COMMIT_DECISION_LOGGED can be
// honoured per transaction; with TX_COMMIT_COMPLETED (the default unless
// the file sets background_phase_two = true) tx_commit finishes phase two
// itself.
#include "xatm/tx.h"

#include <cstdlib>
#include <mutex>
#include <string>

#include "capi/handles.h"
#include "core/config.h"
#include "xatm/xatm.h"

namespace {

std::mutex g_mu;
xatm* g_tm = nullptr;        // REQUIRES g_mu
int g_open_threads = 0;      // REQUIRES g_mu
bool g_background = false;   // the configuration's background_phase_two
int g_timeout_s = 0;         // the configuration's timeout_s

struct ThreadTx {
  bool open = false;
  xatm_tx* tx = nullptr;
  COMMIT_RETURN when_return = TX_COMMIT_COMPLETED;
  TRANSACTION_CONTROL control = TX_UNCHAINED;
  TRANSACTION_TIMEOUT timeout = 0;
  std::string error;
  ~ThreadTx();
};
thread_local ThreadTx t;

int Fail(int code, std::string why) {
  t.error = std::move(why);
  return code;
}

void CloseTmIfLast() {
  std::lock_guard<std::mutex> l(g_mu);
  if (--g_open_threads == 0 && g_tm != nullptr) {
    xatm_close(g_tm);
    g_tm = nullptr;
  }
}

// A thread that ends without tx_close: its transaction rolls back, and it
// stops counting as a user of the transaction manager.
ThreadTx::~ThreadTx() {
  if (tx != nullptr) xatm_tx_free(tx);
  tx = nullptr;
  if (open) CloseTmIfLast();
}

// Starts the thread's next transaction with its settings.
int Begin() {
  xatm_tx* tx = nullptr;
  const int rc = xatm_start(g_tm, &tx);
  if (rc != XATM_OK) {
    t.error = xatm_errmsg(g_tm);
    return rc == XATM_ENOMEM || rc == XATM_ELOG || rc == XATM_EFENCED ? TX_ERROR : TX_FAIL;
  }
  tx->tx->SetTimeout(static_cast<int>(t.timeout));
  tx->tx->SetBackgroundPhaseTwo(t.when_return == TX_COMMIT_DECISION_LOGGED);
  t.tx = tx;
  return TX_OK;
}

// The TX code of xatm_commit's or xatm_rollback's.
int CodeOf(int rc, bool commit) {
  switch (rc) {
    case XATM_OK: return TX_OK;
    case XATM_EROLLEDBACK:
    case XATM_ETIMEDOUT:
    case XATM_EFENCED: return TX_ROLLBACK;
    case XATM_EHEURMIX:
    case XATM_EHEURRB: return TX_MIXED;
    case XATM_EHEURHAZ:
    case XATM_EUNKNOWN: return TX_HAZARD;
    // Decided and durable, some branch finished later by recovery: what
    // TX_COMMIT_DECISION_LOGGED asks for, not what TX_COMMIT_COMPLETED does.
    case XATM_EPENDING: return t.when_return == TX_COMMIT_DECISION_LOGGED ? TX_OK : TX_HAZARD;
    // A rollback some branch of which is left to recovery still rolls back
    // (nothing decided it): presumed abort finishes it.
    case XATM_ERM: return commit ? TX_FAIL : TX_OK;
    default: return TX_FAIL;
  }
}

// tx_commit and tx_rollback: finish, then in chained mode begin the next.
int Finish(bool commit) {
  if (!t.open || t.tx == nullptr) {
    return Fail(TX_PROTOCOL_ERROR, std::string(commit ? "tx_commit" : "tx_rollback") + " outside a transaction");
  }
  const int rc = commit ? xatm_commit(t.tx) : xatm_rollback(t.tx);
  t.error = rc == XATM_OK ? "" : xatm_errmsg(g_tm);
  if (rc == XATM_EINVAL) return TX_PROTOCOL_ERROR;  // the transaction is as it was
  xatm_tx_free(t.tx);
  t.tx = nullptr;
  int code = CodeOf(rc, commit);
  if (code == TX_FAIL || t.control != TX_CHAINED) return code;
  const std::string why = t.error;
  if (Begin() != TX_OK) {
    t.error = (why.empty() ? "" : why + "; ") + "the next transaction could not begin: " + t.error;
    return code + TX_NO_BEGIN;
  }
  t.error = why;
  return code;
}

}  // namespace

extern "C" {

int tx_open(void) {
  t.error.clear();
  if (t.open) return TX_OK;
  std::lock_guard<std::mutex> l(g_mu);
  if (g_tm == nullptr) {
    const char* path = std::getenv("XATM_CONFIG");
    if (path == nullptr || *path == '\0') {
      return Fail(TX_FAIL, "tx_open: set the environment variable XATM_CONFIG to xatm's configuration file");
    }
    xatm_config* c = nullptr;
    if (xatm_config_new(&c) != XATM_OK) return Fail(TX_ERROR, "out of memory");
    xtm::Status s = xtm::tm::LoadConfig(path, &c->cfg);
    if (!s.ok()) {
      xatm_config_free(c);
      return Fail(TX_FAIL, "tx_open: " + s.message());
    }
    g_background = c->cfg.background_phase_two;
    g_timeout_s = c->cfg.timeout_s;
    c->cfg.background_phase_two = true;  // its threads; each transaction says whether to use them
    xatm* tm = nullptr;
    const int rc = xatm_open_config(c, &tm);
    xatm_config_free(c);
    if (rc != XATM_OK) {
      const std::string why = xatm_errmsg(tm);
      xatm_close(tm);
      // An RM or the log that cannot be reached now may be later.
      return Fail(rc == XATM_ERM || rc == XATM_ELOG || rc == XATM_EBUSY ? TX_ERROR : TX_FAIL, "tx_open: " + why);
    }
    g_tm = tm;
  }
  ++g_open_threads;
  t.open = true;
  t.when_return = g_background ? TX_COMMIT_DECISION_LOGGED : TX_COMMIT_COMPLETED;
  t.control = TX_UNCHAINED;
  t.timeout = g_timeout_s;
  return TX_OK;
}

int tx_close(void) {
  t.error.clear();
  if (!t.open) return TX_OK;
  if (t.tx != nullptr) return Fail(TX_PROTOCOL_ERROR, "tx_close inside a transaction: commit or roll it back first");
  t.open = false;
  CloseTmIfLast();
  return TX_OK;
}

int tx_begin(void) {
  t.error.clear();
  if (!t.open) return Fail(TX_PROTOCOL_ERROR, "tx_begin before tx_open");
  if (t.tx != nullptr) return Fail(TX_PROTOCOL_ERROR, "tx_begin inside a transaction (one per thread)");
  return Begin();
}

int tx_commit(void) {
  t.error.clear();
  return Finish(/*commit=*/true);
}

int tx_rollback(void) {
  t.error.clear();
  return Finish(/*commit=*/false);
}

int tx_info(TXINFO* info) {
  t.error.clear();
  if (!t.open) return Fail(TX_PROTOCOL_ERROR, "tx_info before tx_open");
  if (info != nullptr) {
    *info = TXINFO{};
    info->xid.formatID = -1;  // the null XID outside a transaction
    if (t.tx != nullptr) xatm_tx_xid(t.tx, &info->xid);
    info->when_return = t.when_return;
    info->transaction_control = t.control;
    info->transaction_timeout = t.timeout;
    info->transaction_state = t.tx != nullptr && t.tx->tx->timed_out() ? TX_TIMEOUT_ROLLBACK_ONLY : TX_ACTIVE;
  }
  return t.tx != nullptr ? 1 : 0;
}

int tx_set_commit_return(COMMIT_RETURN when_return) {
  t.error.clear();
  if (!t.open) return Fail(TX_PROTOCOL_ERROR, "tx_set_commit_return before tx_open");
  if (when_return != TX_COMMIT_COMPLETED && when_return != TX_COMMIT_DECISION_LOGGED) {
    return Fail(TX_EINVAL, "when_return must be TX_COMMIT_COMPLETED or TX_COMMIT_DECISION_LOGGED");
  }
  t.when_return = when_return;
  if (t.tx != nullptr) t.tx->tx->SetBackgroundPhaseTwo(when_return == TX_COMMIT_DECISION_LOGGED);
  return TX_OK;
}

int tx_set_transaction_control(TRANSACTION_CONTROL control) {
  t.error.clear();
  if (!t.open) return Fail(TX_PROTOCOL_ERROR, "tx_set_transaction_control before tx_open");
  if (control != TX_UNCHAINED && control != TX_CHAINED) return Fail(TX_EINVAL, "control must be TX_UNCHAINED or TX_CHAINED");
  t.control = control;
  return TX_OK;
}

int tx_set_transaction_timeout(TRANSACTION_TIMEOUT timeout) {
  t.error.clear();
  if (!t.open) return Fail(TX_PROTOCOL_ERROR, "tx_set_transaction_timeout before tx_open");
  if (timeout < 0 || timeout > 86400L * 365) return Fail(TX_EINVAL, "the timeout is seconds, 0 for none");
  t.timeout = timeout;  // from the next tx_begin on
  return TX_OK;
}

}  // extern "C"

namespace {

// A handle of the current transaction, or NULL with the reason kept.
template <typename Handle>
Handle* Native(const char* rm, Handle* (*get)(xatm_tx*, const char*)) {
  if (t.tx == nullptr) {
    t.error = "outside a transaction: call tx_begin first";
    return nullptr;
  }
  Handle* h = get(t.tx, rm);
  t.error = h ? "" : xatm_errmsg(g_tm);
  return h;
}

}  // namespace

extern "C" {

struct pg_conn* xatm_tx_pgconn(const char* rm) { return Native(rm, xatm_pgconn); }
struct sqlite3* xatm_tx_sqlite(const char* rm) { return Native(rm, xatm_sqlite); }
struct st_mysql* xatm_tx_mysql(const char* rm) { return Native(rm, xatm_mysql); }

const char* xatm_tx_errmsg(void) { return t.error.c_str(); }

}  // extern "C"
