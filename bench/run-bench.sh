#!/usr/bin/env bash
# The transfer benchmark end to end: a private PostgreSQL with two databases,
# xatm-bench over them and a SQLite file, then a chart of the results.
#
#   bench/run-bench.sh [OUT_DIR] [xatm-bench options...]
#
# Writes OUT_DIR/xatm-bench.csv (every round), .summary.csv (medians) and
# xatm-bench.svg. Build first (scripts/build.sh build).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/bench/results}" && cd "${1:-$root/bench/results}" && pwd)
shift || true
work=$(mktemp -d /tmp/xatm-bench-XXXXXX)
chmod 755 "$work"
cleanup() { bash "$root/scripts/pg-cluster.sh" stop "$work/pg" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
pgenv=$(bash "$root/scripts/pg-cluster.sh" start "$work/pg")
eval "$pgenv"
psql -X -q "$XATM_TEST_PG_CONNINFO" -c "CREATE DATABASE bench1" -c "CREATE DATABASE bench2"
base="host=$XATM_TEST_PG_DIR port=$XATM_TEST_PG_PORT user=postgres"
"$root/build/bench/xatm-bench" --pg "$base dbname=bench1" --pg2 "$base dbname=bench2" --dir "$work/data" \
  --csv "$out/xatm-bench.csv" "$@" | tee "$out/xatm-bench.md"
bash "$root/bench/plot-svg.sh" "$out/xatm-bench.csv.summary.csv" > "$out/xatm-bench.svg"
echo "wrote $out/xatm-bench.csv, $out/xatm-bench.csv.summary.csv, $out/xatm-bench.svg"
