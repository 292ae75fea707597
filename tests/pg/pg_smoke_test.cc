// The private PostgreSQL cluster starts and takes a PREPARE TRANSACTION.
#include <gtest/gtest.h>

#include "support/pg_cluster.h"

namespace xtm::test {
namespace {

TEST(PrivateCluster, AcceptsPrepareTransaction) {
  ScratchDb db;
  PGconn* c = ConnectOrDie(db.conninfo());
  EXPECT_NE("0", Exec(c, "SHOW max_prepared_transactions"));
  EXPECT_EQ("on", Exec(c, "SHOW fsync"));
  Exec(c, "CREATE TABLE t (id int PRIMARY KEY)");
  Exec(c, "BEGIN");
  Exec(c, "INSERT INTO t VALUES (1)");
  PGresult* r = PQexec(c, "PREPARE TRANSACTION 'xatm-smoke'");
  EXPECT_EQ(PGRES_COMMAND_OK, PQresultStatus(r));
  EXPECT_STREQ("PREPARE TRANSACTION", PQcmdStatus(r));
  PQclear(r);
  EXPECT_EQ("1", Exec(c, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'xatm-smoke'"));
  EXPECT_EQ("0", Exec(c, "SELECT count(*) FROM t"));
  Exec(c, "COMMIT PREPARED 'xatm-smoke'");
  EXPECT_EQ("1", Exec(c, "SELECT count(*) FROM t"));
  PQfinish(c);
}

}  // namespace
}  // namespace xtm::test
