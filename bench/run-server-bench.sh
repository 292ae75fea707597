#!/usr/bin/env bash
# xatmd against the embedded TM with 1, 4 and 16 client processes, on a
# private PostgreSQL with two databases and a SQLite file.
#
#   bench/run-server-bench.sh [OUT_DIR] [xatm-server-bench options...]
#
# Writes OUT_DIR/xatm-server-bench.csv (every round) and .md (the table).
# Build first (scripts/build.sh build).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/bench/results}" && cd "${1:-$root/bench/results}" && pwd)
shift || true
work=$(mktemp -d /tmp/xatm-sbench-XXXXXX)
chmod 755 "$work"
cleanup() { bash "$root/scripts/pg-cluster.sh" stop "$work/pg" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
pgenv=$(bash "$root/scripts/pg-cluster.sh" start "$work/pg")
eval "$pgenv"
psql -X -q "$XATM_TEST_PG_CONNINFO" -c "CREATE DATABASE bench1" -c "CREATE DATABASE bench2"
base="host=$XATM_TEST_PG_DIR port=$XATM_TEST_PG_PORT user=postgres"
"$root/build/bench/xatm-server-bench" --pg "$base dbname=bench1" --pg2 "$base dbname=bench2" --dir "$work/data" \
  --xatmd "$root/build/tm/xatmd" --csv "$out/xatm-server-bench.csv" "$@" | tee "$out/xatm-server-bench.md"
echo "wrote $out/xatm-server-bench.csv and $out/xatm-server-bench.md"
