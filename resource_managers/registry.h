// The type table: which switch and which extras (common/rm_extras.h) a
// configured RM type gets. Adding an RM adds a row here, its directory, and
// its keys in the configuration; the TM's protocol does not change.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/rm_extras.h"
#include "xatm/xa.h"

namespace xtm::rm {

struct RmType {
  const char* name;  // the configuration's `type = NAME`
  xa_switch_t* sw;
  std::unique_ptr<RmExtras> (*make)(const RmParams&);
};

// nullptr for a name that is not one of xatm's RMs.
const RmType* FindRmType(std::string_view name);

// Whether sw is one of xatm's own switches (they close their per-thread
// connections themselves when a thread ends).
bool IsXatmSwitch(const xa_switch_t* sw);

// Which database a configured RM of type `type` is (RmExtras::Identity), or
// "" if that type cannot tell or it cannot be read now.
std::string IdentityOf(std::string_view type, const RmParams& params);

// The extras of a third-party xa_switch_t: every default (the classic
// protocol), and its xa_info as given.
std::unique_ptr<RmExtras> PlainExtras(const RmParams& params);

}  // namespace xtm::rm
