# Sourced by the bench/run-*.sh scripts: the benchmark build, and a work
# directory with a private PostgreSQL in it, both removed when the script exits.
#
#   bench_build                     builds into build-bench (optimized, no crash
#                                   points, no sanitizers) and sets $bin to it
#   private_pg NAME [DATABASE...]   sets $work, and $base (a conninfo without
#                                   dbname); creates the databases
# XATM_PG_MAX_PREPARED, if set, goes to scripts/pg-cluster.sh.
private_pg() {
  local name=$1
  shift
  work=$(mktemp -d "/tmp/xatm-$name-XXXXXX")
  chmod 755 "$work"  # the server runs as the postgres user when we are root
  trap 'bash "$root/scripts/pg-cluster.sh" stop "$work/pg" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
  eval "$(bash "$root/scripts/pg-cluster.sh" start "$work/pg")"
  base="host=$XATM_TEST_PG_DIR port=$XATM_TEST_PG_PORT user=postgres"
  local db
  for db in "$@"; do psql -X -q "$XATM_TEST_PG_CONNINFO" -c "CREATE DATABASE $db"; done
}

# The test build (scripts/test.sh) compiles in the crash points, each a
# getenv() per call: benchmarks get a build of their own.
bench_build() {
  bash "$root/scripts/build.sh" "$root/build-bench" -DXATM_FAULT_INJECTION=OFF -DXATM_SANITIZE= \
    -DXATM_BUILD_TESTS=OFF -DXATM_BUILD_EXAMPLES=OFF >/dev/null
  bin=$root/build-bench
}
