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
work=$(mktemp -d /tmp/xatm-mbench-XXXXXX)
chmod 755 "$work"
cleanup() { bash "$root/scripts/pg-cluster.sh" stop "$work/pg" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
eval "$(bash "$root/scripts/pg-cluster.sh" start "$work/pg")"
psql -X -q "$XATM_TEST_PG_CONNINFO" -c "CREATE DATABASE bench1"
"$root/build/bench/xatm-memory-bench" --pg "host=$XATM_TEST_PG_DIR port=$XATM_TEST_PG_PORT user=postgres dbname=bench1" \
  --dir "$work/data" --transactions "$n" "$@"
