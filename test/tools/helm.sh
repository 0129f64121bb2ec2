#!/usr/bin/env bash
# Builds the helm CLI (helm.sh/helm/v4's own cmd/helm, with the dependency versions its go.mod
# selects) at HELM_VERSION (versions.env) into the project cache, keyed by version, and prints
# the binary's path on its last line. A second run is a no-op. The chart's tests
# (test/tools/helm) and README "Install with Helm" run this helm.
set -euo pipefail
here=$(dirname "$0")
v() { sed -n "s/^$1=//p" "$here/versions.env"; }
: "${HELM_VERSION:=$(v HELM_VERSION)}"
CACHE=${HARBOR_CONNECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/harbor-connector}
log() { printf '[helm] %s\n' "$*" >&2; }
. "$here/module-build.sh"

mod=helm.sh/helm/${HELM_VERSION%%.*}
dir="$CACHE/build/helm-$HELM_VERSION"
out="$CACHE/helm/$HELM_VERSION/helm"
throwaway_module "$dir" "$mod" "$HELM_VERSION"
# The version Helm's own release build stamps (its Makefile's LDFLAGS): `helm version` and the
# chart's .Capabilities.HelmVersion report it.
build "$out" "$dir" "" "-s -w -X $mod/internal/version.version=$HELM_VERSION -X $mod/internal/version.gitTreeState=clean" 0 "$mod/cmd/helm"
echo "$out"
