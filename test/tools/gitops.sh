#!/usr/bin/env bash
# Builds gitops-drift (the module in test/tools/gitops: Argo CD's and Flux's own diff and apply
# code, README "GitOps (Argo CD, Flux)") into the project cache, keyed by the module's sources, and
# prints the binary's path on its last line. A second run is a no-op; cold, the build takes about
# 3 minutes on 2 cores (Argo CD's dependency tree). The module pins its own k8s.io versions (Argo
# CD's), so it is never part of the product's build. Usage of the binary: gitops-drift -h, or
# test/tools/gitops/main.go.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CACHE=${HARBOR_CONNECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/harbor-connector}
log() { printf '[gitops-drift] %s\n' "$*" >&2; }
. "$here/module-build.sh"

mod="$here/gitops"
sources=$(cd "$mod" && ls go.mod go.sum *.go | grep -v '_test\.go$' | sort)
key=$(cd "$mod" && cat $sources | sha256sum | cut -c1-12)
out="$CACHE/gitops-drift/$key/gitops-drift"
build "$out" "$mod" "" "-s -w" 0 github.com/alauda/harbor-connector/test/tools/gitops "-mod=readonly -buildvcs=false"
echo "$out"
