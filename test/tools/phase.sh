#!/usr/bin/env bash
# Runs one named phase of `make test`, printing its duration, and keeps a log of phases so the
# summary at the end shows where the time went (TESTING.md "Time budget").
#   test/tools/phase.sh "<name>" command args...    run and time one phase
#   test/tools/phase.sh --reset                     start a new table (a failed run never
#                                                   printed, so never reset, its own)
#   test/tools/phase.sh --summary                   print the table and reset it
set -uo pipefail
# HARBOR_CONNECTOR_PHASES_LOG keeps the table elsewhere: runs that share a cache (two clones on
# one machine) would otherwise reset and print each other's phases.
log=${HARBOR_CONNECTOR_PHASES_LOG:-${HARBOR_CONNECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/harbor-connector}/phases.log}
mkdir -p "$(dirname "$log")"
if [ "${1:-}" = "--reset" ]; then
  rm -f "$log"
  exit 0
fi
if [ "${1:-}" = "--summary" ]; then
  echo "== phase durations =="
  if [ -f "$log" ]; then column -t -s $'\t' "$log" 2>/dev/null || cat "$log"; fi
  rm -f "$log"
  exit 0
fi
name=$1; shift
echo "== $name"
start=$(date +%s)
"$@"
rc=$?
secs=$(( $(date +%s) - start ))
printf '%s\t%ss\t%s\n' "$name" "$secs" "$([ $rc -eq 0 ] && echo ok || echo FAILED)" >> "$log"
echo "== $name: ${secs}s $([ $rc -eq 0 ] && echo ok || echo FAILED)"
exit $rc
