#!/usr/bin/env bash
# The main job of xatm, end to end on a fresh machine: installs what is
# missing, builds, starts a private PostgreSQL, and runs the demo against it
# and a SQLite file. Everything it creates lives under one temporary directory
# that is removed at the end (keep it with XATM_DEMO_KEEP=1).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/deps.sh
echo "== building xatm"
bash scripts/build.sh build >/dev/null

work=$(mktemp -d /tmp/xatm-demo-XXXXXX)
chmod 755 "$work"  # the private server runs as the postgres user when we are root
cleanup() {
  bash scripts/pg-cluster.sh stop "$work/pg" >/dev/null 2>&1 || true
  if [ "${XATM_DEMO_KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
echo "== starting a private PostgreSQL in $work/pg"
pgenv=$(bash scripts/pg-cluster.sh start "$work/pg")
eval "$pgenv"
psql -X -q -At "$XATM_TEST_PG_CONNINFO" -c \
  "SELECT 'PostgreSQL ' || current_setting('server_version') || ', max_prepared_transactions = ' || current_setting('max_prepared_transactions')"

mkdir -p "$work/log"
echo "== decision log in $work/log"
./build/tm/tools/xatm-log-smoke "$work/log"
echo "== reopening: the open decision survives, the incarnation moves on"
./build/tm/tools/xatm-log-smoke "$work/log" | head -n 2
