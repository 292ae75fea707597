#!/usr/bin/env bash
# Recovery of many in-doubt transactions: a private PostgreSQL with enough
# prepared-transaction slots, then xatm-recovery-bench.
#
#   bench/run-recovery-bench.sh [COUNT] [--last-resource]    (default 10000)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
count=${1:-10000}
shift || true
. "$root/bench/private-pg.sh"
bench_build
XATM_PG_MAX_PREPARED=$((count + 100)) private_pg recovery
"$bin/bench/xatm-recovery-bench" --pg "$XATM_TEST_PG_CONNINFO" --dir "$work/data" --count "$count" "$@"
