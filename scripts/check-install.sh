#!/usr/bin/env bash
# Installs a build into a temporary prefix and checks the installed layout:
# headers, libxatm, xatm.pc, the CMake package; a C99 consumer builds with
# pkg-config and with find_package(xatm) and runs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$1" && pwd)
prefix=$(mktemp -d /tmp/xatm-install-XXXXXX)
work=$(mktemp -d /tmp/xatm-consumer-XXXXXX)
trap 'rm -rf "$prefix" "$work"' EXIT

cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(ls -d "$prefix"/lib*/ | head -n 1)
for f in include/xatm/xa.h include/xatm/xatm.h include/xatm/xatm.hpp include/xatm/rm_pgsql.h include/xatm/rm_sqlite.h \
         include/xatm/rm_mysql.h include/xatm/tx.h; do
  [ -f "$prefix/$f" ] || { echo "check-install: missing $f" >&2; exit 1; }
done
ls "$libdir"/libxatm.so* >/dev/null
[ -f "$libdir/pkgconfig/xatm.pc" ] || { echo "check-install: missing xatm.pc" >&2; exit 1; }
[ -f "$libdir/cmake/xatm/xatmConfig.cmake" ] || { echo "check-install: missing CMake package" >&2; exit 1; }
[ -x "$prefix/bin/xatm" ] || { echo "check-install: missing bin/xatm" >&2; exit 1; }
"$prefix/bin/xatm" --version >/dev/null
[ -x "$prefix/bin/xatmd" ] || { echo "check-install: missing bin/xatmd" >&2; exit 1; }
"$prefix/bin/xatmd" --version >/dev/null

cat > "$work/app.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <xatm/xatm.h>
#include <xatm/rm_pgsql.h>
#include <xatm/rm_sqlite.h>
#include <xatm/rm_mysql.h>
int main(void) {
  printf("xatm %s: %s\n", xatm_version(), xatm_errstr(XATM_EROLLEDBACK));
  return strcmp(xatm_errstr(XATM_OK), "ok") != 0;
}
C
export PKG_CONFIG_PATH="$libdir/pkgconfig"
# shellcheck disable=SC2046
cc -std=c99 -pedantic -Wall -Wextra -Werror "$work/app.c" -o "$work/app-pc" $(pkg-config --cflags --libs xatm)
LD_LIBRARY_PATH="$libdir" "$work/app-pc"
# A C++17 consumer of xatm.hpp, with pkg-config too.
cat > "$work/app.cpp" <<'CPP'
#include <xatm/xatm.hpp>
int main() {
  try {
    xatmpp::TransactionManager tm("/nonexistent.conf");
  } catch (const xatmpp::Error& e) {
    return e.code() == XATM_ECONFIG ? 0 : 1;
  }
  return 1;
}
CPP
# shellcheck disable=SC2046
c++ -std=c++17 -pedantic -Wall -Wextra -Werror "$work/app.cpp" -o "$work/app-cpp" $(pkg-config --cflags --libs xatm)
LD_LIBRARY_PATH="$libdir" "$work/app-cpp"

mkdir -p "$work/cm"
cat > "$work/cm/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.20)
project(consumer C)
find_package(xatm REQUIRED)
add_executable(app ../app.c)
target_link_libraries(app PRIVATE xatm::xatm)
CM
cmake -S "$work/cm" -B "$work/cm/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cm/build" >/dev/null
LD_LIBRARY_PATH="$libdir" "$work/cm/build/app"
# Only the documented API is exported.
if nm -D --defined-only "$libdir/libxatm.so" | awk '{print $3}' | grep -v -E '^(xatm_|tx_|_init|_fini|__bss|_edata|_end)' | grep -q .; then
  echo "check-install: libxatm exports symbols outside the C API:" >&2
  nm -D --defined-only "$libdir/libxatm.so" | awk '{print $3}' | grep -v -E '^(xatm_|_init|_fini)' | head >&2
  exit 1
fi
echo "check-install: ok (headers, libxatm, xatm.pc, xatm::xatm, bin/xatm, bin/xatmd)"
