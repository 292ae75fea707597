// What the MySQL/MariaDB RM offers the TM beside its switch
// (common/rm_extras.h): its connections, branches that stay with the session
// that prepared them (so phase two runs on the caller's thread), and the
// transaction timeout. It keeps no decision rows: it is never the last
// resource, and a transaction with a MySQL branch among others takes the
// classic protocol.
#include <mysql.h>

#include <string>

#include "common/rm_extras.h"
#include "mysql/mysql_rm.h"
#include "xatm/rm_mysql.h"

namespace xtm::mysql {
namespace {

class MysqlExtras final : public rm::RmExtras {
 public:
  explicit MysqlExtras(const rm::RmParams& p) : p_(p) {}

  std::string XaInfo(const std::string& /*session_tag*/) const override { return p_.conninfo; }
  std::string LastError(int rmid) const override { return mysql::LastError(rmid); }
  void* Native(int rmid) const override { return xatm_mysql_conn(rmid); }
  // The session that prepared a branch holds it: finishing it there costs no
  // wait for the server to release it (PITFALLS 28, 29).
  bool FinishesOnAnyThread() const override { return false; }
  // Ends the branch's session: the server rolls its XA transaction back and
  // frees its locks; the owner's next call finds the connection gone.
  bool AbortFromAnotherThread(void* native) const override {
    const unsigned long id = mysql_thread_id(static_cast<MYSQL*>(native));
    ConnParams cp;
    std::string why;
    if (id == 0 || !ParseConnParams(p_.conninfo, &cp).empty()) return false;
    MYSQL* my = ConnectWith(cp, /*with_database=*/false, 0, &why);
    if (my == nullptr) return false;
    const std::string sql = "KILL CONNECTION " + std::to_string(id);
    const bool ok = mysql_real_query(my, sql.data(), sql.size()) == 0;
    mysql_close(my);
    return ok;
  }

 private:
  const rm::RmParams p_;
};

}  // namespace

std::unique_ptr<rm::RmExtras> MakeExtras(const rm::RmParams& params) {
  return std::make_unique<MysqlExtras>(params);
}

}  // namespace xtm::mysql
