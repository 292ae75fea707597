// What a resource manager offers the TM beside its xa_switch_t: the one seam
// through which the TM uses an RM's extras. The TM names no RM; each of
// xatm's RMs implements this interface in its own directory, and the type
// table (resource_managers/registry.h) says which one a configured type gets.
//
// Every capability has a default that is safe for any XA resource manager: a
// third-party xa_switch_t gets the defaults and works in the classic protocol
// (every writing branch prepared, the commit point a log record). An RM that
// overrides one must keep the promise written beside it.
//
// One RmExtras per configured RM, shared by every thread of the TM; calls
// about "this thread's" connection or branch are answered from the RM's
// per-thread state, so they are made on the thread that holds the branch.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace xtm::rm {

// The sessions of dead incarnations of a node, which recovery ends before it
// scans an RM (a dead process's session may still be preparing).
struct DeadSessions {
  std::string node_hex;        // the node's id, hex, as in the session tag
  uint32_t max = 0;            // incarnations above this are live
  std::set<uint32_t> live;     // live incarnations at or below max
  struct Backend {             // a session a dead incarnation registered
    int pid = 0;
    std::string start;
  };
  std::vector<Backend> backends;
};

// What a configured RM is, for its RmExtras.
struct RmParams {
  std::string name;          // the configured name, for messages
  int rmid = 0;              // the rmid the TM gives the switch
  std::string conninfo;      // a server's connection string (PostgreSQL conninfo, MySQL key=value pairs)
  std::string path;          // a file database's path (SQLite)
  int busy_timeout_ms = -1;  // -1: the RM's default
  bool read_only = false;    // the admin tool only looks: the RM writes nothing
  std::string xa_info;       // a third-party switch's xa_info
};

// What an RM read under its lock for one recovery pass (FencedDecisionRow).
struct FencedRead {
  bool done = false;
  std::optional<std::set<std::string>> rows;  // nullopt: could not be read
};

class RmExtras {
 public:
  virtual ~RmExtras() = default;

  // ---- Opening and diagnostics ------------------------------------------
  // What xa_open gets now. session_tag names the TM's node and incarnation
  // (xatm/<node>/<incarnation>): an RM whose server can show it per session
  // carries it, so that recovery can find a dead incarnation's sessions.
  virtual std::string XaInfo(const std::string& session_tag) const = 0;
  // Why the last switch call on this thread failed; "" if the RM does not say.
  virtual std::string LastError(int /*rmid*/) const { return ""; }
  // This thread's native connection for the RM's branch (PGconn*, sqlite3*,
  // MYSQL*); nullptr for an RM without one. Asked again after xa_start.
  virtual void* Native(int /*rmid*/) const { return nullptr; }
  // The TM's xids are new by construction: xa_start may skip the RM's
  // duplicate-xid check on this thread's connection.
  virtual void TrustFreshXids(int /*rmid*/) const {}
  // Whether the RM can tell which database it is (Identity), stable across
  // processes: a node taking another over compares them before presuming.
  virtual bool HasIdentity() const { return false; }
  // "" when it cannot be read now.
  virtual std::string Identity() const { return ""; }

  // ---- Branches and threads -----------------------------------------------
  // Whether this thread's active or ended branch has written anything. false
  // only when provably nothing: the TM then has it vote first (read-only),
  // and a single branch left commits in one phase.
  virtual bool BranchHasWrites(int /*rmid*/) const { return true; }
  // Whether a prepared branch can be committed from any thread (the XA rule).
  // false: it lives in the connection of the thread that prepared it (SQLite),
  // so phase two of it runs there, and an unknown outcome is settled there.
  virtual bool FinishesOnAnyThread() const { return true; }
  // Whether xa_prepare and xa_commit accept TMASYNC (returning a handle;
  // xa_complete gives the vote or outcome). The TM then sends every such
  // branch's PREPARE (COMMIT) before it waits for any, so that their round
  // trips and log flushes overlap.
  virtual bool TakesAsync() const { return false; }
  // Rolls back, from another thread, the unprepared branch whose native
  // connection is `native` (the transaction timeout), releasing its locks.
  // false if the RM cannot: the timeout then waits for the owner's next call.
  virtual bool AbortFromAnotherThread(void* /*native*/) const { return false; }

  // ---- Sessions a dead process may have left --------------------------------
  // The server-side session of this thread's connection, identified in a way
  // the application cannot change (PostgreSQL: backend pid and start time).
  // false if the RM has no such identity.
  virtual bool SessionOf(int /*rmid*/, int* /*pid*/, std::string* /*start*/) const { return false; }
  // Ends the sessions of dead incarnations (those in `dead`, and those tagged
  // with a dead incarnation) and waits until they are gone. false, with
  // *why, if that cannot be made sure of: the RM must not be scanned then.
  // *ended: how many were ended. An RM whose sessions cannot finish a branch
  // after their process is gone needs nothing here.
  virtual bool EndDeadSessions(const DeadSessions& /*dead*/, int* ended, std::string* /*why*/) {
    *ended = 0;
    return true;
  }

  // ---- Decision rows: the last-resource commit ------------------------------
  // An RM that can hold a decision row inside a branch's own transaction can
  // be the last resource: its one-phase COMMIT is then the commit point.
  enum class LastResource {
    kNever,      // no decision rows
    kInProcess,  // its COMMIT runs in this process: nothing is left running if it dies
    kServer,     // its COMMIT runs in a server: a dead process's may still be running
  };
  virtual LastResource LastResourceKind() const { return LastResource::kNever; }
  // For kServer: makes sure the decision table exists (created if missing).
  // "" or why not, with what to do.
  virtual std::string EnableDecisionRows() { return "this resource manager keeps no decision rows"; }
  // Whether this thread's active branch, on connection native, can write a
  // decision row now (a read-only session cannot).
  virtual bool CanDecide(void* /*native*/) const { return false; }
  // Inserts the decision row of gtrid inside this thread's active branch, and
  // deletes the rows of `finished` with it. Its COMMIT must be durable
  // whatever the session's settings. "" or why not.
  virtual std::string WriteDecisionRow(int /*rmid*/, const std::string& /*gtrid*/,
                                       const std::vector<std::string>& /*finished*/) {
    return "this resource manager keeps no decision rows";
  }
  // After a decision row committed on this RM (for upkeep such as vacuuming).
  virtual void DecisionRowCommitted() {}
  // Upkeep from the TM's background thread, every second or so.
  virtual void Maintain() {}
  // The gtrids of the committed decision rows (only `only`, if given), by a
  // plain read outside any branch. 0 when read (no table: no rows), -1 when
  // it cannot be known now (*why). Never "none" on an error.
  virtual int ReadDecisionRows(std::set<std::string>* /*out*/, const std::string* /*only*/, std::string* /*why*/) {
    return 0;
  }
  // Whether a decision row for gtrid is committed, read so that a COMMIT in
  // flight cannot slip past (it waits for the last resource's transaction):
  // 1, 0, or -1 (*why) when it cannot be known now. pass keeps what one
  // recovery pass read, for RMs that read everything at once.
  virtual int FencedDecisionRow(const std::string& /*gtrid*/, FencedRead* /*pass*/, std::string* /*why*/) {
    return 0;
  }
  // Deletes rows outside any branch. true when done.
  virtual bool DeleteDecisionRows(const std::vector<std::string>& /*gtrids*/) { return true; }
};

}  // namespace xtm::rm
