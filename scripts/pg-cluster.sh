#!/usr/bin/env bash
# A private PostgreSQL cluster for xatm's tests and demo.
#
#   scripts/pg-cluster.sh start DIR [--tcp]   initdb DIR (if new) and start the server;
#                                             prints shell assignments to eval
#   scripts/pg-cluster.sh stop DIR [MODE]     stop it (MODE: fast, the default, or immediate)
#   scripts/pg-cluster.sh restart DIR [MODE]  stop (immediate by default) and start again
#   scripts/pg-cluster.sh env DIR             print the assignments again
#   scripts/pg-cluster.sh standby DIR PRIMARY_DIR NAME
#                                             a streaming standby of the cluster in PRIMARY_DIR
#                                             (pg_basebackup -R), known to it as NAME, started
#   scripts/pg-cluster.sh promote DIR         promote a standby (pg_ctl promote)
#
# The server listens on a Unix socket inside DIR only (with --tcp, also on
# 127.0.0.1), with max_prepared_transactions = ${XATM_PG_MAX_PREPARED:-64} and fsync on. PostgreSQL
# refuses to run as root: as root, the cluster belongs to the postgres user.
# XATM_PG_MAX_PREPARED sets max_prepared_transactions of a new cluster.
# The assignments: XATM_TEST_PG_CONNINFO (a libpq conninfo for the superuser
# "postgres"), XATM_TEST_PG_DIR, XATM_TEST_PG_BIN, XATM_TEST_PG_PORT.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,20p' "$0" >&2; exit 2; }

bindir=${XATM_PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[ -x "$bindir/initdb" ] || {
  echo "pg-cluster: PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin); run scripts/deps.sh" >&2
  exit 1
}

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

data="$dir/data"
print_env() {
  local port
  port=$(cat "$dir/port")
  echo "export XATM_TEST_PG_CONNINFO='host=$dir port=$port user=postgres dbname=postgres'"
  echo "export XATM_TEST_PG_DIR='$dir'"
  echo "export XATM_TEST_PG_BIN='$bindir'"
  echo "export XATM_TEST_PG_PORT='$port'"
}

start() {
  local tcp=${1:-}
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  data="$dir/data"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres:postgres "$dir"
    runuser -u postgres -- test -x "$dir" || {
      echo "pg-cluster: the postgres user cannot reach $dir: make its parent directories searchable (chmod o+x)" >&2
      exit 1
    }
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    as_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 || {
      cat "$dir/initdb.log" >&2; exit 1; }
    # A port number of our own: the socket file is named after it, and TCP
    # tests listen on it. Below Linux's ephemeral range (32768+), so that no
    # client socket holds it; a start that still finds it taken picks another.
    echo $(( 10000 + RANDOM % 20000 )) | as_owner tee "$dir/port" >/dev/null
    as_owner tee -a "$data/postgresql.conf" >/dev/null <<CONF
# xatm private cluster
listen_addresses = ''
port = $(cat "$dir/port")
unix_socket_directories = '$dir'
max_prepared_transactions = ${XATM_PG_MAX_PREPARED:-64}
max_connections = 200
fsync = on
shared_buffers = 64MB
log_min_messages = warning
CONF
  fi
  local listen="''"
  [ "$tcp" = "--tcp" ] && listen="'127.0.0.1'"
  local attempt
  for attempt in 1 2 3 4 5 6; do
    : | as_owner tee "$dir/server.log" >/dev/null
    if as_owner "$bindir/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 \
         -o "-c listen_addresses=$listen -c port=$(cat "$dir/port")" start >/dev/null; then
      print_env
      return 0
    fi
    grep -q "Address already in use\|could not create lock file" "$dir/server.log" || break
    echo $(( 10000 + RANDOM % 20000 )) | as_owner tee "$dir/port" >/dev/null
  done
  echo "pg-cluster: the server did not start; its log follows" >&2
  tail -n 30 "$dir/server.log" >&2
  exit 1
}

stop() {
  local mode=${1:-fast}
  [ -f "$data/postmaster.pid" ] || return 0
  as_owner "$bindir/pg_ctl" -D "$data" -m "$mode" -w -t 60 stop >/dev/null
}

standby() {
  local primary=$1 name=$2
  [ -f "$primary/port" ] || { echo "pg-cluster: no cluster in $primary" >&2; exit 1; }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  data="$dir/data"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir"
  local conn="host=$primary port=$(cat "$primary/port") user=postgres application_name=$name"
  as_owner "$bindir/pg_basebackup" -D "$data" -X stream -c fast -R -d "$conn" >"$dir/basebackup.log" 2>&1 || {
    cat "$dir/basebackup.log" >&2; exit 1; }
  echo $(( 10000 + RANDOM % 20000 )) | as_owner tee "$dir/port" >/dev/null
  # Its own socket and port; known to the primary by NAME (for
  # synchronous_standby_names).
  as_owner tee -a "$data/postgresql.auto.conf" >/dev/null <<CONF
unix_socket_directories = '$dir'
port = $(cat "$dir/port")
primary_conninfo = '$conn'
CONF
  start
}

case "$cmd" in
  start) start "${3:-}" ;;
  standby) standby "${3:?primary dir}" "${4:?standby name}" ;;
  promote) as_owner "$bindir/pg_ctl" -D "$data" -w -t 60 promote >/dev/null ;;
  stop) stop "${3:-fast}" ;;
  restart) stop "${3:-immediate}"; start "${4:-}" >/dev/null ;;
  env) dir=$(cd "$dir" && pwd); print_env ;;
  *) echo "pg-cluster: unknown command $cmd (start|stop|restart|env|standby|promote)" >&2; exit 2 ;;
esac
