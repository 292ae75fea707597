#!/usr/bin/env bash
# Configures and builds xatm: scripts/build.sh BUILD_DIR [cmake options...]
# The project's own builds treat warnings as errors (XATM_WERROR); a user's
# plain cmake build does not.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$1
shift
gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
if [ ! -f "$dir/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$dir" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DXATM_WERROR=ON "$@" >/dev/null
else
  cmake -S "$root" -B "$dir" -DXATM_WERROR=ON "$@" >/dev/null
fi
cmake --build "$dir" -j "$(nproc)"
