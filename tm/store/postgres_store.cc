#include "store/postgres_store.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>

#include "core/gtrid.h"
#include "util/crash_point.h"

namespace xtm::store {

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
  taken_over_by text,
  settled boolean NOT NULL DEFAULT false,
  rms text NOT NULL DEFAULT '',
  sessions_upto bigint NOT NULL DEFAULT 0);
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

// Notices of a connection: a COMMIT whose wait for the synchronous standby
// was cancelled returns success with a warning (PITFALLS 39).
void NoteSyncRepCancel(void* arg, const PGresult* r) {
  const char* m = PQresultErrorMessage(r);
  if (m && std::strstr(m, "canceling wait for synchronous replication")) *static_cast<bool*>(arg) = true;
}

// A connection to the store, tagged (application_name) so that a takeover can
// end the node's sessions. connect_timeout: libpq waits forever by default,
// and between a primary's death and a promotion no host accepts writes
// (PITFALLS 43); the conninfo may set its own. sync_rep_flag, if given, is set
// by a notice that a synchronous-replication wait was cancelled.
Status Connect(const std::string& conninfo, const std::string& tag, Conn* out, bool* sync_rep_flag = nullptr) {
  const char* keys[] = {"connect_timeout", "dbname", "application_name", nullptr};
  const char* values[] = {"5", conninfo.c_str(), tag.c_str(), nullptr};
  out->reset(PQconnectdbParams(keys, values, /*expand_dbname=*/1));
  if (PQstatus(out->get()) != CONNECTION_OK) {
    return Status::IOError("cannot connect to the decision store: " + Message(out->get(), nullptr));
  }
  if (sync_rep_flag) PQsetNoticeReceiver(out->get(), NoteSyncRepCancel, sync_rep_flag);
  return Status::OK();
}

std::string StoreTag(const std::string& node_id) { return "xatm-store/" + Hex(node_id); }

// What came back for a query sent with PQsendQuery.
struct Reply {
  bool committed = false;  // a COMMIT returned OK
  bool lost = false;       // the connection broke (or never answered): the outcome is unknown
  bool cancelled = false;  // it ran past its deadline and was cancelled
  std::string error, state;
};

// Reads every result of the query in flight on c. Past deadline it is
// cancelled, and given a few seconds more to answer; then it is lost
// (PITFALLS 38: no server-side timeout bounds a synchronous-replication wait).
Reply Collect(PGconn* c, Clock::time_point deadline) {
  Reply o;
  for (;;) {
    while (!PQisBusy(c)) {
      PGresult* r = PQgetResult(c);
      if (r == nullptr) {
        if (PQstatus(c) != CONNECTION_OK) o.lost = true;
        return o;
      }
      const ExecStatusType st = PQresultStatus(r);
      if (st == PGRES_COMMAND_OK && std::strcmp(PQcmdStatus(r), "COMMIT") == 0) o.committed = true;
      if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && o.error.empty()) {
        o.error = Message(c, r);
        const char* code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        o.state = code ? code : "";
        o.lost = o.state.empty() || o.state.compare(0, 2, "08") == 0 || o.state == "57P01" || o.state == "57P02" ||
                 o.state == "57P03";
      }
      PQclear(r);
    }
    const auto now = Clock::now();
    if (now >= deadline) {
      if (o.cancelled) {
        o.lost = true;
        return o;
      }
      if (PGcancel* k = PQgetCancel(c)) {
        char buf[256];
        (void)PQcancel(k, buf, sizeof buf);
        PQfreeCancel(k);
      }
      o.cancelled = true;
      deadline = now + std::chrono::seconds(5);
      continue;
    }
    pollfd p{PQsocket(c), POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
    const int n = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left + 1, 1000)));
    if ((n < 0 && errno != EINTR) || (n > 0 && !PQconsumeInput(c))) {
      o.lost = true;
      return o;
    }
  }
}

// One transaction that commits synchronously (whatever the role's default),
// then returns once the standbys have it: every commit before it in WAL is on
// them too. How a reader makes sure it acts on nothing a failover may erase
// (PITFALLS 40).
Status Barrier(PGconn* c, bool* sync_rep_flag, Clock::time_point deadline) {
  *sync_rep_flag = false;
  if (!PQsendQuery(c, "BEGIN; SELECT set_config('synchronous_commit', 'on', true) WHERE "
                      "current_setting('synchronous_commit') IN ('off', 'local'); SELECT txid_current(); COMMIT")) {
    return Status::IOError("cannot reach the decision store: " + Message(c, nullptr));
  }
  const Reply r = Collect(c, deadline);
  if (r.committed && !r.lost && !*sync_rep_flag) return Status::OK();
  if (r.committed || r.cancelled) {
    return Status::UnknownOutcome("the decision store's synchronous standby does not confirm its commits: what "
                                  "is read there now may be lost at a failover");
  }
  return Status::IOError("cannot write to the decision store: " + r.error);
}

// The live decisions of node_id.
Status ReadRecords(PGconn* c, const std::string& node_id, log::LogState* out) {
  Result r(PQexecParams(c, ("SELECT type, payload FROM xatm.record WHERE node_id = " + Bytea(node_id)).c_str(), 0,
                        nullptr, nullptr, nullptr, nullptr, /*resultFormat=*/1));
  if (!Ok(r)) return Status::IOError("cannot read the decision store: " + Message(c, r.get()));
  log::LiveState state;
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    uint16_t type_be = 0;  // smallint, binary: network byte order
    std::memcpy(&type_be, PQgetvalue(r.get(), i, 0), sizeof type_be);
    const auto type = static_cast<log::RecordType>(ntohs(type_be));
    const std::string payload(PQgetvalue(r.get(), i, 1), static_cast<size_t>(PQgetlength(r.get(), i, 1)));
    Status s = state.Apply(type, payload, /*validate=*/true);
    if (!s.ok()) return Status::Corruption("decision store: " + s.message());
  }
  const log::LogState st = state.Decoded();
  *out = st;
  return Status::OK();
}

Status ReadBackends(PGconn* c, const std::string& node_id, std::vector<log::BackendEntry>* out) {
  out->clear();
  Result r(PQexec(c, ("SELECT incarnation, rm, pid, backend_start FROM xatm.backend WHERE node_id = " +
                      Bytea(node_id)).c_str()));
  if (!Ok(r)) return Status::IOError("cannot read the decision store: " + Message(c, r.get()));
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    out->push_back(log::BackendEntry{static_cast<uint32_t>(std::atoll(PQgetvalue(r.get(), i, 0))),
                                     PQgetvalue(r.get(), i, 1), std::atoi(PQgetvalue(r.get(), i, 2)),
                                     PQgetvalue(r.get(), i, 3)});
  }
  return Status::OK();
}

Status DropBackends(PGconn* c, const std::string& node_id, const std::function<bool(const log::BackendEntry&)>& keep) {
  std::vector<log::BackendEntry> all;
  Status s = ReadBackends(c, node_id, &all);
  if (!s.ok()) return s;
  std::string gone;
  for (const log::BackendEntry& e : all) {
    if (keep(e)) continue;
    gone += (gone.empty() ? "" : ", ") + ("(" + Text(e.rm) + ", " + std::to_string(e.pid) + ", " + Text(e.start) + ")");
  }
  if (gone.empty()) return Status::OK();
  Result r(PQexec(c, ("DELETE FROM xatm.backend WHERE node_id = " + Bytea(node_id) +
                      " AND (rm, pid, backend_start) IN (" + gone + ")").c_str()));
  return Ok(r) ? Status::OK() : Status::IOError("cannot write the decision store: " + Message(c, r.get()));
}

std::string HeuristicKey(const std::string& node_id, const log::HeuristicRecord& r) {
  return Bytea(node_id) + ", 4, " + Bytea(r.gtrid) + ", " + Text(r.rm) + ", " + Bytea(r.bqual);
}

std::string HeuristicUpsert(const std::string& node_id, const log::HeuristicRecord& r) {
  return "INSERT INTO xatm.record (node_id, type, gtrid, rm, bqual, payload) VALUES (" + HeuristicKey(node_id, r) +
         ", " + Bytea(log::Encode(r)) + ") ON CONFLICT (node_id, type, gtrid, rm, bqual) DO UPDATE SET payload = "
         "EXCLUDED.payload";
}

// name/type/identity (hex), comma-separated: names and types are plain words.
std::string EncodeRms(const std::vector<RmIdentity>& rms) {
  std::string out;
  for (const RmIdentity& rm : rms) out += (out.empty() ? "" : ",") + rm.name + "/" + rm.type + "/" + Hex(rm.identity);
  return out;
}

std::vector<RmIdentity> DecodeRms(const std::string& text) {
  std::vector<RmIdentity> out;
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find(',', at);
    if (end == std::string::npos) end = text.size();
    const std::string one = text.substr(at, end - at);
    at = end + 1;
    const size_t a = one.find('/'), b = one.find('/', a == std::string::npos ? a : a + 1);
    RmIdentity rm;
    rm.name = one.substr(0, a);
    if (a != std::string::npos) rm.type = one.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
    if (b != std::string::npos) tm::FromHex(one.substr(b + 1), &rm.identity);
    out.push_back(std::move(rm));
  }
  return out;
}

std::string EndDelete(const std::string& node_id, const std::string& gtrid) {
  return "DELETE FROM xatm.record WHERE node_id = " + Bytea(node_id) + " AND type = 2 AND gtrid = " + Bytea(gtrid);
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

Status PostgresStore::InitSchema(const std::string& conninfo) {
  Conn c;
  if (Status s = Connect(conninfo, "xatm-store-init", &c); !s.ok()) return s;
  Result r(PQexec(c.get(), kSchema));
  if (!Ok(r)) return Status::InvalidArgument("cannot create the schema xatm: " + Message(c.get(), r.get()));
  return Status::OK();
}

Status PostgresStore::ScanRecords(const std::string& conninfo, log::LogScan* out, std::vector<std::string>* problems) {
  *out = log::LogScan();
  problems->clear();
  Conn c;
  if (Status s = Connect(conninfo, "xatm-admin", &c); !s.ok()) return s;
  Result nodes(PQexec(c.get(), "SELECT encode(node_id, 'hex'), name, incarnation FROM xatm.node ORDER BY name"));
  if (!Ok(nodes)) return Status::IOError("cannot read the decision store: " + Message(c.get(), nodes.get()));
  std::map<std::string, std::string> names;  // node id -> name
  for (int i = 0; i < PQntuples(nodes.get()); ++i) {
    log::NodeRecord n;
    tm::FromHex(PQgetvalue(nodes.get(), i, 0), &n.node_id);
    n.node_name = PQgetvalue(nodes.get(), i, 1);
    n.incarnation = static_cast<uint32_t>(std::atoll(PQgetvalue(nodes.get(), i, 2)));
    names[n.node_id] = n.node_name;
    out->segments.push_back(n.node_name);
    out->records.push_back({n.node_name, 0, log::RecordType::kNode, log::Encode(n)});
  }
  Result r(PQexecParams(c.get(), "SELECT node_id, type, gtrid, rm, bqual, payload FROM xatm.record ORDER BY node_id, "
                                 "type, gtrid, rm, bqual", 0, nullptr, nullptr, nullptr, nullptr, /*resultFormat=*/1));
  if (!Ok(r)) return Status::IOError("cannot read the decision store: " + Message(c.get(), r.get()));
  auto bytes = [&](int row, int col) {
    return std::string(PQgetvalue(r.get(), row, col), static_cast<size_t>(PQgetlength(r.get(), row, col)));
  };
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    const std::string node_id = bytes(i, 0), gtrid = bytes(i, 2), rm = bytes(i, 3), bqual = bytes(i, 4);
    uint16_t type_be = 0;
    std::memcpy(&type_be, PQgetvalue(r.get(), i, 1), sizeof type_be);
    const auto type = static_cast<log::RecordType>(ntohs(type_be));
    const std::string payload = bytes(i, 5);
    auto it = names.find(node_id);
    const std::string node = it == names.end() ? "(no node " + Hex(node_id) + ")" : it->second;
    const std::string where = "node " + node + ", " + log::RecordTypeName(type) + " " + Hex(gtrid);
    if (it == names.end()) problems->push_back(where + ": a record of a node the store does not have");
    // The payload decodes, and its key columns are what it says.
    std::string said;
    Status d;
    if (type == log::RecordType::kCommit) {
      log::CommitRecord x;
      d = log::Decode(payload, &x);
      said = x.gtrid;
    } else if (type == log::RecordType::kHeuristic) {
      log::HeuristicRecord x;
      d = log::Decode(payload, &x);
      said = x.gtrid;
      if (d.ok() && (x.rm != rm || x.bqual != bqual)) d = Status::Corruption("its RM or bqual is not its key's");
    } else {
      d = Status::Corruption("a record of type " + std::to_string(static_cast<int>(type)) + " has no place here");
    }
    if (!d.ok()) {
      problems->push_back(where + ": " + d.message());
    } else if (said != gtrid) {
      problems->push_back(where + ": its payload names gtrid " + Hex(said));
    }
    out->records.push_back({node, static_cast<uint64_t>(i + 1), type, payload});
  }
  return Status::OK();
}

Status PostgresStore::ListNodes(const std::string& conninfo, std::vector<StoreNode>* out) {
  out->clear();
  Conn c;
  if (Status s = Connect(conninfo, "xatm-admin", &c); !s.ok()) return s;
  Result r(PQexec(c.get(), "SELECT name, encode(node_id, 'hex'), owner, coalesce(taken_over_by, ''), rms, incarnation, "
                           "epoch, floor(extract(epoch FROM lease_until - now()))::bigint, taken_over_upto, settled, "
                           "(SELECT count(*) FROM xatm.record r WHERE r.node_id = n.node_id AND r.type = 2) "
                           "FROM xatm.node n ORDER BY name"));
  if (!Ok(r)) return Status::IOError("cannot read the decision store: " + Message(c.get(), r.get()));
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    StoreNode n;
    n.name = PQgetvalue(r.get(), i, 0);
    n.node_id_hex = PQgetvalue(r.get(), i, 1);
    n.owner = PQgetvalue(r.get(), i, 2);
    n.taken_over_by = PQgetvalue(r.get(), i, 3);
    for (const RmIdentity& rm : DecodeRms(PQgetvalue(r.get(), i, 4))) {
      n.rms += (n.rms.empty() ? "" : ", ") + rm.name + " (" + rm.type + ")";
    }
    n.incarnation = static_cast<uint32_t>(std::atoll(PQgetvalue(r.get(), i, 5)));
    n.epoch = std::strtoull(PQgetvalue(r.get(), i, 6), nullptr, 10);
    n.lease_left_s = std::atoll(PQgetvalue(r.get(), i, 7));
    n.taken_over_upto = static_cast<uint32_t>(std::atoll(PQgetvalue(r.get(), i, 8)));
    n.settled = std::strcmp(PQgetvalue(r.get(), i, 9), "t") == 0;
    n.open_decisions = std::atoll(PQgetvalue(r.get(), i, 10));
    out->push_back(std::move(n));
  }
  return Status::OK();
}

Status PostgresStore::Open(const PostgresStoreOptions& opts, std::unique_ptr<DecisionStore>* out) {
  out->reset();
  std::unique_ptr<PostgresStore> store(new PostgresStore(opts));
  store->rms_ = EncodeRms(opts.rms);
  Conn c;
  Status s = Connect(opts.conninfo, "xatm-store", &c);
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
    if (PQntuples(r.get()) == 0) {
      // Never ran: nothing of it to see (an admin's view from a new machine).
      store->current_ = std::make_shared<NodeSession>(0, 0);
      *out = std::move(store);
      return Status::OK();
    }
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
  store->flusher_ = std::thread([p = store.get()] { p->FlushLoop(); });
  *out = std::move(store);
  return Status::OK();
}

PostgresStore::~PostgresStore() { Close(); }

Status PostgresStore::Claim(bool renewal, int attempt) {
  Conn c;
  bool sync_rep_cancelled = false;
  Status s = Connect(opts_.conninfo, node_id_.empty() ? "xatm-store" : StoreTag(node_id_), &c, &sync_rep_cancelled);
  if (!s.ok()) return s;
  const std::string lease = "now() + make_interval(secs => " + std::to_string(opts_.lease_s) + ")";
  std::string rms;
  {
    std::lock_guard<std::mutex> l(session_mu_);
    rms = rms_;
  }
  // A new node, or the next incarnation of one whose lease expired (or that
  // this process holds already, after a takeover ended its session). The
  // epoch moves with every claim: a process that held the node before (its
  // lease ran out, but it may be paused, not dead) decides nothing more.
  // A frozen holder's batch may hold the row (its epoch check, FOR SHARE):
  // waited for briefly, then, if its lease has expired, its sessions end.
  const std::string sql =
      "BEGIN; SET LOCAL lock_timeout = '2s'; SELECT set_config('synchronous_commit', 'on', true) WHERE "
      "current_setting('synchronous_commit') IN ('off', 'local'); "
      "INSERT INTO xatm.node AS n (name, node_id, incarnation, epoch, lease_until, owner, rms) VALUES (" +
      Text(opts_.node_name) + ", " + Bytea(RandomNodeId()) + ", 1, 1, " + lease + ", " + Text(owner_) + ", " +
      Text(rms) +
      ") ON CONFLICT (name) DO UPDATE SET incarnation = greatest(n.incarnation, n.sessions_upto) + 1, epoch = n.epoch + 1, lease_until = "
      "EXCLUDED.lease_until, owner = EXCLUDED.owner, settled = false, rms = EXCLUDED.rms WHERE n.lease_until < now() "
      "OR n.owner = EXCLUDED.owner"
      " RETURNING encode(node_id, 'hex'), incarnation, epoch";
  Result begin(PQexec(c.get(), sql.c_str()));  // the result of the last statement: the INSERT's rows
  if (!Ok(begin)) {
    const char* code = begin ? PQresultErrorField(begin.get(), PG_DIAG_SQLSTATE) : nullptr;
    if (code && std::strcmp(code, "55P03") == 0 && attempt < 5) {
      PQclear(PQexec(c.get(), "ROLLBACK"));
      Result held(PQexec(c.get(), ("SELECT encode(node_id, 'hex') FROM xatm.node WHERE name = " +
                                   Text(opts_.node_name) + " AND lease_until < now()").c_str()));
      if (Ok(held) && PQntuples(held.get()) == 1) {
        std::string id;
        tm::FromHex(PQgetvalue(held.get(), 0, 0), &id);
        Result end(PQexec(c.get(), ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                                    "application_name = " + Text(StoreTag(id)) + " AND pid <> pg_backend_pid()")
                                       .c_str()));
        (void)end;
      }
      return Claim(renewal, attempt + 1);
    }
    return Status::IOError("cannot claim node " + opts_.node_name + " in the decision store: " +
                           Message(c.get(), begin.get()));
  }
  Result r(std::move(begin));
  Result commit(PQexec(c.get(), "COMMIT"));
  if (!Ok(commit) || sync_rep_cancelled) {
    return Status::IOError("cannot claim node " + opts_.node_name + " in the decision store: " +
                           (sync_rep_cancelled ? std::string("its synchronous standby did not confirm the claim")
                                               : Message(c.get(), commit.get())));
  }
  if (PQntuples(r.get()) == 0) {
    Result who(PQexec(c.get(), ("SELECT owner, lease_until, extract(epoch FROM lease_until - now())::bigint FROM "
                                "xatm.node WHERE name = " + Text(opts_.node_name)).c_str()));
    std::string owner = Ok(who) && PQntuples(who.get()) ? PQgetvalue(who.get(), 0, 0) : "?";
    // Its holder was a process of this host that is gone: no need to wait
    // for its lease to run out.
    if (!renewal && attempt < 5 && OwnerIsDeadHere(owner)) {
      Result take(PQexec(c.get(), ("UPDATE xatm.node SET lease_until = now() - interval '1 second' WHERE name = " +
                                   Text(opts_.node_name) + " AND owner = " + Text(owner)).c_str()));
      if (Ok(take)) return Claim(renewal, attempt + 1);
    }
    const std::string left = Ok(who) && PQntuples(who.get()) ? PQgetvalue(who.get(), 0, 2) : "?";
    if (owner.rfind("takeover by ", 0) == 0) {
      return Status::Busy("node " + opts_.node_name + " is being taken over (" + owner + ", " + left +
                          " s more): its transactions are being resolved by another node; it can run again once "
                          "that is done");
    }
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
      if (PQstatus(c.get()) != CONNECTION_OK) (void)Connect(opts_.conninfo, StoreTag(node_id_), &c);
      const std::string sql = "UPDATE xatm.node SET lease_until = now() + make_interval(secs => " +
                              std::to_string(opts_.lease_s) + ") WHERE node_id = " + Bytea(node_id_) +
                              " AND epoch = " + std::to_string(session->epoch()) + " AND incarnation = " +
                              std::to_string(session->incarnation()) + " AND owner = " + Text(owner_) +
                              " RETURNING 1";
      Result r(PQexec(c.get(), sql.c_str()));
      // A failure to reach the store is retried; only the store saying so
      // ends the session (the epoch check fences decisions meanwhile).
      if (Ok(r) && PQntuples(r.get()) == 0) session->End(TakenOverMessage(session->incarnation()));
    }
    l.lock();
  }
}

std::string PostgresStore::TakenOverMessage(uint32_t incarnation) const {
  return "node " + opts_.node_name + " (incarnation " + std::to_string(incarnation) +
         ") was taken over, or its lease was claimed by another process: its transactions cannot commit any more, "
         "and the next one runs in a new incarnation";
}

Status PostgresStore::Verify(Session* session) {
  auto* s = static_cast<NodeSession*>(session);
  if (Status st = s->Check(); !st.ok() || opts_.read_only) return st;
  Conn c;
  if (!Connect(opts_.conninfo, StoreTag(node_id_), &c).ok()) return Status::OK();  // cannot tell: holds
  Result r(PQexec(c.get(), ("SELECT 1 FROM xatm.node WHERE node_id = " + Bytea(node_id_) + " AND epoch = " +
                            std::to_string(s->epoch()) + " AND owner = " + Text(owner_)).c_str()));
  if (Ok(r) && PQntuples(r.get()) == 0) s->End(TakenOverMessage(s->incarnation()));
  return s->Check();
}

Status PostgresStore::Health(StoreHealth* out) {
  out->kind = "postgresql";
  Conn c;
  if (Status s = Connect(opts_.conninfo, "xatm-health", &c); !s.ok()) return s;
  Result r(PQexec(c.get(),
                  "SELECT current_setting('synchronous_standby_names'), current_setting('synchronous_commit'), "
                  "(SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')), "
                  "(SELECT count(*) FROM pg_stat_replication), "
                  "(SELECT count(*) FROM xatm.node), "
                  "(SELECT string_agg(name || ' (' || extract(epoch FROM now() - lease_until)::bigint || ' s ago)', "
                  "', ' ORDER BY name) FROM xatm.node WHERE lease_until < now() AND NOT settled), "
                  "(SELECT count(*) FROM xatm.record WHERE type = 2), "
                  "(SELECT coalesce(string_agg(host(client_addr) || ' ' || application_name || ' ' || sync_state, "
                  "', '), '') FROM pg_stat_replication)"));
  if (!Ok(r)) return Status::IOError("cannot read the decision store: " + Message(c.get(), r.get()));
  const std::string names = PQgetvalue(r.get(), 0, 0);
  const long sync = std::atol(PQgetvalue(r.get(), 0, 2)), standbys = std::atol(PQgetvalue(r.get(), 0, 3));
  out->facts.push_back({"server", std::string(PQhost(c.get())) + ":" + PQport(c.get())});
  out->facts.push_back({"synchronous_standby_names", names.empty() ? "(none)" : names});
  out->facts.push_back({"standbys", std::to_string(standbys) + " (" + std::to_string(sync) + " synchronous)"});
  out->facts.push_back({"nodes", PQgetvalue(r.get(), 0, 4)});
  out->facts.push_back({"open decisions", PQgetvalue(r.get(), 0, 6)});
  if (names.empty()) {
    out->warnings.push_back("the decision store has no synchronous standby (synchronous_standby_names is empty): "
                            "it survives no loss of its primary; decisions acknowledged since the last WAL "
                            "shipped would be lost (docs/operations.md, \"The decision store\")");
  } else if (sync == 0) {
    out->warnings.push_back("synchronous_standby_names is '" + names +
                            "' but no synchronous standby is attached: every decision waits until one is");
  }
  if (!PQgetisnull(r.get(), 0, 5)) {
    out->warnings.push_back(std::string("nodes not running (lease expired) that no one has looked after since: ") +
                            PQgetvalue(r.get(), 0, 5) +
                            "; a node with takeover = true resolves what they left, or xatm recover --node NAME");
  }
  return Status::OK();
}

Status PostgresStore::RecordIncarnation(uint32_t incarnation) {
  // xatmd's sessions: incarnations of this node after the one it claimed; the
  // next claim (and a takeover) counts them too.
  const std::string n = std::to_string(incarnation);
  Pending p;
  p.sql = "UPDATE xatm.node SET sessions_upto = greatest(sessions_upto, " + n + ") WHERE node_id = " + Bytea(node_id_);
  p.probe = "SELECT 1 FROM xatm.node WHERE node_id = " + Bytea(node_id_) + " AND sessions_upto >= " + n;
  return Append(std::move(p), CurrentSession()->epoch());
}

Status PostgresStore::DescribeRms(const std::vector<RmIdentity>& rms) {
  if (opts_.read_only) return Status::OK();
  const std::string text = EncodeRms(rms);
  std::shared_ptr<NodeSession> session;
  {
    std::lock_guard<std::mutex> l(session_mu_);
    if (text == rms_) return Status::OK();
    rms_ = text;
    session = current_;
  }
  Conn c;
  Status st = Connect(opts_.conninfo, StoreTag(node_id_), &c);
  if (!st.ok()) return st;
  Result r(PQexec(c.get(), ("UPDATE xatm.node SET rms = " + Text(text) + " WHERE node_id = " + Bytea(node_id_) +
                            " AND epoch = " + std::to_string(session->epoch())).c_str()));
  if (!Ok(r)) return Status::IOError("cannot record the node's resource managers: " + Message(c.get(), r.get()));
  return Status::OK();
}

void PostgresStore::Close() {
  {
    std::lock_guard<std::mutex> l(lease_mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  lease_cv_.notify_all();
  if (lease_.joinable()) lease_.join();
  {
    std::lock_guard<std::mutex> l(mu_);
    flush_stop_ = true;
  }
  flush_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
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
    if (Connect(opts_.conninfo, StoreTag(node_id_), &c).ok()) {
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
  p.decision = true;
  return Append(std::move(p), static_cast<NodeSession*>(session)->epoch());
}

Status PostgresStore::Heuristic(const log::HeuristicRecord& r) {
  Pending p;
  p.sql = HeuristicUpsert(node_id_, r);
  p.probe = "SELECT 1 FROM xatm.record WHERE (node_id, type, gtrid, rm, bqual) = (" + HeuristicKey(node_id_, r) +
            ") AND payload = " + Bytea(log::Encode(r));
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
  p.sql = EndDelete(node_id_, r.gtrid);
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
  Status st = Connect(opts_.conninfo, StoreTag(node_id_), &c);
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
  if (!opts_.read_only) {
    std::unique_lock<std::mutex> l(mu_);
    if (Status s = SettledLocked(l); !s.ok()) return s;
    // This process's queued ENDs first: it reads what it wrote.
    idle_cv_.wait(l, [&] { return !leading_; });
    if (!pending_.empty()) LeadNowLocked(l);
  }
  Conn c;
  bool sync_rep_cancelled = false;
  Status s = Connect(opts_.conninfo, StoreTag(node_id_), &c, &sync_rep_cancelled);
  if (!s.ok()) return s;
  // Recovery acts on what it reads: only on what the standbys have too.
  if (!opts_.read_only) {
    s = Barrier(c.get(), &sync_rep_cancelled, Clock::now() + commit_timeout());
    if (!s.ok()) return s;
  }
  s = ReadRecords(c.get(), node_id_, out);
  if (!s.ok()) return s;
  out->has_node = true;
  out->node.node_id = node_id_;
  out->node.node_name = opts_.node_name;
  out->node.incarnation = CurrentSession()->incarnation();
  return Status::OK();
}

Status PostgresStore::LoadBackends(std::vector<log::BackendEntry>* out) {
  Conn c;
  Status s = Connect(opts_.conninfo, StoreTag(node_id_), &c);
  if (!s.ok()) return s;
  return ReadBackends(c.get(), node_id_, out);
}

Status PostgresStore::RetainBackends(const std::function<bool(const log::BackendEntry&)>& keep) {
  Conn c;
  Status s = Connect(opts_.conninfo, StoreTag(node_id_), &c);
  if (!s.ok()) return s;
  return DropBackends(c.get(), node_id_, keep);
}

log::LogStats PostgresStore::Stats() const {
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

// ---------------------------------------------------------------------------
// Group commit

Status PostgresStore::Append(Pending p, uint64_t epoch) {
  if (opts_.read_only) return Status::InvalidArgument("the decision store was opened read-only");
  GroupWaiter w;
  const bool durable = !p.probe.empty();
  p.waiter = durable ? &w : nullptr;
  std::unique_lock<std::mutex> l(mu_);
  if (Status s = SettledLocked(l); !s.ok()) return s;
  pending_.emplace_back(std::move(p), epoch);
  if (!durable && (leading_ || pending_.size() < kLazyRecords)) {
    // The next batch takes it: a decision's, or the flusher's a moment later.
    flush_cv_.notify_one();
    return Status::OK();
  }
  Status answer;
  for (;;) {
    if (!leading_) {
      if (durable && w.Answered(&answer)) return answer;
      LeadNowLocked(l);
      if (!durable) return failed_;
      continue;  // our record was in the batch (or refused): answered
    }
    l.unlock();
    if (w.Wait(&answer)) return answer;
    l.lock();
  }
}

// Unforced records (ENDs) that no decision's batch took go out after a
// moment, in a batch of their own that waits for no flush.
void PostgresStore::FlushLoop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!flush_stop_) {
    flush_cv_.wait(l, [&] { return flush_stop_ || !pending_.empty(); });
    if (flush_stop_) break;
    flush_cv_.wait_for(l, std::chrono::milliseconds(20), [&] { return flush_stop_; });
    if (flush_stop_) break;
    if (leading_ || pending_.empty() || !failed_.ok()) continue;
    LeadNowLocked(l);
  }
}

// REQUIRES: mu_ held via lock, no leader.
void PostgresStore::LeadNowLocked(std::unique_lock<std::mutex>& lock) {
  leading_ = true;
  LeadLocked(lock);
  leading_ = false;
  idle_cv_.notify_all();  // Close and SettledLocked wait for no leader
  // Wake the first durable appender still waiting: it leads the next batch.
  for (auto& [q, e] : pending_) {
    if (q.waiter) {
      q.waiter->Poke();  // not answered: it is still queued
      break;
    }
  }
}

// REQUIRES: mu_ held via lock.
Status PostgresStore::SettledLocked(std::unique_lock<std::mutex>& lock) {
  if (failed_.ok()) return failed_;
  idle_cv_.wait(lock, [&] { return !leading_; });
  if (failed_.ok()) return failed_;  // settled by another thread meanwhile
  // Once more, briefly: the backend that ran the batch may be gone by now, or
  // the store back after a failover.
  leading_ = true;
  const Unsettled u = unsettled_;
  lock.unlock();
  Status s = Settle(u.probes, u.pid, u.start, Clock::now() + std::chrono::seconds(2));
  lock.lock();
  leading_ = false;
  idle_cv_.notify_all();
  if (!s.IsUnknownOutcome()) {
    failed_ = Status::OK();
    unsettled_ = Unsettled();
  }
  return failed_;
}

// Tells p's appender, if one waits, how its batch went. Without mu_: the
// appender wakes and returns without waiting for it.
void PostgresStore::Finish(Pending& p, const Status& s) {
  if (p.waiter) p.waiter->Answer(s);
}

// REQUIRES: mu_ held via lock, leading_ set by the caller.
void PostgresStore::LeadLocked(std::unique_lock<std::mutex>& lock) {
  while (!pending_.empty()) {
    // One epoch per batch: records made under another (an ended session's)
    // are refused without being written.
    const uint64_t epoch = pending_.back().second;
    std::vector<Pending> batch, refused;
    for (auto& [p, e] : pending_) {
      if (e == epoch) {
        batch.push_back(std::move(p));
      } else {
        refused.push_back(std::move(p));
      }
    }
    pending_.clear();
    lock.unlock();
    for (Pending& p : refused) Finish(p, Status::Fenced("the node's session ended before this decision was written"));
    refused.clear();
    const std::string pid = writer_pid_, start = writer_start_;  // the backend it goes to, if connected
    Status s = WriteBatch(batch, epoch);
#ifdef XATM_FAULT_INJECTION
    // A decision committed, and not one of the batch's committers told yet.
    if (s.ok() && std::any_of(batch.begin(), batch.end(), [](const Pending& p) { return p.decision; })) {
      XATM_CRASH_POINT("store.decision_batch.after_commit");
    }
#endif
    lock.lock();
    bool any_durable = false;
    if (s.ok()) {
      stats_.records += batch.size();
      stats_.batches += 1;
      for (const Pending& p : batch) any_durable = any_durable || p.waiter != nullptr;
      stats_.syncs += any_durable ? 1 : 0;
      stats_.max_batch = std::max<uint64_t>(stats_.max_batch, batch.size());
    } else if (s.IsUnknownOutcome()) {
      // Nothing is written or read until this batch's outcome is known: a
      // decision read as missing now could appear later.
      failed_ = s;
      unsettled_ = Unsettled();
      for (const Pending& p : batch) {
        if (!p.probe.empty()) unsettled_.probes.push_back(p.probe);
      }
      unsettled_.pid = unsettled_pid_.empty() ? pid : unsettled_pid_;
      unsettled_.start = unsettled_pid_.empty() ? start : unsettled_start_;
    }
    if (s.IsFenced()) {
      if (auto session = CurrentSession(); session->epoch() == epoch) session->End(s.message());
    }
    // Answered without mu_ (nothing is queued once the store has failed).
    if (!failed_.ok()) {
      for (auto& [p, e] : pending_) refused.push_back(std::move(p));
      pending_.clear();
    }
    const Status failed = failed_;
    lock.unlock();
    for (Pending& p : batch) Finish(p, s);
    for (Pending& p : refused) Finish(p, failed);
    lock.lock();
    if (!failed.ok()) return;
    bool waiting = false;
    for (const auto& [p, e] : pending_) waiting = waiting || p.waiter != nullptr;
    if (waiting) return;  // a durable appender leads the next batch
  }
}

std::chrono::seconds PostgresStore::commit_timeout() const {
  return std::chrono::seconds(opts_.commit_timeout_s > 0 ? opts_.commit_timeout_s : std::max(opts_.lease_s, 5));
}

Status PostgresStore::EnsureWriter() {
  if (writer_ && PQstatus(writer_) == CONNECTION_OK) return Status::OK();
  if (writer_) PQfinish(writer_);
  writer_ = nullptr;
  Conn c;
  Status s = Connect(opts_.conninfo, StoreTag(node_id_), &c, &sync_rep_cancelled_);
  if (!s.ok()) return s;
  writer_ = c.release();
  Result r(PQexec(writer_, "SELECT pg_backend_pid(), (SELECT backend_start FROM pg_stat_activity WHERE pid = "
                           "pg_backend_pid())::text"));
  writer_pid_.clear();
  writer_start_.clear();
  if (Ok(r) && PQntuples(r.get()) == 1) {
    writer_pid_ = PQgetvalue(r.get(), 0, 0);
    writer_start_ = PQgetvalue(r.get(), 0, 1);
  }
  return Status::OK();
}

// Called by the leader without mu_.
Status PostgresStore::WriteBatch(const std::vector<Pending>& batch, uint64_t epoch) {
  unsettled_pid_.clear();
  unsettled_start_.clear();
  if (Status s = EnsureWriter(); !s.ok()) return s;  // nothing sent: definitely not written
  bool durable = false;
  for (const Pending& p : batch) durable = durable || p.waiter != nullptr;
  // A decision waits for its WAL flush (and the synchronous standbys)
  // whatever the role or database set; ENDs alone need not.
  std::string sql = std::string("BEGIN; ") +
                    (!durable                                      ? "SET LOCAL synchronous_commit = off; "
                     : opts_.synchronous_commit == "remote_apply" ? "SET LOCAL synchronous_commit = remote_apply; "
                                                                  : "SELECT set_config('synchronous_commit', 'on', "
                                                                    "true) WHERE current_setting('synchronous_commit') "
                                                                    "IN ('off', 'local'); ") +
                    "SELECT xatm.check_epoch(" + Bytea(node_id_) + ", " + std::to_string(epoch) + "); ";
  for (const Pending& p : batch) sql += p.sql + "; ";
  sql += "COMMIT";
  sync_rep_cancelled_ = false;
  const std::string pid = writer_pid_, start = writer_start_;
  if (!PQsendQuery(writer_, sql.c_str())) {
    PQfinish(writer_);
    writer_ = nullptr;
    return Status::IOError("cannot reach the decision store");
  }
  const Reply r = Collect(writer_, Clock::now() + commit_timeout());
  if (r.committed && !r.lost) {
    if (sync_rep_cancelled_) {
      // Committed on the primary, not confirmed by the standby: settled by
      // the rows and a barrier, later (and this connection is done with).
      PQfinish(writer_);
      writer_ = nullptr;
      unsettled_pid_ = pid;
      unsettled_start_ = start;
      return Status::UnknownOutcome("the decision store's COMMIT returned before its synchronous standby "
                                    "confirmed it (the wait was cancelled): it may be lost at a failover");
    }
    return Status::OK();
  }
  if (!r.lost) {
    if (PQtransactionStatus(writer_) != PQTRANS_IDLE) PQclear(PQexec(writer_, "ROLLBACK"));
    if (r.state == kFencedState) {
      const std::shared_ptr<NodeSession> session = CurrentSession();
      return Status::Fenced(session->epoch() == epoch ? TakenOverMessage(session->incarnation())
                                                      : "node " + opts_.node_name + " was taken over");
    }
    return Status::IOError("the decision store refused the batch: " + r.error);
  }
  // The reply was lost: the COMMIT may have happened. Settled on a new
  // connection once the old backend is gone.
  PQfinish(writer_);
  writer_ = nullptr;
  std::vector<std::string> probes;
  for (const Pending& p : batch) {
    if (!p.probe.empty()) probes.push_back(p.probe);
  }
  unsettled_pid_ = pid;
  unsettled_start_ = start;
  return Settle(probes, pid, start, Clock::now() + std::chrono::seconds(std::max(10, opts_.lease_s)));
}

Status PostgresStore::Settle(const std::vector<std::string>& probes, const std::string& pid, const std::string& start,
                             Clock::time_point deadline) {
  for (;;) {
    Conn c;
    bool sync_rep_cancelled = false;
    if (Connect(opts_.conninfo, StoreTag(node_id_), &c, &sync_rep_cancelled).ok()) {
      // The old backend may still be committing: end it and wait.
      const std::string match = "pid = " + (pid.empty() ? "0" : pid) + " AND backend_start::text = " + Text(start);
      Result kill(PQexec(c.get(), ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE " + match).c_str()));
      Result left(PQexec(c.get(), ("SELECT count(*) FROM pg_stat_activity WHERE " + match).c_str()));
      if (Ok(left) && std::strcmp(PQgetvalue(left.get(), 0, 0), "0") == 0) {
        if (probes.empty()) return Status::OK();  // ENDs alone: lost or not, recovery redoes them
        Result r(PQexec(c.get(), probes.front().c_str()));
        if (Ok(r) && PQntuples(r.get()) == 0) {
          return Status::IOError("the decision store's connection was lost before the batch committed; it was "
                                 "not written");
        }
        // There, and on the standbys once a commit after it is.
        if (Ok(r) && Barrier(c.get(), &sync_rep_cancelled, std::min(deadline, Clock::now() + commit_timeout())).ok()) {
          return Status::OK();
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

// ---------------------------------------------------------------------------
// Takeover

// A node taken over, on the taker's connection.
class PostgresStore::Taken final : public TakenNode {
 public:
  Taken(Conn c, std::string node_id, std::string name, uint32_t upto, std::vector<RmIdentity> rms,
        std::string owner, bool peek)
      : c_(std::move(c)),
        node_id_(std::move(node_id)),
        name_(std::move(name)),
        upto_(upto),
        rms_(std::move(rms)),
        owner_(std::move(owner)),
        peek_(peek) {}
  ~Taken() override {
    if (!released_ && !peek_) (void)Release(false);
  }
  const std::string& node_id() const override { return node_id_; }
  const std::string& node_name() const override { return name_; }
  uint32_t upto() const override { return upto_; }
  const std::vector<RmIdentity>& rms() const override { return rms_; }
  Status State(log::LogState* out) override {
    if (Status s = Reach(); !s.ok()) return s;
    return ReadRecords(c_.get(), node_id_, out);
  }
  Status LoadBackends(std::vector<log::BackendEntry>* out) override {
    if (Status s = Reach(); !s.ok()) return s;
    return ReadBackends(c_.get(), node_id_, out);
  }
  Status RetainBackends(const std::function<bool(const log::BackendEntry&)>& keep) override {
    if (Status s = Writable(); !s.ok()) return s;
    return DropBackends(c_.get(), node_id_, keep);
  }
  Status Heuristic(const log::HeuristicRecord& r) override { return Write(HeuristicUpsert(node_id_, r)); }
  Status End(const std::string& gtrid) override { return Write(EndDelete(node_id_, gtrid)); }
  Status Release(bool settled) override {
    if (peek_) return Status::OK();
    released_ = true;
    return Write("UPDATE xatm.node SET lease_until = now() - interval '1 second', settled = " +
                 std::string(settled ? "true" : "false") + " WHERE node_id = " + Bytea(node_id_) +
                 " AND owner = " + Text(owner_));
  }

 private:
  Status Reach() {
    if (PQstatus(c_.get()) == CONNECTION_OK) return Status::OK();
    PQreset(c_.get());
    return PQstatus(c_.get()) == CONNECTION_OK ? Status::OK()
                                               : Status::IOError("cannot reach the decision store: " +
                                                                 Message(c_.get(), nullptr));
  }
  Status Writable() {
    if (peek_) return Status::InvalidArgument("node " + name_ + " was only looked at, not taken over");
    return Reach();
  }
  Status Write(const std::string& sql) {
    if (Status s = Writable(); !s.ok()) return s;
    Result r(PQexec(c_.get(), sql.c_str()));
    return Ok(r) ? Status::OK() : Status::IOError("cannot write the decision store: " + Message(c_.get(), r.get()));
  }

  Conn c_;
  const std::string node_id_, name_;
  const uint32_t upto_;
  const std::vector<RmIdentity> rms_;
  const std::string owner_;
  const bool peek_;
  bool released_ = false;
};

Status PostgresStore::ExpiredNodes(std::vector<std::string>* names) {
  names->clear();
  Conn c;
  Status s = Connect(opts_.conninfo, StoreTag(node_id_), &c);
  if (!s.ok()) return s;
  Result r(PQexec(c.get(), ("SELECT name FROM xatm.node WHERE lease_until < now() AND NOT settled AND name <> " +
                            Text(opts_.node_name) + " ORDER BY lease_until").c_str()));
  if (!Ok(r)) return Status::IOError("cannot read the decision store: " + Message(c.get(), r.get()));
  for (int i = 0; i < PQntuples(r.get()); ++i) names->push_back(PQgetvalue(r.get(), i, 0));
  return Status::OK();
}

Status PostgresStore::TakeOver(const std::string& name, bool force, bool peek, std::unique_ptr<TakenNode>* out) {
  out->reset();
  if (name == opts_.node_name && !opts_.read_only) {
    return Status::InvalidArgument("node " + name + " is this TM's own: its transactions are recovered by its own "
                                   "recovery (xatm recover)");
  }
  Conn c;
  bool sync_rep_cancelled = false;
  Status s = Connect(opts_.conninfo, "xatm-takeover/" + name, &c, &sync_rep_cancelled);
  if (!s.ok()) return s;
  const std::string owner = "takeover by " + (owner_.empty() ? MakeOwner() : opts_.node_name + " " + owner_);
  for (int attempt = 0;; ++attempt) {
    Result r(PQexec(c.get(), ("SELECT encode(node_id, 'hex'), greatest(incarnation, sessions_upto), epoch, owner, "
                              "lease_until < now(), "
                              "extract(epoch FROM lease_until - now())::bigint, rms FROM xatm.node WHERE name = " +
                              Text(name)).c_str()));
    if (!Ok(r)) return Status::IOError("cannot read the decision store: " + Message(c.get(), r.get()));
    if (PQntuples(r.get()) == 0) return Status::NotFound("no node " + name + " in the decision store");
    std::string node_id;
    tm::FromHex(PQgetvalue(r.get(), 0, 0), &node_id);
    const auto incarnation = static_cast<uint32_t>(std::atoll(PQgetvalue(r.get(), 0, 1)));
    const std::string epoch = PQgetvalue(r.get(), 0, 2);
    const std::string holder = PQgetvalue(r.get(), 0, 3);
    const bool expired = std::strcmp(PQgetvalue(r.get(), 0, 4), "t") == 0;
    const std::vector<RmIdentity> rms = DecodeRms(PQgetvalue(r.get(), 0, 6));
    if (peek) {
      *out = std::make_unique<Taken>(std::move(c), node_id, name, incarnation, rms, owner, /*peek=*/true);
      return Status::OK();
    }
    if (!expired && !force) {
      return Status::Busy("node " + name + " holds its lease (" + holder + ", " + PQgetvalue(r.get(), 0, 5) +
                          " s more): it is running. Stop it, or wait for the lease to run out; --force only if "
                          "you know it is gone for good (it then fails every commit it attempts)");
    }
    // Its store sessions end first: a frozen one may hold the lock the bump
    // needs (PITFALLS 44), and one in a synchronous-replication wait leaves a
    // row the bump's own synchronous commit then covers (PITFALLS 40).
    Result kill(PQexec(c.get(), ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                                 "application_name = " + Text(StoreTag(node_id)) + " AND pid <> pg_backend_pid()")
                                    .c_str()));
    (void)kill;
    sync_rep_cancelled = false;
    Result begin(PQexec(c.get(), "BEGIN; SET LOCAL lock_timeout = '2s'; SELECT set_config('synchronous_commit', "
                                 "'on', true) WHERE current_setting('synchronous_commit') IN ('off', 'local')"));
    Result bump(PQexec(c.get(), ("UPDATE xatm.node SET epoch = epoch + 1, owner = " + Text(owner) +
                                 ", lease_until = now() + make_interval(secs => " + std::to_string(opts_.lease_s) +
                                 "), taken_over_upto = greatest(incarnation, sessions_upto), taken_over_by = " + Text(owner) +
                                 ", settled = false WHERE name = " + Text(name) + " AND epoch = " + epoch +
                                 (force ? "" : " AND lease_until < now()") + " RETURNING 1").c_str()));
    const bool moved = Ok(bump) && PQntuples(bump.get()) == 1;
    const char* code = bump ? PQresultErrorField(bump.get(), PG_DIAG_SQLSTATE) : nullptr;
    const std::string why = Ok(bump) ? "" : Message(c.get(), bump.get());
    Result commit(PQexec(c.get(), Ok(bump) ? "COMMIT" : "ROLLBACK"));
    if (moved && Ok(commit) && !sync_rep_cancelled) {
      *out = std::make_unique<Taken>(std::move(c), node_id, name, incarnation, rms, owner, /*peek=*/false);
      return Status::OK();
    }
    if (moved && sync_rep_cancelled) {
      return Status::UnknownOutcome("the takeover of node " + name + " is not confirmed by the store's synchronous "
                                    "standby: nothing of it is resolved now");
    }
    if (Ok(bump) && !moved) {
      return Status::Busy("node " + name + " was claimed or taken over by another process meanwhile");
    }
    // Lock timeout: a session of the node came back and holds the node's
    // row; end it again.
    if (!(code && std::strcmp(code, "55P03") == 0) || attempt >= 5) {
      return Status::IOError("cannot take node " + name + " over: " + why);
    }
  }
}

}  // namespace xtm::store
