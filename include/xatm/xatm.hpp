// xatm.hpp - the C++ interface of xatm (C++17, header-only, over xatm.h).
//
//   #include <xatm/xatm.hpp>
//   xatmpp::TransactionManager tm("app.conf");   // throws xatmpp::Error
//   xatmpp::Transaction tx = tm.begin();
//   PGconn  *pg = tx.pg("bank");                 // joins the branch; throws on failure
//   sqlite3 *db = tx.sqlite("ledger");
//   ...
//   tx.commit();                                 // throws xatmpp::Error; code() is the XATM_E* value
//
// A Transaction destroyed before commit() or rollback() rolls back (a
// destructor never throws). Both types are move-only. The transaction
// manager closes when the last of it and its transactions goes, whatever
// the order. The namespace is
// xatmpp because C++ forbids a namespace named like the C handle type xatm;
// the C API stays usable from C++ as it is.
#ifndef XATM_XATM_HPP
#define XATM_XATM_HPP

#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "xatm.h"

namespace xatmpp {

// A failure of xatm: what() says why (the handle's message), code() is the
// XATM_E* value of the C API.
class Error : public std::runtime_error {
 public:
  Error(int code, const std::string& message)
      : std::runtime_error(message.empty() ? std::string(xatm_errstr(code)) : message), code_(code) {}
  int code() const noexcept { return code_; }
  // Some branch was completed heuristically (XATM_EHEURMIX, XATM_EHEURHAZ,
  // XATM_EHEURRB): the outcome is recorded; an operator looks at it.
  bool heuristic() const noexcept {
    return code_ == XATM_EHEURMIX || code_ == XATM_EHEURHAZ || code_ == XATM_EHEURRB;
  }
  // Commit was decided and is durable, but some branch is finished later
  // (XATM_EPENDING): do not run the transaction again.
  bool committed() const noexcept { return code_ == XATM_EPENDING; }
  // Nothing was committed anywhere (XATM_EROLLEDBACK, XATM_ETIMEDOUT,
  // XATM_EFENCED): the transaction may be run again.
  bool rolled_back() const noexcept {
    return code_ == XATM_EROLLEDBACK || code_ == XATM_ETIMEDOUT || code_ == XATM_EFENCED;
  }

 private:
  int code_;
};

// One in-doubt branch (xatm_indoubt_list).
struct InDoubt {
  XID xid;
  std::string rm;
  int decision;  // XATM_DECISION_*
  bool ours;     // made by this TM node
  long long age_s;
};

class TransactionManager;

namespace detail {
// The C handle, closed with the last owner (the manager and its transactions).
struct Handle {
  xatm* tm = nullptr;
  explicit Handle(xatm* t) noexcept : tm(t) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { xatm_close(tm); }
};
}  // namespace detail

// One global transaction. Belongs to the thread that began it.
class Transaction {
 public:
  Transaction(Transaction&& o) noexcept : handle_(std::move(o.handle_)), tm_(o.tm_), tx_(std::exchange(o.tx_, nullptr)) {}
  Transaction& operator=(Transaction&& o) noexcept {
    if (this != &o) {
      xatm_tx_free(tx_);
      handle_ = std::move(o.handle_);
      tm_ = o.tm_;
      tx_ = std::exchange(o.tx_, nullptr);
    }
    return *this;
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  // Rolls back what is not finished; never throws.
  ~Transaction() { xatm_tx_free(tx_); }  // before handle_ may close the manager

  // The native handle of resource manager `rm`'s branch, started on first
  // use. Borrowed: valid until the transaction ends.
  struct pg_conn* pg(const std::string& rm) { return Native(rm, xatm_pgconn); }
  struct sqlite3* sqlite(const std::string& rm) { return Native(rm, xatm_sqlite); }
  // MYSQL*. A MySQL RM may hand out another connection in the next transaction.
  struct st_mysql* mysql(const std::string& rm) { return Native(rm, xatm_mysql); }
  // Starts the branch of any RM without its handle (a third-party switch).
  void join(const std::string& rm) { Check(xatm_join(Tx(), rm.c_str())); }

  // Phase one only; then commit() or rollback().
  void prepare() { Check(xatm_prepare(Tx())); }
  // Both phases (or phase two after prepare()). Throws unless every branch
  // is committed: Error::rolled_back(), committed(), heuristic() tell apart.
  void commit() { Check(xatm_commit(Tx())); }
  void rollback() { Check(xatm_rollback(Tx())); }
  // The global XID (formatID and gtrid).
  XID xid() const {
    XID x{};
    if (xatm_tx_xid(tx_, &x) != XATM_OK) throw Error(XATM_EINVAL, "the transaction was moved from");
    return x;
  }
  xatm_tx* native() const noexcept { return tx_; }

 private:
  friend class TransactionManager;
  Transaction(std::shared_ptr<detail::Handle> handle, xatm_tx* tx) noexcept
      : handle_(std::move(handle)), tm_(handle_->tm), tx_(tx) {}
  xatm_tx* Tx() const {
    if (tx_ == nullptr) throw Error(XATM_EINVAL, "the transaction was moved from");
    return tx_;
  }
  void Check(int rc) const {
    if (rc != XATM_OK) throw Error(rc, xatm_errmsg(tm_));
  }
  template <typename Handle>
  Handle* Native(const std::string& rm, Handle* (*get)(xatm_tx*, const char*)) {
    // xatm_join says why a branch cannot start (no such RM, unreachable);
    // the typed accessor then says whether the RM is of that type.
    Check(xatm_join(Tx(), rm.c_str()));
    Handle* h = get(tx_, rm.c_str());
    if (h == nullptr) throw Error(XATM_EINVAL, xatm_errmsg(tm_));
    return h;
  }

  std::shared_ptr<detail::Handle> handle_;
  xatm* tm_;
  xatm_tx* tx_;
};

// A transaction manager: opens the configuration's RMs and runs recovery.
class TransactionManager {
 public:
  explicit TransactionManager(const std::string& config_path) {
    xatm* tm = nullptr;
    const int rc = xatm_open(config_path.c_str(), &tm);
    if (rc != XATM_OK) {
      const std::string why = xatm_errmsg(tm);
      xatm_close(tm);
      throw Error(rc, why);
    }
    handle_ = std::make_shared<detail::Handle>(tm);
  }
  TransactionManager(TransactionManager&& o) noexcept = default;
  TransactionManager& operator=(TransactionManager&& o) noexcept = default;
  TransactionManager(const TransactionManager&) = delete;
  TransactionManager& operator=(const TransactionManager&) = delete;
  // The manager closes (what could not be finished is left to recovery) when
  // the last of it and its Transactions is gone. Never throws.
  ~TransactionManager() = default;
  // Closes now, and says if something was left to recovery (XATM_EPENDING)
  // or a Transaction is still alive (XATM_EINVAL: nothing closed).
  void close() {
    if (!handle_) return;
    const int rc = xatm_close(handle_->tm);
    if (rc == XATM_EINVAL) throw Error(rc, xatm_errmsg(handle_->tm));
    handle_->tm = nullptr;  // closed
    handle_.reset();
    if (rc != XATM_OK) throw Error(rc, "closed; some branches are left to recovery");
  }

  Transaction begin() {
    xatm_tx* tx = nullptr;
    Check(xatm_start(Tm(), &tx));
    return Transaction(handle_, tx);
  }
  // Recovery now: commits what was decided, rolls back what no one can decide.
  void recover() { Check(xatm_recover(Tm())); }
  // In-doubt branches across the log and every RM; changes nothing.
  std::vector<InDoubt> in_doubt() {
    xatm_indoubt* list = nullptr;
    std::size_t n = 0;
    const int rc = xatm_indoubt_list(Tm(), &list, &n);
    if (rc != XATM_OK && rc != XATM_ERM) Check(rc);
    std::vector<InDoubt> out;
    out.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      out.push_back({list[i].xid, list[i].rm, list[i].decision, list[i].ours != 0, list[i].age_s});
    }
    xatm_indoubt_free(list);
    if (rc == XATM_ERM) throw Error(rc, xatm_errmsg(handle_->tm));
    return out;
  }
  xatm* native() const noexcept { return handle_ ? handle_->tm : nullptr; }

 private:
  xatm* Tm() const {
    if (!handle_) throw Error(XATM_EINVAL, "the transaction manager is closed or was moved from");
    return handle_->tm;
  }
  void Check(int rc) const {
    if (rc != XATM_OK) throw Error(rc, xatm_errmsg(handle_ ? handle_->tm : nullptr));
  }
  std::shared_ptr<detail::Handle> handle_;
};

}  // namespace xatmpp

#endif  // XATM_XATM_HPP
