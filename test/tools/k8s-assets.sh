#!/usr/bin/env bash
# Builds the pinned Kubernetes binaries the tests need (kube-apiserver, etcd, kubectl, and on
# request kubelet, kube-controller-manager, kube-scheduler) from the Go module proxy, because
# setup-envtest's download hosts are unreachable here (TESTING.md "Kubernetes API server for
# envtest"). Output goes to a cache outside the work tree, keyed by version; a second run is a
# no-op. Prints the asset directory on its last line (use it as KUBEBUILDER_ASSETS).
#
#   test/tools/k8s-assets.sh [extra binaries...]    e.g. kubelet kube-scheduler
#
# K8S_VERSION (default in versions.env beside this script) selects the release for the whole
# test bed; etcd is built at the version that release pins in its build/dependencies.yaml
# (ETCD_VERSION overrides). Everything is cached under k8s/$K8S_VERSION.
set -euo pipefail

: "${K8S_VERSION:=$(sed -n 's/^K8S_VERSION=//p' "$(dirname "$0")/versions.env")}"
CACHE=${HARBOR_CONNECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/harbor-connector}
OUT="$CACHE/k8s/$K8S_VERSION"
mkdir -p "$OUT"

log() { printf '[k8s-assets] %s\n' "$*" >&2; }
case "$K8S_VERSION" in
  v1.[0-9]*.[0-9]*) ;;
  *) log "K8S_VERSION=$K8S_VERSION: expected v1.<minor>.<patch>"; exit 1 ;;
esac

# pinned_etcd prints the etcd version k8s.io/kubernetes@$K8S_VERSION pins (build/dependencies.yaml).
pinned_etcd() {
  local dir
  dir=$(cd "$OUT" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  awk '/name: "etcd"/ {found=1; next} found && /version:/ {print "v" $2; exit}' "$dir/build/dependencies.yaml"
}
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
staging_version="v0.${K8S_VERSION#v1.}"

k8s_module() {
  local dir="$CACHE/build/k8s-$K8S_VERSION"
  # The marker names the commands tools.go lists: a cache made for fewer commands is remade.
  if [ -f "$dir/.ready-kube-proxy" ]; then echo "$dir"; return; fi
  rm -rf "$dir"; mkdir -p "$dir"
  log "preparing throwaway module for k8s.io/kubernetes $K8S_VERSION"
  local gomod
  gomod=$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  {
    echo "module k8sassets"
    echo "go 1.24"
    echo "require k8s.io/kubernetes $K8S_VERSION"
    # Every staging module k8s.io/kubernetes replaces with ./staging/... gets the published tag.
    grep -E '^\s*k8s.io/[a-z0-9-]+ => ./staging/' "$gomod" | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
  } > "$dir/go.mod"
  cat > "$dir/tools.go" <<'GO'
//go:build tools

package k8sassets

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubectl/pkg/cmd"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  (cd "$dir" && go mod tidy -e >&2)
  touch "$dir/.ready-kube-proxy"
  echo "$dir"
}

build_k8s() {
  local name=$1
  [ -x "$OUT/$name" ] && return
  local dir start; dir=$(k8s_module); start=$(date +%s)
  log "building $name $K8S_VERSION (cold: minutes)"
  local pkg="k8s.io/kubernetes/cmd/$name"
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  (cd "$dir" && CGO_ENABLED=0 go build -tags tools -ldflags "$ld" -o "$OUT/$name.tmp" "$pkg")
  mv "$OUT/$name.tmp" "$OUT/$name"
  log "built $name in $(( $(date +%s) - start ))s"
}

build_etcd() {
  [ -x "$OUT/etcd" ] && return
  local ETCD_VERSION=${ETCD_VERSION:-$(pinned_etcd)}
  [ -n "$ETCD_VERSION" ] || { log "no etcd version in k8s.io/kubernetes@$K8S_VERSION's build/dependencies.yaml: set ETCD_VERSION"; exit 1; }
  local dir="$CACHE/build/etcd-$ETCD_VERSION" start; start=$(date +%s)
  mkdir -p "$dir"
  log "building etcd $ETCD_VERSION"
  printf 'module etcdassets\ngo 1.24\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > "$dir/go.mod"
  printf '//go:build tools\n\npackage etcdassets\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > "$dir/tools.go"
  (cd "$dir" && go mod tidy -e >&2 && CGO_ENABLED=0 go build -tags tools -ldflags "-s -w" -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$OUT/etcd.tmp" "$OUT/etcd"
  echo "$ETCD_VERSION" > "$OUT/etcd.version"
  log "built etcd $ETCD_VERSION in $(( $(date +%s) - start ))s"
}

build_etcd
build_k8s kube-apiserver
build_k8s kubectl
for extra in "$@"; do build_k8s "$extra"; done
echo "$OUT"
