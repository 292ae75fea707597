#!/usr/bin/env bash
# PostgreSQL + MariaDB transfers on this machine: one UPDATE on each per
# transfer, at 1, 4 and 16 threads, alternating in one run: local commits
# (no atomicity), xatm (both prepared, the decision logged), xatm with
# PostgreSQL as the last resource, and XA by hand on both (nothing recorded).
#
#   bench/run-mysql-bench.sh [OUT_DIR] [--seconds S] [--rounds N]
#
# Writes OUT_DIR/xatm-mysql-bench.md and .csv.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/bench/results}" && cd "${1:-$root/bench/results}" && pwd)
shift || true
. "$root/bench/private-pg.sh"
bench_build
private_pg mysql bench1 bench2
trap 'bash "$root/scripts/mariadb-server.sh" stop "$work/mysql" >/dev/null 2>&1 || true;
      bash "$root/scripts/pg-cluster.sh" stop "$work/pg" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
eval "$(bash "$root/scripts/mariadb-server.sh" start "$work/mysql")"
"$bin/bench/xatm-bench" --pg "$base dbname=bench1" --pg2 "$base dbname=bench2" --dir "$work/data" \
  --mysql-socket "$XATM_TEST_MYSQL_SOCKET" --mysql-db bench --csv "$out/xatm-mysql-bench.csv" --threads 1,4,16 \
  --modes local-my,xatm-my,xatm-lrc-my,manual-my "$@" | tee "$out/xatm-mysql-bench.md"
echo "wrote $out/xatm-mysql-bench.md"
