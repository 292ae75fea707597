// The one place that picks a DecisionStore from the configuration.
#pragma once

#include <memory>
#include <vector>

#include "core/config.h"
#include "store/decision_store.h"

namespace xtm::store {

struct StoreOptions {
  bool read_only = false;  // look, never write (the admin tool's list, show)
  bool force = false;      // with read_only: even while another process owns the log
};

// With [tm] server: a session of that xatmd (HELLO naming cfg's RMs, which
// the server must have too); else the decision log in [tm] log_dir.
Status OpenStore(const tm::TmConfig& cfg, const StoreOptions& opts, std::unique_ptr<DecisionStore>* out);

// cfg's resource managers as a store records them for whoever takes the node
// over (a SQLite database's id once the RM has opened it).
std::vector<RmIdentity> RmIdentities(const tm::TmConfig& cfg);

}  // namespace xtm::store
