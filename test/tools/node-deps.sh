#!/usr/bin/env bash
# Installs what the real-node suite needs (TESTING.md "A real node"): containerd, runc, the CNI
# plugins and a static busybox from Debian, and kubelet, kube-controller-manager and
# kube-scheduler built from the Go module proxy into the project cache. A second run is a no-op.
set -euo pipefail
missing=()
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
command -v iptables-save >/dev/null || missing+=(iptables)
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
# The dynamic busybox package also installs /bin/busybox; test images need the static one.
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing ${missing[*]}: run 'apt-get install -y ${missing[*]}' as root" >&2; exit 1
  fi
  echo "[node-deps] apt-get install ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
fi
exec "$(dirname "$0")/k8s-assets.sh" kubelet kube-controller-manager kube-scheduler
