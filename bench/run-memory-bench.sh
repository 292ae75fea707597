#!/usr/bin/env bash
# One TM process, N two-phase transfers (PostgreSQL + SQLite) on a private
# PostgreSQL: its resident set size as it goes.
#
#   bench/run-memory-bench.sh [N] [xatm-memory-bench options...]   (N default 1000000)
#
# Build first (scripts/build.sh build).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-1000000}
shift || true
. "$root/bench/private-pg.sh"
private_pg mbench bench1
"$root/build/bench/xatm-memory-bench" --pg "$base dbname=bench1" \
  --dir "$work/data" --transactions "$n" "$@"
