// Internal interface of the MySQL/MariaDB resource manager, for the TM and tests.
#pragma once

#include <memory>
#include <string>

#include "common/rm_extras.h"

struct st_mysql;

namespace xtm::mysql {

// What this RM offers the TM beside its switch (mysql_extras.cc).
std::unique_ptr<rm::RmExtras> MakeExtras(const rm::RmParams& params);

// xa_info: space-separated key=value pairs; a value may be single-quoted
// (with '' or \' for a quote inside).
struct ConnParams {
  std::string host, socket, user, password, database;
  bool has_password = false;
  unsigned port = 0;
  bool durability_warn = false;  // durability=warn
};
// "" or what is wrong (naming the key).
std::string ParseConnParams(const std::string& info, ConnParams* out);
// For messages: the pairs without the password.
std::string Describe(const ConnParams& p);
// A new connection to p's server (p's database unless with_database is
// false); nullptr with *error if it cannot be had. mysql_close it.
st_mysql* ConnectWith(const ConnParams& p, bool with_database, unsigned long client_flags, std::string* error);

// Whether a server of this @@version can take part: its prepared branches
// must outlive the session (MariaDB 10.5, MySQL 5.7.7). "" or why not.
std::string CheckVersion(const std::string& version);
// Whether a commit survives a crash of the server: @@innodb_flush_log_at_trx_commit
// = 1 and, with the binary log on, @@sync_binlog = 1. "" or which variable is
// wrong and what to set.
std::string CheckDurability(const std::string& flush_log, const std::string& log_bin, const std::string& sync_binlog);

// For the admin tool: how many XA branches the server holds prepared (all
// of the server's: XA is not per database) and how long the oldest has been
// (-1 if none). False, with *error, if the server cannot be asked.
bool PreparedSummary(const std::string& info, int64_t* count, int64_t* oldest_s, std::string* error);

// The message of the last failed switch call on this thread for rmid ("" if none).
std::string LastError(int rmid);

// How long the RM waits for a lost session to end, or for another session to
// release a prepared branch, before it answers XAER_RMFAIL or XA_RETRY.
// Default 10 s.
void SetResolveTimeoutMs(int ms);

// Whether this thread's session for rmid holds a prepared branch.
bool HoldsPrepared(int rmid);

}  // namespace xtm::mysql
