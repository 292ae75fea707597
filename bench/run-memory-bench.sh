#!/usr/bin/env bash
# One TM process, N transfers (PostgreSQL + SQLite; default settings, or
# --every-branch-prepared) on a private PostgreSQL: its resident set size as
# it goes.
#
#   bench/run-memory-bench.sh [N] [xatm-memory-bench options...]   (N default 1000000)
#
#
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-1000000}
shift || true
. "$root/bench/private-pg.sh"
bench_build
private_pg mbench bench1
"$bin/bench/xatm-memory-bench" --pg "$base dbname=bench1" \
  --dir "$work/data" --transactions "$n" "$@"
