#!/usr/bin/env bash
# Two builds of xatm measured alternating in one run: a revision (before) and
# the work tree (after). Each round runs the same xatm-bench modes with each
# build in turn, on one private PostgreSQL, so that the machine's drift falls
# on both alike; the table gives, per mode and thread count, the median
# throughput and client CPU of each build and the median over the rounds of
# after/before within a round.
#
#   bench/run-ab.sh [--two-clusters] REV ROUNDS [xatm-bench options: --seconds S --threads 1,4 --modes local,xatm,...]
#   bench/run-ab.sh --server REV ROUNDS [xatm-server-bench options: --seconds S]
#
# --two-clusters: the second database (--pg2) in a private cluster of its
# own, as two database servers would be (their WAL flushes do not queue on
# one WAL writer).
#
# Writes bench/results/ab-REV.csv (ab-server-REV.csv; every round of both
# builds) and prints the table.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
server=false
two=false
if [ "${1:-}" = --server ]; then
  server=true
  shift
fi
if [ "${1:-}" = --two-clusters ]; then
  two=true
  shift
fi
rev=${1:?usage: bench/run-ab.sh [--server] REV ROUNDS [bench options]}
rounds=${2:?usage: bench/run-ab.sh [--server] REV ROUNDS [bench options]}
shift 2
. "$root/bench/private-pg.sh"
bench_build
after=$bin
src=$(mktemp -d /tmp/xatm-ab-src-XXXXXX)
git -C "$root" worktree add --detach -f "$src" "$rev" >/dev/null 2>&1
cleanup_src() { git -C "$root" worktree remove --force "$src" >/dev/null 2>&1 || rm -rf "$src"; }
trap cleanup_src EXIT
bash "$src/scripts/build.sh" "$src/build-bench" -DXATM_FAULT_INJECTION=OFF -DXATM_SANITIZE= \
  -DXATM_BUILD_TESTS=OFF -DXATM_BUILD_EXAMPLES=OFF >/dev/null
before=$src/build-bench
private_pg ab bench1 bench2
pg2="$base dbname=bench2"
stop2=true
if $two; then
  eval "$(bash "$root/scripts/pg-cluster.sh" start "$work/pg2")"
  pg2="host=$XATM_TEST_PG_DIR port=$XATM_TEST_PG_PORT user=postgres dbname=bench2"
  psql -X -q "$XATM_TEST_PG_CONNINFO" -c "CREATE DATABASE bench2"
  stop2='bash "$root/scripts/pg-cluster.sh" stop "$work/pg2" >/dev/null 2>&1 || true'
fi
trap 'eval "$stop2"; bash "$root/scripts/pg-cluster.sh" stop "$work/pg" >/dev/null 2>&1 || true; rm -rf "$work"; cleanup_src' EXIT
out=$root/bench/results/ab-$rev.csv
$server && out=$root/bench/results/ab-server-$rev.csv
$two && out=$root/bench/results/ab-$rev-two-clusters.csv
echo "side,round,mode,threads,tps,client_cpu_us" > "$out"
for r in $(seq 1 "$rounds"); do
  for side in before after; do
    dir=$before
    [ "$side" = after ] && dir=$after
    if $server; then
      "$dir/bench/xatm-server-bench" --pg "$base dbname=bench1" --pg2 "$base dbname=bench2" --dir "$work/data-$side" \
        --xatmd "$dir/tm/xatmd" --rounds 1 --csv "$work/$side.csv" "$@" >/dev/null 2>&1
      # round,workload,mode,procs,tps,p50_us,p99_us
      tail -n +2 "$work/$side.csv" | awk -F, -v s="$side" -v r="$r" '{print s "," r "," $2 " " $3 "," $4 "," $5 ",0"}' >> "$out"
    else
      "$dir/bench/xatm-bench" --pg "$base dbname=bench1" --pg2 "$pg2" --dir "$work/data-$side" \
        --rounds 1 --csv "$work/$side.csv" "$@" >/dev/null 2>&1
      # round,mode,threads,tps,p50_us,p99_us,failed,commits,log_syncs,client_cpu_us,server_cpu_us
      tail -n +2 "$work/$side.csv" | awk -F, -v s="$side" -v r="$r" '{print s "," r "," $2 "," $3 "," $4 "," $10}' >> "$out"
    fi
  done
  echo "round $r of $rounds done" >&2
done
echo "| threads | mode | before tx/s | after tx/s | after/before (median of rounds) | before CPU µs/tx | after CPU µs/tx |"
echo "|---:|---|---:|---:|---:|---:|---:|"
awk -F, 'NR > 1 {
  k = $4 SUBSEP $3
  if (!(k in seen)) { seen[k] = 1; order[++n] = k }
  tps[$1, k, $2] = $5; cpu[$1, k, $2] = $6; rounds[$2] = 1
}
function median(a, m,   i, j, t) {
  for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
  return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
}
END {
  for (i = 1; i <= n; i++) {
    k = order[i]; split(k, p, SUBSEP)
    m = 0
    for (r in rounds) { m++; b[m] = tps["before", k, r]; a[m] = tps["after", k, r]; q[m] = a[m] / b[m]
                        cb[m] = cpu["before", k, r]; ca[m] = cpu["after", k, r] }
    printf "| %s | %s | %.0f | %.0f | %.3f | %.0f | %.0f |\n", p[1], p[2], median(b, m), median(a, m), median(q, m),
           median(cb, m), median(ca, m)
  }
}' "$out"
echo "wrote $out" >&2
