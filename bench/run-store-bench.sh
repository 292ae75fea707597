#!/usr/bin/env bash
# The PostgreSQL decision store against the file log, on this machine:
#   1. decisions/s at 1, 4, 16, 64 committers: the file log, a store on a
#      PostgreSQL of its own, and a store whose primary has a synchronous
#      standby (both on this machine);
#   2. two-database transfers in the classic protocol (every branch prepared,
#      the decision recorded) at 1, 4, 16 threads with each store (store2: the
#      one with a synchronous standby).
#
#   bench/run-store-bench.sh [OUT_DIR] [--seconds S] [--rounds N]
#
# Writes OUT_DIR/xatm-store-bench.md (decisions) and xatm-store-transfers.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/bench/results}" && cd "${1:-$root/bench/results}" && pwd)
shift || true
. "$root/bench/private-pg.sh"
bench_build
private_pg store bench1 bench2
bank="$base"
cluster() { bash "$root/scripts/pg-cluster.sh" "$@"; }
# A store of its own, and a primary with a synchronous standby.
trap 'for d in store primary standby; do cluster stop "$work/$d" immediate >/dev/null 2>&1 || true; done;
      cluster stop "$work/pg" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
eval "$(cluster start "$work/store")"
store="host=$XATM_TEST_PG_DIR port=$XATM_TEST_PG_PORT user=postgres dbname=postgres"
eval "$(cluster start "$work/primary")"
primary="host=$XATM_TEST_PG_DIR port=$XATM_TEST_PG_PORT user=postgres dbname=postgres"
cluster standby "$work/standby" "$work/primary" s1 >/dev/null
psql -X -q "$primary" -c "ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 (s1)'" -c "SELECT pg_reload_conf()"
for _ in $(seq 1 60); do
  [ "$(psql -X -qAt "$primary" -c "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")" = 1 ] && break
  sleep 0.5
done
"$bin/bench/xatm-log-bench" --dir "$work/log" "$@" --store "$store" --label "postgresql store" \
  --store "$primary" --label "postgresql store, sync standby" | tee "$out/xatm-store-bench.md"
"$bin/bench/xatm-bench" --pg "$bank dbname=bench1" --pg2 "$bank dbname=bench2" --dir "$work/data" \
  --store "$store" --store2 "$primary" --csv "$out/xatm-store-transfers.csv" --threads 1,4,16 \
  --modes local,xatm-2pc,xatm-2pc-store,xatm-2pc-store2,local-pg2,xatm-pg2,xatm-store-pg2,xatm-store2-pg2 "$@" |
  tee "$out/xatm-store-transfers.md"
echo "wrote $out/xatm-store-bench.md and $out/xatm-store-transfers.md"
