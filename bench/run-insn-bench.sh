#!/usr/bin/env bash
# Instructions per transfer, per xatm-bench mode, counted by `perf stat`: the
# client process (application + TM + RMs) in user and kernel mode, and every
# process of the machine in user mode (the client and PostgreSQL's backends
# together; the kernel's share of the whole machine is left out, as it counts
# whatever else runs). Each count is the difference between a 1-second and a
# 4-second run divided by the difference in transfers, so that start-up
# cancels out. Unlike throughput and CPU time, which drift with this kind of
# machine's speed, user-mode counts repeat to within a few percent: the
# measure of the TM's own CPU cost.
#
#   bench/run-insn-bench.sh [MODE...]   (default: the README table's ten modes)
#
# Needs perf (Debian: linux-perf) and a CPU that counts instructions.
#
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
command -v perf >/dev/null || { echo "perf is missing: apt-get install linux-perf" >&2; exit 1; }
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(local manual xatm xatm-2pc xatm-bg local-pg2 manual-pg2 xatm-pg2 xatm-lrc-pg2 xatm-lrc-bg-pg2)
. "$root/bench/private-pg.sh"
bench_build
private_pg insn bench1 bench2
# One run: "user kernel machine-user transfers". The outer perf counts the
# client (and the inner perf, which only waits); the inner one the machine.
run() {
  local mode=$1 secs=$2
  perf stat -e instructions:u,instructions:k -x, -o "$work/perf.txt" \
    perf stat -a -e instructions:u -x, -o "$work/perf-all.txt" \
    "$bin/bench/xatm-bench" --pg "$base dbname=bench1" --pg2 "$base dbname=bench2" --dir "$work/data" \
    --csv "$work/run.csv" --seconds "$secs" --rounds 1 --threads 1 --modes "$mode" >/dev/null 2>&1
  local u k a tps
  u=$(awk -F, '/instructions:u/ {print $1}' "$work/perf.txt")
  k=$(awk -F, '/instructions:k/ {print $1}' "$work/perf.txt")
  a=$(awk -F, '/instructions:u/ {print $1}' "$work/perf-all.txt")
  tps=$(awk -F, 'NR == 2 {print $4}' "$work/run.csv")
  case "$u$k$a" in *[!0-9]*|"") echo "perf cannot count instructions here" >&2; exit 1 ;; esac
  echo "$u $k $a $(awk -v t="$tps" -v s="$secs" 'BEGIN {printf "%.0f", t * s}')"
}
echo "| mode | client user instructions / transfer | client kernel | client total | user instructions of the whole machine (client + PostgreSQL) |"
echo "|---|---:|---:|---:|---:|"
for m in "${modes[@]}"; do
  read -r u1 k1 a1 n1 < <(run "$m" 1)
  read -r u4 k4 a4 n4 < <(run "$m" 4)
  awk -v m="$m" -v u1="$u1" -v k1="$k1" -v a1="$a1" -v n1="$n1" -v u4="$u4" -v k4="$k4" -v a4="$a4" -v n4="$n4" 'BEGIN {
    n = n4 - n1; u = (u4 - u1) / n; k = (k4 - k1) / n; a = (a4 - a1) / n
    printf "| %s | %.0f | %.0f | %.0f | %.0f |\n", m, u, k, u + k, a }'
done
