#!/usr/bin/env bash
# Installs one pinned Go tool from the module proxy into the cache (outside the work tree) and
# prints its path. A second call with the same version is a no-op.
#   test/tools/go-tool.sh <binary-name> <package>@<version>
set -euo pipefail
name=$1; pkg=$2
CACHE=${HARBOR_CONNECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/harbor-connector}
version=${pkg##*@}
dir="$CACHE/tools/$name-$version"
if [ ! -x "$dir/$name" ]; then
  printf '[go-tool] installing %s (%s)\n' "$name" "$pkg" >&2
  mkdir -p "$dir"
  GOBIN="$dir" GOFLAGS=-mod=mod go install "$pkg" >&2
fi
echo "$dir/$name"
