#include "store/postgres_store.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "core/gtrid.h"

namespace xtm::store {

struct Waiter {
  Status status;
  bool done = false;
  std::condition_variable cv;
};

namespace {

using Clock = std::chrono::steady_clock;

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

struct ConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using Conn = std::unique_ptr<PGconn, ConnDeleter>;

// The store's own SQLSTATE for a decision refused because the node's epoch
// moved (a takeover).
constexpr char kFencedState[] = "XA001";

const char kSchema[] = R"(
CREATE SCHEMA IF NOT EXISTS xatm;
CREATE TABLE IF NOT EXISTS xatm.node (
  name text PRIMARY KEY,
  node_id bytea NOT NULL UNIQUE,
  incarnation bigint NOT NULL,
  epoch bigint NOT NULL,
  lease_until timestamptz NOT NULL,
  owner text NOT NULL,
  taken_over_upto bigint NOT NULL DEFAULT 0,
  taken_over_by text);
CREATE TABLE IF NOT EXISTS xatm.record (
  node_id bytea NOT NULL,
  type smallint NOT NULL,
  gtrid bytea NOT NULL,
  rm text NOT NULL DEFAULT '',
  bqual bytea NOT NULL DEFAULT '',
  payload bytea NOT NULL,
  PRIMARY KEY (node_id, type, gtrid, rm, bqual));
CREATE TABLE IF NOT EXISTS xatm.backend (
  node_id bytea NOT NULL,
  incarnation bigint NOT NULL,
  rm text NOT NULL,
  pid integer NOT NULL,
  backend_start text NOT NULL,
  PRIMARY KEY (node_id, rm, pid, backend_start));
CREATE OR REPLACE FUNCTION xatm.check_epoch(n bytea, e bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  -- FOR SHARE (not FOR KEY SHARE): a takeover's epoch bump waits for this
  -- transaction, and this one for a bump in progress.
  PERFORM 1 FROM xatm.node WHERE node_id = n AND epoch = e FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'the node was taken over: its epoch is no longer %', e USING ERRCODE = 'XA001';
  END IF;
END $$;
)";

std::string Hex(const std::string& b) { return tm::ToHex(b); }
std::string Bytea(const std::string& b) { return "'\\x" + Hex(b) + "'::bytea"; }

// A text literal for names we made or validated (node and RM names: letters,
// digits, '_', '-'; owners and backend start times: no quotes), doubled
// quotes all the same.
std::string Text(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

std::string Message(PGconn* c, const PGresult* r) {
  std::string m = r ? PQresultErrorMessage(r) : "";
  if (m.empty() && c) m = PQerrorMessage(c);
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m.empty() ? "no result from the server" : m;
}

bool Ok(const Result& r) {
  return r && (PQresultStatus(r.get()) == PGRES_COMMAND_OK || PQresultStatus(r.get()) == PGRES_TUPLES_OK);
}

std::string RandomNodeId() {
  std::string id(8, '\0');
  size_t got = 0;
  while (got < id.size()) {
    const ssize_t n = ::getrandom(&id[got], id.size() - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
    else if (errno != EINTR) break;
  }
  return id;
}

std::string HostName() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "?";
  return buf;
}

// Who holds a lease: host/pid/random, so that a reopen of the same process is
// another owner, and a dead process on this host is recognised.
std::string MakeOwner() {
  return HostName() + "/" + std::to_string(::getpid()) + "/" + Hex(RandomNodeId().substr(0, 4));
}

// Whether owner names a process of this host that no longer runs.
bool OwnerIsDeadHere(const std::string& owner) {
  const size_t a = owner.find('/'), b = owner.find('/', a + 1);
  if (a == std::string::npos || b == std::string::npos || owner.substr(0, a) != HostName()) return false;
  const pid_t pid = static_cast<pid_t>(std::atol(owner.substr(a + 1, b - a - 1).c_str()));
  return pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH;
}

Status Connect(const std::string& conninfo, Conn* out) {
  out->reset(PQconnectdb(conninfo.c_str()));
  if (PQstatus(out->get()) != CONNECTION_OK) {
    return Status::IOError("cannot connect to the decision store: " + Message(out->get(), nullptr));
  }
  return Status::OK();
}

// Notices of the writer's connection: a COMMIT whose wait for the synchronous
// standby was cancelled returns success with a warning (PITFALLS 39).
void NoteSyncRepCancel(void* arg, const PGresult* r) {
  const char* m = PQresultErrorMessage(r);
  if (m && std::strstr(m, "canceling wait for synchronous replication")) *static_cast<bool*>(arg) = true;
}

}  // namespace

// The node's standing: the incarnation and epoch it claimed; ended when the
// lease loop finds the epoch moved (a takeover) or the lease claimed by
// another process.
class PostgresStore::NodeSession final : public Session {
 public:
  NodeSession(uint32_t incarnation, uint64_t epoch) : incarnation_(incarnation), epoch_(epoch) {}
  uint32_t incarnation() const override { return incarnation_; }
  uint64_t epoch() const { return epoch_; }
  Status Check() override {
    std::lock_guard<std::mutex> l(mu_);
    return why_.empty() ? Status::OK() : Status::Fenced(why_);
  }
  void End(const std::string& why) {
    std::lock_guard<std::mutex> l(mu_);
    if (why_.empty()) why_ = why;
  }

 private:
  const uint32_t incarnation_;
  const uint64_t epoch_;
  std::mutex mu_;
  std::string why_;  // REQUIRES mu_: why it ended; empty while it holds
};

// ---------------------------------------------------------------------------
// Opening: the schema and the node's claim

Status PostgresStore::Open(const PostgresStoreOptions& opts, std::unique_ptr<DecisionStore>* out) {
  out->reset();
  std::unique_ptr<PostgresStore> store(new PostgresStore(opts));
  Conn c;
  Status s = Connect(opts.conninfo, &c);
  if (!s.ok()) return s;
  {
    Result have(PQexec(c.get(), "SELECT to_regclass('xatm.node') IS NOT NULL AND to_regclass('xatm.record') IS NOT "
                                "NULL AND to_regclass('xatm.backend') IS NOT NULL"));
    const bool ready = Ok(have) && std::strcmp(PQgetvalue(have.get(), 0, 0), "t") == 0;
    if (!ready) {
      if (opts.read_only) return Status::NotFound("the decision store has no xatm schema yet: nothing was ever decided there");
      // Two nodes may create it at once: the loser's error is ignored if the
      // schema is there after all.
      Result r(PQexec(c.get(), kSchema));
      if (!Ok(r)) {
        const std::string why = Message(c.get(), r.get());
        Result again(PQexec(c.get(), "SELECT to_regclass('xatm.record') IS NOT NULL"));
        if (!Ok(again) || std::strcmp(PQgetvalue(again.get(), 0, 0), "t") != 0) {
          return Status::InvalidArgument(
              "the decision store's schema xatm cannot be created: " + why +
              ". Create it once as a role that may (xatm store init), and grant this role USAGE on the schema "
              "and SELECT, INSERT, UPDATE, DELETE on its tables");
        }
      }
    }
  }
  if (opts.read_only) {
    Result r(PQexec(c.get(), ("SELECT encode(node_id, 'hex'), incarnation, epoch FROM xatm.node WHERE name = " +
                              Text(opts.node_name)).c_str()));
    if (!Ok(r)) return Status::IOError("cannot read the decision store: " + Message(c.get(), r.get()));
    if (PQntuples(r.get()) == 0) return Status::NotFound("no node " + opts.node_name + " in the decision store");
    tm::FromHex(PQgetvalue(r.get(), 0, 0), &store->node_id_);
    store->current_ = std::make_shared<NodeSession>(static_cast<uint32_t>(std::atoll(PQgetvalue(r.get(), 0, 1))),
                                                    std::strtoull(PQgetvalue(r.get(), 0, 2), nullptr, 10));
    *out = std::move(store);
    return Status::OK();
  }
  store->owner_ = MakeOwner();
  s = store->Claim(/*renewal=*/false);
  if (!s.ok()) return s;
  store->lease_ = std::thread([p = store.get()] { p->LeaseLoop(); });
  *out = std::move(store);
  return Status::OK();
}

PostgresStore::~PostgresStore() { Close(); }

Status PostgresStore::Claim(bool renewal) {
  Conn c;
  Status s = Connect(opts_.conninfo, &c);
  if (!s.ok()) return s;
  const std::string lease = "now() + make_interval(secs => " + std::to_string(opts_.lease_s) + ")";
  // A new node, or the next incarnation of one whose lease expired (or that
  // this process holds already, after a takeover ended its session).
  const std::string sql =
      "INSERT INTO xatm.node AS n (name, node_id, incarnation, epoch, lease_until, owner) VALUES (" +
      Text(opts_.node_name) + ", " + Bytea(RandomNodeId()) + ", 1, 1, " + lease + ", " + Text(owner_) +
      ") ON CONFLICT (name) DO UPDATE SET incarnation = n.incarnation + 1, lease_until = EXCLUDED.lease_until, "
      "owner = EXCLUDED.owner WHERE n.lease_until < now() OR n.owner = EXCLUDED.owner"
      " RETURNING encode(node_id, 'hex'), incarnation, epoch";
  Result r(PQexec(c.get(), sql.c_str()));
  if (!Ok(r)) return Status::IOError("cannot claim node " + opts_.node_name + " in the decision store: " + Message(c.get(), r.get()));
  if (PQntuples(r.get()) == 0) {
    Result who(PQexec(c.get(), ("SELECT owner, lease_until, extract(epoch FROM lease_until - now())::bigint FROM "
                                "xatm.node WHERE name = " + Text(opts_.node_name)).c_str()));
    std::string owner = Ok(who) && PQntuples(who.get()) ? PQgetvalue(who.get(), 0, 0) : "?";
    // Its holder was a process of this host that is gone: no need to wait
    // for its lease to run out.
    if (!renewal && OwnerIsDeadHere(owner)) {
      Result take(PQexec(c.get(), ("UPDATE xatm.node SET lease_until = now() - interval '1 second' WHERE name = " +
                                   Text(opts_.node_name) + " AND owner = " + Text(owner)).c_str()));
      if (Ok(take)) return Claim(renewal);
    }
    const std::string left = Ok(who) && PQntuples(who.get()) ? PQgetvalue(who.get(), 0, 2) : "?";
    return Status::Busy("node " + opts_.node_name + " of the decision store is held by " + owner +
                        " (its lease runs " + left + " s more): one process per node name; give this one "
                        "another node_name, or wait for that lease to expire");
  }
  std::string node_id;
  tm::FromHex(PQgetvalue(r.get(), 0, 0), &node_id);
  const auto incarnation = static_cast<uint32_t>(std::atoll(PQgetvalue(r.get(), 0, 1)));
  const uint64_t epoch = std::strtoull(PQgetvalue(r.get(), 0, 2), nullptr, 10);
  std::lock_guard<std::mutex> l(session_mu_);
  if (!node_id_.empty() && node_id != node_id_) {
    return Status::Fenced("node " + opts_.node_name + " has another node id in the store now: reopen the TM");
  }
  node_id_ = node_id;
  current_ = std::make_shared<NodeSession>(incarnation, epoch);
  if (renewal) ++generation_;
  return Status::OK();
}

std::shared_ptr<PostgresStore::NodeSession> PostgresStore::CurrentSession() const {
  std::lock_guard<std::mutex> l(session_mu_);
  return current_;
}

std::shared_ptr<Session> PostgresStore::Current() const { return CurrentSession(); }

Status PostgresStore::Renew(const std::shared_ptr<Session>& ended) {
  std::lock_guard<std::mutex> renewing(renew_mu_);
  if (Current() != ended) return Status::OK();
  Status s = Claim(/*renewal=*/true);
  if (s.IsBusy()) return Status::Fenced(ended->Check().message() + "; " + s.message());
  return s;
}

void PostgresStore::LeaseLoop() {
  const auto every = std::chrono::milliseconds(std::max(300, opts_.lease_s * 1000 / 3));
  Conn c;
  std::unique_lock<std::mutex> l(lease_mu_);
  while (!lease_cv_.wait_for(l, every, [&] { return stopping_; })) {
    l.unlock();
    std::shared_ptr<NodeSession> session = CurrentSession();
    if (session->Check().ok()) {
      if (PQstatus(c.get()) != CONNECTION_OK) (void)Connect(opts_.conninfo, &c);
      const std::string sql = "UPDATE xatm.node SET lease_until = now() + make_interval(secs => " +
                              std::to_string(opts_.lease_s) + ") WHERE node_id = " + Bytea(node_id_) +
                              " AND epoch = " + std::to_string(session->epoch()) + " AND incarnation = " +
                              std::to_string(session->incarnation()) + " AND owner = " + Text(owner_) +
                              " RETURNING 1";
      Result r(PQexec(c.get(), sql.c_str()));
      // A failure to reach the store is retried; only the store saying so
      // ends the session (the epoch check fences decisions meanwhile).
      if (Ok(r) && PQntuples(r.get()) == 0) {
        session->End("node " + opts_.node_name + " (incarnation " + std::to_string(session->incarnation()) +
                     ") was taken over, or its lease was claimed by another process: its transactions cannot "
                     "commit any more, and the next one runs in a new incarnation");
      }
    }
    l.lock();
  }
}

void PostgresStore::Close() {
  {
    std::lock_guard<std::mutex> l(lease_mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  lease_cv_.notify_all();
  if (lease_.joinable()) lease_.join();
  // What is queued (ENDs) goes out; then the lease is given up, so that the
  // node can be opened again at once.
  {
    std::unique_lock<std::mutex> l(mu_);
    idle_cv_.wait(l, [&] { return !leading_; });  // no leader at work
    if (!pending_.empty() && failed_.ok()) {
      leading_ = true;
      LeadLocked(l);
      leading_ = false;
    }
  }
  if (!opts_.read_only && !owner_.empty()) {
    Conn c;
    if (Connect(opts_.conninfo, &c).ok()) {
      Result r(PQexec(c.get(), ("UPDATE xatm.node SET lease_until = now() - interval '1 second' WHERE node_id = " +
                                Bytea(node_id_) + " AND owner = " + Text(owner_)).c_str()));
    }
  }
  if (writer_) PQfinish(writer_);
  writer_ = nullptr;
}

// ---------------------------------------------------------------------------
// Records

Status PostgresStore::Commit(const log::CommitRecord& r, Session* session,
                             const std::vector<log::EndRecord>& ends_before) {
  if (Status s = session->Check(); !s.ok()) return s;
  for (const log::EndRecord& e : ends_before) End(e);
  const std::string key = Bytea(node_id_) + ", 2, " + Bytea(r.gtrid);
  Pending p;
  p.sql = "INSERT INTO xatm.record (node_id, type, gtrid, payload) VALUES (" + key + ", " + Bytea(log::Encode(r)) + ")";
  p.probe = "SELECT 1 FROM xatm.record WHERE (node_id, type, gtrid) = (" + key + ")";
  return Append(std::move(p), static_cast<NodeSession*>(session)->epoch());
}

Status PostgresStore::Heuristic(const log::HeuristicRecord& r) {
  const std::string key = Bytea(node_id_) + ", 4, " + Bytea(r.gtrid) + ", " + Text(r.rm) + ", " + Bytea(r.bqual);
  Pending p;
  p.sql = "INSERT INTO xatm.record (node_id, type, gtrid, rm, bqual, payload) VALUES (" + key + ", " +
          Bytea(log::Encode(r)) + ") ON CONFLICT (node_id, type, gtrid, rm, bqual) DO UPDATE SET payload = "
          "EXCLUDED.payload";
  p.probe = "SELECT 1 FROM xatm.record WHERE (node_id, type, gtrid, rm, bqual) = (" + key + ") AND payload = " +
            Bytea(log::Encode(r));
  return Append(std::move(p), CurrentSession()->epoch());
}

Status PostgresStore::Forget(const log::ForgetRecord& r) {
  std::string where = "node_id = " + Bytea(node_id_) + " AND type = 4 AND gtrid = " + Bytea(r.gtrid);
  if (!r.rm.empty()) where += " AND rm = " + Text(r.rm) + " AND bqual = " + Bytea(r.bqual);
  Pending p;
  p.sql = "DELETE FROM xatm.record WHERE " + where;
  p.probe = "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM xatm.record WHERE " + where + ")";
  return Append(std::move(p), CurrentSession()->epoch());
}

void PostgresStore::End(const log::EndRecord& r) {
  Pending p;
  p.sql = "DELETE FROM xatm.record WHERE node_id = " + Bytea(node_id_) + " AND type = 2 AND gtrid = " + Bytea(r.gtrid);
  Status s = Append(std::move(p), CurrentSession()->epoch());
  (void)s;  // not forced: a lost END is redone by recovery
}

Status PostgresStore::RegisterBackend(uint32_t incarnation, const tm::BackendId& b, Session* session) {
  Pending p;
  const std::string key = Bytea(node_id_) + ", " + Text(b.rm) + ", " + std::to_string(b.pid) + ", " + Text(b.start);
  p.sql = "INSERT INTO xatm.backend (node_id, rm, pid, backend_start, incarnation) VALUES (" + key + ", " +
          std::to_string(incarnation) + ") ON CONFLICT DO NOTHING";
  p.probe = "SELECT 1 FROM xatm.backend WHERE (node_id, rm, pid, backend_start) = (" + key + ")";
  NodeSession* s = session ? static_cast<NodeSession*>(session) : CurrentSession().get();
  return Append(std::move(p), s->epoch());
}

Status PostgresStore::ConfirmSoleResolver(const std::string& gtrid, Session* session) {
  auto* s = static_cast<NodeSession*>(session);
  if (Status st = s->Check(); !st.ok()) return st;
  Conn c;
  Status st = Connect(opts_.conninfo, &c);
  if (!st.ok()) return st;
  // The epoch is bumped before a takeover resolves anything: still ours now,
  // nobody took the node over before; and nobody decided gtrid by hand.
  Result r(PQexec(c.get(), ("SELECT (SELECT epoch FROM xatm.node WHERE node_id = " + Bytea(node_id_) +
                            ") = " + std::to_string(s->epoch()) +
                            ", EXISTS (SELECT 1 FROM xatm.record WHERE node_id = " + Bytea(node_id_) +
                            " AND type = 4 AND gtrid = " + Bytea(gtrid) + ")").c_str()));
  if (!Ok(r)) return Status::IOError("cannot read the decision store: " + Message(c.get(), r.get()));
  if (std::strcmp(PQgetvalue(r.get(), 0, 0), "t") != 0) return Status::Fenced("node " + opts_.node_name + " was taken over");
  if (std::strcmp(PQgetvalue(r.get(), 0, 1), "t") == 0) {
    return Status::InvalidArgument(tm::ToHex(gtrid) + " was decided by hand");
  }
  return Status::OK();
}

Status PostgresStore::State(log::LogState* out) {
  Conn c;
  Status s = Connect(opts_.conninfo, &c);
  if (!s.ok()) return s;
  Result r(PQexecParams(c.get(),
                        ("SELECT type, payload FROM xatm.record WHERE node_id = " + Bytea(node_id_)).c_str(), 0,
                        nullptr, nullptr, nullptr, nullptr, /*resultFormat=*/1));
  if (!Ok(r)) return Status::IOError("cannot read the decision store: " + Message(c.get(), r.get()));
  log::LiveState state;
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    uint16_t type_be = 0;  // smallint, binary: network byte order
    std::memcpy(&type_be, PQgetvalue(r.get(), i, 0), sizeof type_be);
    const auto type = static_cast<log::RecordType>(ntohs(type_be));
    const std::string payload(PQgetvalue(r.get(), i, 1), static_cast<size_t>(PQgetlength(r.get(), i, 1)));
    s = state.Apply(type, payload, /*validate=*/true);
    if (!s.ok()) return Status::Corruption("decision store: " + s.message());
  }
  {
    const log::LogState st = state.Decoded();
    *out = st;
  }
  out->has_node = true;
  out->node.node_id = node_id_;
  out->node.node_name = opts_.node_name;
  out->node.incarnation = CurrentSession()->incarnation();
  return Status::OK();
}

Status PostgresStore::LoadBackends(std::vector<log::BackendEntry>* out) {
  out->clear();
  Conn c;
  Status s = Connect(opts_.conninfo, &c);
  if (!s.ok()) return s;
  Result r(PQexec(c.get(), ("SELECT incarnation, rm, pid, backend_start FROM xatm.backend WHERE node_id = " +
                            Bytea(node_id_)).c_str()));
  if (!Ok(r)) return Status::IOError("cannot read the decision store: " + Message(c.get(), r.get()));
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    out->push_back(log::BackendEntry{static_cast<uint32_t>(std::atoll(PQgetvalue(r.get(), i, 0))),
                                     PQgetvalue(r.get(), i, 1), std::atoi(PQgetvalue(r.get(), i, 2)),
                                     PQgetvalue(r.get(), i, 3)});
  }
  return Status::OK();
}

Status PostgresStore::RetainBackends(const std::function<bool(const log::BackendEntry&)>& keep) {
  std::vector<log::BackendEntry> all;
  Status s = LoadBackends(&all);
  if (!s.ok()) return s;
  std::string gone;
  for (const log::BackendEntry& e : all) {
    if (keep(e)) continue;
    gone += (gone.empty() ? "" : ", ") + ("(" + Text(e.rm) + ", " + std::to_string(e.pid) + ", " + Text(e.start) + ")");
  }
  if (gone.empty()) return Status::OK();
  Conn c;
  s = Connect(opts_.conninfo, &c);
  if (!s.ok()) return s;
  Result r(PQexec(c.get(), ("DELETE FROM xatm.backend WHERE node_id = " + Bytea(node_id_) +
                            " AND (rm, pid, backend_start) IN (" + gone + ")").c_str()));
  return Ok(r) ? Status::OK() : Status::IOError("cannot write the decision store: " + Message(c.get(), r.get()));
}

log::LogStats PostgresStore::Stats() const {
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

// ---------------------------------------------------------------------------
// Group commit

Status PostgresStore::Append(Pending p, uint64_t epoch) {
  if (opts_.read_only) return Status::InvalidArgument("the decision store was opened read-only");
  Waiter w;
  const bool durable = !p.probe.empty();
  p.waiter = durable ? &w : nullptr;
  std::unique_lock<std::mutex> l(mu_);
  if (!failed_.ok()) return failed_;
  pending_.emplace_back(std::move(p), epoch);
  if (!durable && leading_) return Status::OK();  // the busy leader writes it next
  for (;;) {
    if (w.done) return w.status;
    if (!leading_) {
      leading_ = true;
      LeadLocked(l);
      leading_ = false;
      idle_cv_.notify_all();  // Close waits for no leader
      // Wake the first durable appender still waiting: it leads the next batch.
      for (auto& [q, e] : pending_) {
        if (q.waiter) {
          q.waiter->cv.notify_one();
          break;
        }
      }
      if (!durable) return failed_;
      continue;
    }
    w.cv.wait(l);
  }
}

// REQUIRES: mu_ held via lock, leading_ set by the caller.
void PostgresStore::LeadLocked(std::unique_lock<std::mutex>& lock) {
  while (!pending_.empty()) {
    // One epoch per batch: records made under another (an ended session's)
    // are refused without being written.
    const uint64_t epoch = pending_.back().second;
    std::vector<Pending> batch;
    for (auto& [p, e] : pending_) {
      if (e == epoch) {
        batch.push_back(std::move(p));
      } else if (p.waiter) {
        p.waiter->status = Status::Fenced("the node's session ended before this decision was written");
        p.waiter->done = true;
        p.waiter->cv.notify_one();
      }
    }
    pending_.clear();
    lock.unlock();
    Status s = WriteBatch(batch, epoch);
    lock.lock();
    bool any_durable = false;
    if (s.ok()) {
      stats_.records += batch.size();
      stats_.batches += 1;
      for (const Pending& p : batch) any_durable = any_durable || p.waiter != nullptr;
      stats_.syncs += any_durable ? 1 : 0;
      stats_.max_batch = std::max<uint64_t>(stats_.max_batch, batch.size());
    } else if (s.IsUnknownOutcome()) {
      failed_ = s;
    }
    if (s.IsFenced()) {
      if (auto session = CurrentSession(); session->epoch() == epoch) session->End(s.message());
    }
    for (Pending& p : batch) {
      if (p.waiter) {
        p.waiter->status = s;
        p.waiter->done = true;
        p.waiter->cv.notify_one();
      }
    }
    if (!failed_.ok()) {
      for (auto& [p, e] : pending_) {
        if (p.waiter) {
          p.waiter->status = failed_;
          p.waiter->done = true;
          p.waiter->cv.notify_one();
        }
      }
      pending_.clear();
      return;
    }
    bool waiting = false;
    for (const auto& [p, e] : pending_) waiting = waiting || p.waiter != nullptr;
    if (waiting) return;  // a durable appender leads the next batch
  }
}

Status PostgresStore::EnsureWriter() {
  if (writer_ && PQstatus(writer_) == CONNECTION_OK) return Status::OK();
  if (writer_) PQfinish(writer_);
  writer_ = PQconnectdb(opts_.conninfo.c_str());
  if (PQstatus(writer_) != CONNECTION_OK) {
    const std::string m = Message(writer_, nullptr);
    PQfinish(writer_);
    writer_ = nullptr;
    return Status::IOError("cannot connect to the decision store: " + m);
  }
  PQsetNoticeReceiver(writer_, NoteSyncRepCancel, &sync_rep_cancelled_);
  Result r(PQexec(writer_, "SELECT pg_backend_pid(), (SELECT backend_start FROM pg_stat_activity WHERE pid = "
                           "pg_backend_pid())::text"));
  if (Ok(r) && PQntuples(r.get()) == 1) {
    writer_pid_ = PQgetvalue(r.get(), 0, 0);
    writer_start_ = PQgetvalue(r.get(), 0, 1);
  }
  return Status::OK();
}

// Called by the leader without mu_.
Status PostgresStore::WriteBatch(const std::vector<Pending>& batch, uint64_t epoch) {
  if (Status s = EnsureWriter(); !s.ok()) return s;  // nothing sent: definitely not written
  bool durable = false;
  for (const Pending& p : batch) durable = durable || p.waiter != nullptr;
  // A decision waits for its WAL flush (and the synchronous standbys)
  // whatever the role or database set; ENDs alone need not.
  std::string sql = std::string("BEGIN; ") +
                    (durable ? "SELECT set_config('synchronous_commit', 'on', true) WHERE "
                               "current_setting('synchronous_commit') IN ('off', 'local'); "
                             : "SET LOCAL synchronous_commit = off; ") +
                    "SELECT xatm.check_epoch(" + Bytea(node_id_) + ", " + std::to_string(epoch) + "); ";
  for (const Pending& p : batch) sql += p.sql + "; ";
  sql += "COMMIT";
  sync_rep_cancelled_ = false;
  if (!PQsendQuery(writer_, sql.c_str())) {
    PQfinish(writer_);
    writer_ = nullptr;
    return Status::IOError("cannot reach the decision store");
  }
  std::string error, state;
  bool committed = false, lost = false;
  while (PGresult* r = PQgetResult(writer_)) {
    const ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK && std::strcmp(PQcmdStatus(r), "COMMIT") == 0) committed = true;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && error.empty()) {
      error = Message(writer_, r);
      const char* code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      state = code ? code : "";
      lost = state.empty() || state.compare(0, 2, "08") == 0 || state == "57P01" || state == "57P02" || state == "57P03";
    }
    PQclear(r);
  }
  if (PQstatus(writer_) != CONNECTION_OK) lost = true;
  if (committed && !lost) {
    if (sync_rep_cancelled_) {
      return Status::UnknownOutcome("the decision store's COMMIT returned before its synchronous standby "
                                    "confirmed it (the wait was cancelled): it may be lost at a failover");
    }
    return Status::OK();
  }
  if (!lost) {
    if (PQtransactionStatus(writer_) != PQTRANS_IDLE) PQclear(PQexec(writer_, "ROLLBACK"));
    if (state == kFencedState) return Status::Fenced("node " + opts_.node_name + ": " + error);
    return Status::IOError("the decision store refused the batch: " + error);
  }
  // The reply was lost: the COMMIT may have happened. Settled on a new
  // connection once the old backend is gone.
  return Settle(batch);
}

Status PostgresStore::Settle(const std::vector<Pending>& batch) {
  const std::string pid = writer_pid_, start = writer_start_;
  if (writer_) PQfinish(writer_);
  writer_ = nullptr;
  const auto deadline = Clock::now() + std::chrono::seconds(std::max(10, opts_.lease_s));
  for (;;) {
    if (EnsureWriter().ok()) {
      // The old backend may still be committing: end it and wait.
      const std::string match = "pid = " + (pid.empty() ? "0" : pid) + " AND backend_start::text = " + Text(start);
      Result kill(PQexec(writer_, ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE " + match).c_str()));
      Result left(PQexec(writer_, ("SELECT count(*) FROM pg_stat_activity WHERE " + match).c_str()));
      if (Ok(left) && std::strcmp(PQgetvalue(left.get(), 0, 0), "0") == 0) {
        const Pending* probe = nullptr;
        for (const Pending& p : batch) {
          if (!p.probe.empty()) {
            probe = &p;
            break;
          }
        }
        if (probe == nullptr) return Status::OK();  // ENDs alone: lost or not, recovery redoes them
        Result r(PQexec(writer_, probe->probe.c_str()));
        if (Ok(r)) {
          return PQntuples(r.get()) > 0 ? Status::OK()
                                        : Status::IOError("the decision store's connection was lost before the batch "
                                                          "committed; it was not written");
        }
      }
    }
    if (Clock::now() >= deadline) {
      return Status::UnknownOutcome("the decision store's connection was lost during a COMMIT, and whether it "
                                    "happened cannot be learnt now");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace xtm::store
