#!/usr/bin/env bash
# A private MariaDB server for xatm's tests and demo.
#
#   scripts/mariadb-server.sh start DIR [--tcp PORT]
#                                                 mariadb-install-db DIR (if new) and start mariadbd;
#                                                 prints shell assignments to eval
#   scripts/mariadb-server.sh stop DIR [MODE]     stop it (MODE: fast, the default, or immediate: SIGKILL)
#   scripts/mariadb-server.sh restart DIR [MODE]  stop (immediate by default) and start again
#   scripts/mariadb-server.sh env DIR             print the assignments again
#
# The server listens on a Unix socket inside DIR only (with --tcp PORT, also
# on 127.0.0.1:PORT, where root@127.0.0.1 has no password either), with the
# durable settings xatm requires (innodb_flush_log_at_trx_commit = 1, binary
# log off). root@localhost has no password, reachable over the socket.
# As root, the server runs as the mysql user.
# The assignments: XATM_TEST_MYSQL_SOCKET (the socket), XATM_TEST_MYSQL_DIR.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,16p' "$0" >&2; exit 2; }
command -v mariadbd >/dev/null 2>&1 || PATH=$PATH:/usr/sbin
command -v mariadbd >/dev/null 2>&1 || {
  echo "mariadb-server: mariadbd not found; run scripts/deps.sh" >&2
  exit 1
}

user=()
[ "$(id -u)" -eq 0 ] && user=(--user=mysql)

print_env() {
  echo "export XATM_TEST_MYSQL_SOCKET='$dir/mysqld.sock'"
  echo "export XATM_TEST_MYSQL_DIR='$dir'"
}

running() {
  [ -f "$dir/mariadbd.pid" ] && kill -0 "$(cat "$dir/mariadbd.pid")" 2>/dev/null
}

start() {
  local port=${1:-}
  [ -z "$port" ] && [ -f "$dir/port" ] && port=$(cat "$dir/port")
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ "$(id -u)" -eq 0 ]; then
    chown mysql:mysql "$dir"
    runuser -u mysql -- test -x "$dir" || {
      echo "mariadb-server: the mysql user cannot reach $dir: make its parent directories searchable (chmod o+x)" >&2
      exit 1
    }
  fi
  if [ ! -d "$dir/data/mysql" ]; then
    mariadb-install-db --no-defaults --datadir="$dir/data" --auth-root-authentication-method=normal \
      --skip-test-db --skip-name-resolve "${user[@]}" >"$dir/install.log" 2>&1 || { cat "$dir/install.log" >&2; exit 1; }
  fi
  running && { print_env; return; }
  local net=(--skip-networking)
  if [ -n "$port" ]; then
    net=(--port="$port" --bind-address=127.0.0.1)
    echo "$port" >"$dir/port"
  fi
  # setsid: the server outlives the shell that started it, and a test's
  # process group signals never reach it.
  setsid mariadbd --no-defaults --datadir="$dir/data" --socket="$dir/mysqld.sock" "${net[@]}" \
    --pid-file="$dir/mariadbd.pid" --log-error="$dir/server.log" --skip-name-resolve \
    --innodb-buffer-pool-size=64M --innodb-log-file-size=48M --innodb-flush-log-at-trx-commit=1 \
    --max-connections=300 --innodb-lock-wait-timeout=10 "${user[@]}" </dev/null >/dev/null 2>&1 &
  for _ in $(seq 1 300); do
    if [ -S "$dir/mysqld.sock" ] && mariadb-admin --no-defaults --socket="$dir/mysqld.sock" -uroot ping >/dev/null 2>&1; then
      if [ -n "$port" ]; then
        mariadb --no-defaults --socket="$dir/mysqld.sock" -uroot -e \
          "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION" >&2
      fi
      print_env
      return
    fi
    sleep 0.1
  done
  echo "mariadb-server: mariadbd did not start; its log:" >&2
  tail -n 30 "$dir/server.log" >&2 || true
  exit 1
}

stop() {
  local mode=${1:-fast}
  running || return 0
  local pid
  pid=$(cat "$dir/mariadbd.pid")
  if [ "$mode" = immediate ]; then
    kill -9 "$pid" 2>/dev/null || true
  else
    kill -TERM "$pid" 2>/dev/null || true
  fi
  for _ in $(seq 1 600); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$dir/mariadbd.pid"; return 0; }
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/mariadbd.pid"
}

case "$cmd" in
  start)
    if [ "${3:-}" = --tcp ]; then start "${4:?--tcp needs a port}"; else start; fi ;;
  stop) dir=$(cd "$dir" 2>/dev/null && pwd) || exit 0; stop "${3:-fast}" ;;
  restart) dir=$(cd "$dir" && pwd); stop "${3:-immediate}"; start >/dev/null ;;
  env) dir=$(cd "$dir" && pwd); print_env ;;
  *) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
