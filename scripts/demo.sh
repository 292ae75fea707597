#!/usr/bin/env bash
# The main job of xatm, end to end on a fresh machine: installs what is
# missing, builds, starts a private PostgreSQL, and runs money transfers and
# travel bookings as global transactions across that PostgreSQL and a SQLite
# file, then shows what each database holds, kills a transfer process right
# after its commit decision and lets recovery finish it, runs the transfers
# again through xatmd, and transfers between PostgreSQL and a private MariaDB.
# Everything it creates lives in
# one temporary directory, removed at the end (keep it with XATM_DEMO_KEEP=1).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/deps.sh
echo "== building xatm"
# The test build's settings (scripts/test.sh): its named crash points let the
# demo kill a process at the worst moment; they do nothing unless asked for.
bash scripts/build.sh build -DXATM_FAULT_INJECTION=ON >/dev/null

work=$(mktemp -d /tmp/xatm-demo-XXXXXX)
chmod 755 "$work"  # the private server runs as the postgres user when we are root
cleanup() {
  bash scripts/pg-cluster.sh stop "$work/pg" >/dev/null 2>&1 || true
  bash scripts/mariadb-server.sh stop "$work/mysql" >/dev/null 2>&1 || true
  if [ "${XATM_DEMO_KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

echo "== starting a private PostgreSQL in $work/pg"
pgenv=$(bash scripts/pg-cluster.sh start "$work/pg")
eval "$pgenv"
psql -X -q "$XATM_TEST_PG_CONNINFO" -c "CREATE DATABASE bank"
bank="host=$XATM_TEST_PG_DIR port=$XATM_TEST_PG_PORT user=postgres dbname=bank"
psql -X -q "$bank" -f examples/bank_pg.sql
sqlite3 "$work/ledger.db" < examples/bank_sqlite.sql >/dev/null
mkdir -p "$work/log"
cat > "$work/xatm.conf" <<CONF
[tm]
log_dir = $work/log
node_name = demo
log_level = warn

[rm.bank]
type = postgresql
conninfo = $bank

[rm.ledger]
type = sqlite
path = $work/ledger.db
CONF
echo "== configuration ($work/xatm.conf)"
sed 's/^/  /' "$work/xatm.conf"

echo "== transfers between PostgreSQL (alice) and SQLite (bob)"
./build/examples/transfer "$work/xatm.conf"

echo "== a trip is a flight seat (PostgreSQL) and a hotel room (SQLite), or neither"
./build/examples/travel_booking "$work/xatm.conf"

echo "== what the databases hold now"
echo "  PostgreSQL:"
psql -X -q -A -t -F ' | ' "$bank" -c "SELECT 'accounts' AS t, name, balance::text FROM accounts UNION ALL
  SELECT 'flights', flight, seats_left::text FROM flights UNION ALL
  SELECT 'tickets', booking, flight FROM tickets ORDER BY 1, 2" | sed 's/^/    /'
echo "  SQLite:"
sqlite3 -separator ' | ' "$work/ledger.db" "SELECT 'accounts', name, balance FROM accounts UNION ALL
  SELECT 'hotels', hotel, rooms_left FROM hotels UNION ALL
  SELECT 'reservations', booking, hotel FROM reservations ORDER BY 1, 2" | sed 's/^/    /'
echo "  prepared transactions left in PostgreSQL: $(psql -X -q -A -t "$bank" -c 'SELECT count(*) FROM pg_prepared_xacts')"

echo "== the admin tool: nothing in doubt, and the databases' health"
./build/tm/xatm -c "$work/xatm.conf" list
./build/tm/xatm -c "$work/xatm.conf" health
echo "== where the decisions are: in each transaction that wrote to both databases, SQLite committed"
echo "   last with the decision inside its own transaction (a row in xatm_decision, deleted by a later"
echo "   transaction or at close), so the decision log holds only the TM's incarnations"
echo "  decision rows left in SQLite: $(sqlite3 "$work/ledger.db" 'SELECT count(*) FROM xatm_decision')"
./build/tm/xatm -c "$work/xatm.conf" log dump

echo "== why xatm exists: a transfer process killed at the worst moment"
echo "   the classic protocol (last_resource_commit = false): both branches prepared, the COMMIT"
echo "   decision durable in the log, and the process SIGKILLed before it commits either branch"
sed 's/^log_level = warn$/log_level = warn\nlast_resource_commit = false\nrecover_on_open = false/' \
  "$work/xatm.conf" > "$work/crash.conf"
# (An inner shell takes bash's "Killed" report.)
XATM_CRASH_AT=tm.commit.after_decision bash -c '"$@" > "$0" 2>&1; true' "$work/crash.out" \
  ./build/examples/transfer "$work/crash.conf" 2>/dev/null
sed 's/^/  /' "$work/crash.out"
echo "  alice (PostgreSQL): $(psql -X -q -A -t "$bank" -c "SELECT balance FROM accounts WHERE name = 'alice'")," \
  "prepared there: $(psql -X -q -A -t "$bank" -c 'SELECT count(*) FROM pg_prepared_xacts');" \
  "bob (SQLite): $(sqlite3 "$work/ledger.db" "SELECT balance FROM accounts WHERE name = 'bob'") — neither side committed yet"
echo "  the admin tool finds the transaction in doubt, with its decision and the plan:"
./build/tm/xatm -c "$work/crash.conf" list | sed 's/^/    /' || true
echo "  recovery finishes it (xatm_open does the same by itself):"
./build/tm/xatm -c "$work/crash.conf" recover | sed 's/^/    /'
echo "  alice (PostgreSQL): $(psql -X -q -A -t "$bank" -c "SELECT balance FROM accounts WHERE name = 'alice'")," \
  "bob (SQLite): $(sqlite3 "$work/ledger.db" "SELECT balance FROM accounts WHERE name = 'bob'"): the two databases agree;" \
  "prepared left: $(psql -X -q -A -t "$bank" -c 'SELECT count(*) FROM pg_prepared_xacts')"

echo "== the same transfers through xatmd, the server many processes share"
mkdir -p "$work/server-log"
sed -e "s|^log_dir = .*|log_dir = $work/server-log\nserver = unix:$work/xatmd.sock|" "$work/xatm.conf" > "$work/xatmd.conf"
printf '\n[server]\nmetrics = off\n' >> "$work/xatmd.conf"
./build/tm/xatmd --config "$work/xatmd.conf" 2> "$work/xatmd.log" &
xatmd_pid=$!
for _ in $(seq 100); do [ -S "$work/xatmd.sock" ] && break; sleep 0.1; done
./build/examples/transfer "$work/xatmd.conf"
echo "  through the server: xatm --server unix:$work/xatmd.sock list"
./build/tm/xatm --server "unix:$work/xatmd.sock" list
kill -TERM "$xatmd_pid"
wait "$xatmd_pid" && echo "  xatmd stopped cleanly (SIGTERM)"

echo "== a third database: transfers between PostgreSQL (alice) and MariaDB (carol)"
echo "   starting a private MariaDB in $work/mysql"
myenv=$(bash scripts/mariadb-server.sh start "$work/mysql")
eval "$myenv"
mariadb --no-defaults --socket="$XATM_TEST_MYSQL_SOCKET" -uroot -e "CREATE DATABASE shop"
mariadb --no-defaults --socket="$XATM_TEST_MYSQL_SOCKET" -uroot shop < examples/bank_mysql.sql
cat > "$work/mysql.conf" <<CONF
[tm]
log_dir = $work/log
node_name = demo
log_level = warn

[rm.bank]
type = postgresql
conninfo = $bank

[rm.shop]
type = mysql
socket = $XATM_TEST_MYSQL_SOCKET
user = root
database = shop
CONF
./build/examples/transfer_mysql "$work/mysql.conf"
echo "  prepared XA branches left in MariaDB: $(mariadb --no-defaults --socket="$XATM_TEST_MYSQL_SOCKET" -uroot -N -e 'XA RECOVER' | wc -l)"
