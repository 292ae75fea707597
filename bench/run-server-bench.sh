#!/usr/bin/env bash
# xatmd against the embedded TM with 1, 4 and 16 client processes, on a
# private PostgreSQL with two databases and a SQLite file.
#
#   bench/run-server-bench.sh [OUT_DIR] [xatm-server-bench options...]
#
# Writes OUT_DIR/xatm-server-bench.csv (every round) and .md (the table).
#
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/bench/results}" && cd "${1:-$root/bench/results}" && pwd)
shift || true
. "$root/bench/private-pg.sh"
bench_build
private_pg sbench bench1 bench2
"$bin/bench/xatm-server-bench" --pg "$base dbname=bench1" --pg2 "$base dbname=bench2" --dir "$work/data" \
  --xatmd "$bin/tm/xatmd" --csv "$out/xatm-server-bench.csv" "$@" | tee "$out/xatm-server-bench.md"
echo "wrote $out/xatm-server-bench.csv and $out/xatm-server-bench.md"
