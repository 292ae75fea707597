#!/usr/bin/env bash
# Prints the table of 2PC failure cases the crash tests recorded:
# case | what was injected | expected outcome | observed outcome.
set -euo pipefail
report=$1
[ -s "$report" ] || { echo "no failure cases were recorded in $report" >&2; exit 1; }
printf '\n%-52s | %-70s | %-52s | %s\n' "case" "injected" "expected" "observed"
printf '%s\n' "$(printf '%.0s-' {1..230})"
sort -n -k1,1 "$report" | while IFS=$'\t' read -r c i e o; do
  printf '%-52s | %-70s | %-52s | %s\n' "$c" "$i" "$e" "$o"
done
echo
echo "$(wc -l < "$report") case(s) recorded"
