#!/usr/bin/env bash
# Recovery of many in-doubt transactions: a private PostgreSQL with enough
# prepared-transaction slots, then xatm-recovery-bench.
#
#   bench/run-recovery-bench.sh [COUNT]     (default 10000)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
count=${1:-10000}
work=$(mktemp -d /tmp/xatm-recovery-XXXXXX)
chmod 755 "$work"
cleanup() { bash "$root/scripts/pg-cluster.sh" stop "$work/pg" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
pgenv=$(XATM_PG_MAX_PREPARED=$((count + 100)) bash "$root/scripts/pg-cluster.sh" start "$work/pg")
eval "$pgenv"
"$root/build/bench/xatm-recovery-bench" --pg "$XATM_TEST_PG_CONNINFO" --dir "$work/data" --count "$count"
