#!/usr/bin/env bash
# Installs the pinned real registry clients the suites drive: crane, oras and regctl from the Go
# module proxy, skopeo, buildah and nginx from Debian (nginx is Harbor's front: test/nginx checks
# the proxy's path canonicaliser against it, and the benchmarks compare with it), and, with
# CLIENTS_DEBIAN="bin:package ...", more, such as mitmproxy for the benchmarks. Prints
# `name=path` lines. A missing Debian package is installed with apt-get when running as root;
# otherwise the script fails naming the command to run. CLIENTS_ONLY="crane ..." installs and
# prints only the clients named (the demo needs only crane, and no root).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

CRANE=github.com/google/go-containerregistry/cmd/crane@v0.20.6
ORAS=oras.land/oras/cmd/oras@v1.2.3
REGCTL=github.com/regclient/regclient/cmd/regctl@v0.9.0

wanted() { [ -z "${CLIENTS_ONLY:-}" ] || [[ " $CLIENTS_ONLY " == *" $1 "* ]]; }

if wanted crane; then echo "crane=$("$here/go-tool.sh" crane "$CRANE")"; fi
if wanted oras; then echo "oras=$("$here/go-tool.sh" oras "$ORAS")"; fi
if wanted regctl; then echo "regctl=$("$here/go-tool.sh" regctl "$REGCTL")"; fi

debian() {
  local bin=${1%%:*} pkg=${1#*:}
  if ! command -v "$bin" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      printf '[clients] apt-get install %s\n' "$pkg" >&2
      (apt-get install -y --no-install-recommends "$pkg" >&2 || { apt-get update >&2 && apt-get install -y --no-install-recommends "$pkg" >&2; })
    else
      echo "missing $bin: run 'apt-get install -y $pkg'" >&2; exit 1
    fi
  fi
  echo "$bin=$(command -v "$bin")"
}
# bin:package pairs; CLIENTS_DEBIAN adds more (make bench adds mitmproxy).
for want in skopeo:skopeo buildah:buildah nginx:nginx-light ${CLIENTS_DEBIAN:-}; do
  if wanted "${want%%:*}"; then debian "$want"; fi
done
