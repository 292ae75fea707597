// xatm.hpp compiles as strict C++17 (-pedantic -Werror) with the public
// library alone, and reports a failure as xatmpp::Error with the C code.
#include <xatm/xatm.hpp>

#include <cstdio>
#include <type_traits>

static_assert(std::is_nothrow_move_constructible_v<xatmpp::Transaction>);
static_assert(std::is_nothrow_move_assignable_v<xatmpp::TransactionManager>);
static_assert(!std::is_copy_assignable_v<xatmpp::Transaction>);

int main() {
  try {
    xatmpp::TransactionManager tm("/nonexistent/xatm.conf");
    std::fprintf(stderr, "opened a configuration that does not exist\n");
    return 1;
  } catch (const xatmpp::Error& e) {
    if (e.code() != XATM_ECONFIG || e.heuristic() || e.committed() || e.rolled_back()) {
      std::fprintf(stderr, "unexpected error %d: %s\n", e.code(), e.what());
      return 1;
    }
  }
  return 0;
}
