#!/usr/bin/env bash
# Installs what the real-node suite needs (TESTING.md "A real node"):
#  - containerd (containerd, ctr, containerd-shim-runc-v2), runc built with seccomp, and the CNI
#    plugins (bridge, host-local, loopback), each built from the Go module proxy at the versions
#    in versions.env into the project cache, keyed by version;
#  - from Debian: iptables, a static busybox (test images), and libseccomp-dev and pkg-config to
#    build runc;
#  - CoreDNS (cluster DNS) at COREDNS_VERSION, built from the module in test/tools/coredns;
#  - kubelet, kube-controller-manager and kube-scheduler at K8S_VERSION (k8s-assets.sh).
# A second run is a no-op. Prints the runtime directory on its last line: bin/ (containerd, ctr,
# the shim, runc, coredns) and cni/ (the plugins), which test/node puts first in its components'
# PATH.
# The system's own containerd or runc, if any, is never used.
set -euo pipefail
here=$(dirname "$0")
v() { sed -n "s/^$1=//p" "$here/versions.env"; }
: "${CONTAINERD_VERSION:=$(v CONTAINERD_VERSION)}"
: "${RUNC_VERSION:=$(v RUNC_VERSION)}"
: "${CNI_PLUGINS_VERSION:=$(v CNI_PLUGINS_VERSION)}"
: "${COREDNS_VERSION:=$(v COREDNS_VERSION)}"
CACHE=${HARBOR_CONNECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/harbor-connector}
log() { printf '[node-deps] %s\n' "$*" >&2; }

missing=()
command -v iptables-save >/dev/null || missing+=(iptables)
command -v pkg-config >/dev/null || missing+=(pkgconf)
# The dynamic busybox package also installs /bin/busybox; test images need the static one.
for pkg in busybox-static libseccomp-dev; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing ${missing[*]}: run 'apt-get install -y ${missing[*]}' as root" >&2; exit 1
  fi
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
fi

# throwaway_module and build.
. "$here/module-build.sh"

# containerd without the btrfs (cgo), devmapper and zfs snapshotters, which the node never uses;
# the shim static and without gRPC, as containerd's own Makefile builds it.
ctrd=github.com/containerd/containerd/v2
ctrd_dir="$CACHE/build/containerd-$CONTAINERD_VERSION"
ctrd_out="$CACHE/containerd/$CONTAINERD_VERSION"
ctrd_ld="-s -w -X $ctrd/version.Version=$CONTAINERD_VERSION -X $ctrd/version.Revision=module-proxy -X $ctrd/version.Package=$ctrd"
throwaway_module "$ctrd_dir" "$ctrd" "$CONTAINERD_VERSION"
build "$ctrd_out/containerd" "$ctrd_dir" "no_btrfs no_devmapper no_zfs urfave_cli_no_docs" "$ctrd_ld" 0 "$ctrd/cmd/containerd"
build "$ctrd_out/ctr" "$ctrd_dir" "no_btrfs no_devmapper no_zfs urfave_cli_no_docs" "$ctrd_ld" 0 "$ctrd/cmd/ctr"
build "$ctrd_out/containerd-shim-runc-v2" "$ctrd_dir" "no_grpc" "$ctrd_ld" 0 "$ctrd/cmd/containerd-shim-runc-v2"

# runc needs cgo (nsenter) and, for seccomp, libseccomp; libpathrs (a Rust library) is left
# out, so runc uses its Go path-safety fallback. Its version comes from its embedded VERSION.
runc_dir="$CACHE/build/runc-$RUNC_VERSION"
runc_out="$CACHE/runc/$RUNC_VERSION"
throwaway_module "$runc_dir" github.com/opencontainers/runc "$RUNC_VERSION"
build "$runc_out/runc" "$runc_dir" "seccomp urfave_cli_no_docs" "-X main.gitCommit=module-proxy" 1 github.com/opencontainers/runc
if ! "$runc_out/runc" --version | grep -q 'seccomp'; then
  log "$runc_out/runc was built without seccomp"; exit 1
fi

cni=github.com/containernetworking/plugins
cni_dir="$CACHE/build/cni-plugins-$CNI_PLUGINS_VERSION"
cni_out="$CACHE/cni-plugins/$CNI_PLUGINS_VERSION"
throwaway_module "$cni_dir" "$cni" "$CNI_PLUGINS_VERSION"
for p in main/bridge main/loopback ipam/host-local; do
  build "$cni_out/$(basename "$p")" "$cni_dir" "" "-s -w -X $cni/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION" 0 "$cni/plugins/$p"
done

# CoreDNS: a main with only the plugins the node's Corefile uses (test/node/coredns.go), in a
# module of its own so it builds with CoreDNS's dependency versions (its go.sum is checked in).
# Keyed by version and by that module's content, so a change to its plugin list rebuilds it.
coredns_mod="$here/coredns"
if ! grep -Eq "^[[:space:]]*(require[[:space:]]+)?github.com/coredns/coredns $COREDNS_VERSION([[:space:]]|\$)" "$coredns_mod/go.mod"; then
  log "$coredns_mod/go.mod does not require github.com/coredns/coredns $COREDNS_VERSION: run (cd $coredns_mod && go get github.com/coredns/coredns@$COREDNS_VERSION && go mod tidy)"
  exit 1
fi
coredns_key=$(cat "$coredns_mod/go.mod" "$coredns_mod/go.sum" "$coredns_mod/main.go" | sha256sum | cut -c1-12)
coredns_out="$CACHE/coredns/$COREDNS_VERSION-$coredns_key"
build "$coredns_out/coredns" "$coredns_mod" "" "-s -w -X github.com/coredns/coredns/coremain.GitCommit=module-proxy" 0 github.com/alauda/harbor-connector/test/tools/coredns "-mod=readonly -buildvcs=false"

# One directory per combination, of links into the caches.
rt="$CACHE/node-runtime/containerd-$CONTAINERD_VERSION-runc-$RUNC_VERSION-cni-$CNI_PLUGINS_VERSION-coredns-$COREDNS_VERSION"
if [ ! -f "$rt/.ready" ]; then
  rm -rf "$rt"; mkdir -p "$rt/bin" "$rt/cni"
  for b in containerd ctr containerd-shim-runc-v2; do ln -s "$ctrd_out/$b" "$rt/bin/$b"; done
  ln -s "$runc_out/runc" "$rt/bin/runc"
  for b in bridge loopback host-local; do ln -s "$cni_out/$b" "$rt/cni/$b"; done
  touch "$rt/.ready"
fi
# Outside the check above: a rebuilt CoreDNS (another plugin list) replaces the link.
[ "$(readlink "$rt/bin/coredns")" = "$coredns_out/coredns" ] || ln -sfn "$coredns_out/coredns" "$rt/bin/coredns"

"$here/k8s-assets.sh" kubelet kube-controller-manager kube-scheduler kube-proxy >/dev/null
echo "$rt"
