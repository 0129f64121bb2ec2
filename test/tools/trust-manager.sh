#!/usr/bin/env bash
# Builds trust-manager (github.com/cert-manager/trust-manager, its own cmd/trust-manager: the
# module proxy serves it whole, unlike cert-manager's command modules) at TRUST_MANAGER_VERSION
# (versions.env) into the project cache, keyed by version, and prints the binary's path on its
# last line. A second run is a no-op. test/trust runs it against the test API server with the
# flags README "Install on a cluster" names (--trust-namespace=connectors-system).
set -euo pipefail
here=$(dirname "$0")
v() { sed -n "s/^$1=//p" "$here/versions.env"; }
: "${TRUST_MANAGER_VERSION:=$(v TRUST_MANAGER_VERSION)}"
CACHE=${HARBOR_CONNECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/harbor-connector}
log() { printf '[trust-manager] %s\n' "$*" >&2; }
. "$here/module-build.sh"

tm=github.com/cert-manager/trust-manager
dir="$CACHE/build/trust-manager-$TRUST_MANAGER_VERSION"
out="$CACHE/trust-manager/$TRUST_MANAGER_VERSION/trust-manager"
throwaway_module "$dir" "$tm" "$TRUST_MANAGER_VERSION"
build "$out" "$dir" "" "-s -w" 0 "$tm/cmd/trust-manager"
echo "$out"
