#!/usr/bin/env bash
# Fails when `make generate` would change a committed file (deepcopy, CRD, RBAC), so generated
# files cannot drift from the Go markers.
set -euo pipefail
before=$(git status --porcelain -- api config 2>/dev/null; git diff -- api config | sha256sum)
make --no-print-directory generate >/dev/null
after=$(git status --porcelain -- api config 2>/dev/null; git diff -- api config | sha256sum)
if [ "$before" != "$after" ]; then
  echo "generated files were stale; 'make generate' changed:" >&2
  git status --porcelain -- api config >&2
  exit 1
fi
