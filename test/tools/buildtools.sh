#!/usr/bin/env bash
# Builds the image builders the e2e Jobs run in containers (images assembled from these host
# files by test/node.BuildImage, so every binary is static, CGO_ENABLED=0):
#  - buildkitd and buildctl at BUILDKIT_VERSION, from the module in test/tools/buildkit (its own
#    go.mod and go.sum, checked in, with `tool` lines for both commands), so BuildKit's large
#    dependency tree never moves the product's versions. buildkitd is built without the seccomp
#    tag (it only matters with cgo); its OCI worker runs the runc it finds in PATH.
#  - ko at KO_VERSION, from a throwaway module (module-build.sh), with ko's own dependency
#    versions.
# Into the project cache, keyed by the versions and by the buildkit module's content; a second
# run is a no-op. Prints the directory holding buildkitd, buildctl and ko on its last line.
set -euo pipefail
here=$(dirname "$0")
v() { sed -n "s/^$1=//p" "$here/versions.env"; }
: "${BUILDKIT_VERSION:=$(v BUILDKIT_VERSION)}"
: "${KO_VERSION:=$(v KO_VERSION)}"
CACHE=${HARBOR_CONNECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/harbor-connector}
log() { printf '[buildtools] %s\n' "$*" >&2; }
. "$here/module-build.sh"

bk=github.com/moby/buildkit
bk_mod="$here/buildkit"
if ! grep -Eq "^[[:space:]]*(require[[:space:]]+)?$bk $BUILDKIT_VERSION([[:space:]]|\$)" "$bk_mod/go.mod"; then
  log "$bk_mod/go.mod does not require $bk $BUILDKIT_VERSION: run (cd $bk_mod && go get -tool $bk/cmd/buildkitd@$BUILDKIT_VERSION $bk/cmd/buildctl@$BUILDKIT_VERSION && go mod tidy)"
  exit 1
fi
bk_key=$(cat "$bk_mod/go.mod" "$bk_mod/go.sum" | sha256sum | cut -c1-12)
out="$CACHE/buildtools/buildkit-$BUILDKIT_VERSION-$bk_key-ko-$KO_VERSION"

# The version BuildKit's own release build stamps (its Dockerfile's buildkit-version stage):
# `buildkitd --version` and `buildctl --version` report it.
bk_ld="-s -w -X $bk/version.Version=$BUILDKIT_VERSION -X $bk/version.Revision=module-proxy -X $bk/version.Package=$bk"
build "$out/buildkitd" "$bk_mod" "" "$bk_ld" 0 "$bk/cmd/buildkitd" "-mod=readonly -buildvcs=false"
build "$out/buildctl" "$bk_mod" "" "$bk_ld" 0 "$bk/cmd/buildctl" "-mod=readonly -buildvcs=false"

ko=github.com/google/ko
ko_dir="$CACHE/build/ko-$KO_VERSION"
throwaway_module "$ko_dir" "$ko" "$KO_VERSION"
# As ko's .goreleaser.yml stamps it (`ko version`).
build "$out/ko" "$ko_dir" "" "-s -w -X $ko/pkg/commands.Version=$KO_VERSION" 0 "$ko"
echo "$out"
