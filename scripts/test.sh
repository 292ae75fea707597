#!/usr/bin/env bash
# Builds xatm (a normal build and an AddressSanitizer+UBSan build), starts a
# private PostgreSQL and a private MariaDB, runs every test in both builds,
# stops the servers.
# Exits non-zero on any failure. Run it from anywhere, as root or not.
#
#   scripts/test.sh            everything but the long soaks (label long)
#   XATM_TEST_ARGS='-L unit' scripts/test.sh   extra ctest arguments
#   ctest --test-dir build -L long             the long soaks (minutes each)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/deps.sh

# Both builds compile in the named crash points (XATM_CRASH_AT) the crash
# tests use; they do nothing unless that variable is set.
echo "== build (RelWithDebInfo)"
bash scripts/build.sh build -DXATM_FAULT_INJECTION=ON
echo "== build (Release: what a user's first build compiles, warnings as errors)"
bash scripts/build.sh build-release -DCMAKE_BUILD_TYPE=Release -DXATM_BUILD_TESTS=OFF
echo "== build (address,undefined sanitizers)"
# The examples too: their tests run them under the sanitizers.
bash scripts/build.sh build-asan -DXATM_SANITIZE=address,undefined -DXATM_FAULT_INJECTION=ON \
  -DXATM_BUILD_BENCH=OFF -DXATM_BUILD_EXAMPLES=ON

echo "== build (thread sanitizer, for the concurrent parts)"
bash scripts/build.sh build-tsan -DXATM_SANITIZE=thread -DXATM_FAULT_INJECTION=ON \
  -DXATM_BUILD_BENCH=OFF -DXATM_BUILD_EXAMPLES=OFF

pgdir=$(mktemp -d /tmp/xatm-pg-XXXXXX)
mydir=$(mktemp -d /tmp/xatm-mysql-XXXXXX)
cleanup() {
  bash scripts/pg-cluster.sh stop "$pgdir" immediate >/dev/null 2>&1 || true
  bash scripts/mariadb-server.sh stop "$mydir" immediate >/dev/null 2>&1 || true
  rm -rf "$pgdir" "$mydir"
}
trap cleanup EXIT
echo "== private PostgreSQL in $pgdir"
pgenv=$(bash scripts/pg-cluster.sh start "$pgdir")
eval "$pgenv"
echo "== private MariaDB in $mydir"
myenv=$(bash scripts/mariadb-server.sh start "$mydir")
eval "$myenv"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
# A test that runs past --timeout fails with its output instead of holding
# the run (a hung child, a server that never answers).
for b in build build-asan; do
  echo "== ctest ($b)"
  # shellcheck disable=SC2086
  ctest --test-dir "$b" --output-on-failure --timeout 600 -j "$(nproc)" -LE long ${XATM_TEST_ARGS:-} || status=1
done

echo "== ctest (build-tsan: group commit, concurrent transfers (MySQL too), timeouts, the reaper, xatmd, the decision store, the TX interface)"
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
ctest --test-dir build-tsan --output-on-failure --timeout 600 -j "$(nproc)" \
  -R 'GroupCommit|DecisionLogCrash|Concurrent|Timeout|Threads|LastResource|Xatmd|BackgroundPhaseTwo|StoreFailover|TxTest' || status=1

# The 2PC failure cases, as a table: case, injection, expected, observed.
[ -f build/tests/failure-cases.tsv ] && bash scripts/failure-table.sh build/tests/failure-cases.tsv || true

exit $status
