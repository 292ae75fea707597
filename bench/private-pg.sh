# Sourced by the bench/run-*.sh scripts: a work directory and a private
# PostgreSQL in it, both removed when the script exits.
#
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
