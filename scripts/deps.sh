#!/usr/bin/env bash
# Installs the Debian packages xatm needs to build, test and run its demo,
# if any is missing. Runs apt-get as root, or through sudo for a normal user.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libpq-dev libsqlite3-dev sqlite3
  libboost-program-options-dev libspdlog-dev libfmt-dev
  libgtest-dev libbenchmark-dev
  postgresql postgresql-contrib util-linux
  mariadb-server libmariadb-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "xatm: installing missing packages: ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "xatm: these packages are missing and this user cannot install them: ${missing[*]}" >&2
  echo "xatm: run as root: apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
