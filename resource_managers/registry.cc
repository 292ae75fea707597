#include "registry.h"

#include "mysql/mysql_rm.h"
#include "pgsql/pgsql_rm.h"
#include "sqlite/sqlite_rm.h"
#include "xatm/rm_mysql.h"
#include "xatm/rm_pgsql.h"
#include "xatm/rm_sqlite.h"

namespace xtm::rm {
namespace {

class PlainSwitchExtras final : public RmExtras {
 public:
  explicit PlainSwitchExtras(std::string xa_info) : xa_info_(std::move(xa_info)) {}
  std::string XaInfo(const std::string& /*session_tag*/) const override { return xa_info_; }

 private:
  const std::string xa_info_;
};

const RmType kTypes[] = {
    {"postgresql", &xatm_pgsql_switch, &pgsql::MakeExtras},
    {"sqlite", &xatm_sqlite_switch, &sqlite::MakeExtras},
    {"mysql", &xatm_mysql_switch, &mysql::MakeExtras},
};

}  // namespace

const RmType* FindRmType(std::string_view name) {
  for (const RmType& t : kTypes) {
    if (name == t.name) return &t;
  }
  return nullptr;
}

bool IsXatmSwitch(const xa_switch_t* sw) {
  for (const RmType& t : kTypes) {
    if (sw == t.sw) return true;
  }
  return false;
}

std::string IdentityOf(std::string_view type, const RmParams& params) {
  const RmType* t = FindRmType(type);
  return t ? t->make(params)->Identity() : "";
}

std::unique_ptr<RmExtras> PlainExtras(const RmParams& params) {
  return std::make_unique<PlainSwitchExtras>(params.xa_info);
}

}  // namespace xtm::rm
