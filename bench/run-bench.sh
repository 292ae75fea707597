#!/usr/bin/env bash
# The transfer benchmark end to end: a private PostgreSQL with two databases,
# xatm-bench over them and a SQLite file, then a chart of the results.
#
#   bench/run-bench.sh [OUT_DIR] [xatm-bench options...]
#
# Writes OUT_DIR/xatm-bench.csv (every round), .summary.csv (medians) and
# xatm-bench.svg.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/bench/results}" && cd "${1:-$root/bench/results}" && pwd)
shift || true
. "$root/bench/private-pg.sh"
bench_build
private_pg bench bench1 bench2
"$bin/bench/xatm-bench" --pg "$base dbname=bench1" --pg2 "$base dbname=bench2" --dir "$work/data" \
  --pg-data "$work/pg/data" --csv "$out/xatm-bench.csv" "$@" | tee "$out/xatm-bench.md"
bash "$root/bench/plot-svg.sh" "$out/xatm-bench.csv.summary.csv" > "$out/xatm-bench.svg"
echo "wrote $out/xatm-bench.csv, $out/xatm-bench.csv.summary.csv, $out/xatm-bench.svg"
