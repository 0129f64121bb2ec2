# Sourced by the scripts that build a command from the Go module proxy (node-deps.sh,
# trust-manager.sh). The sourcing script defines log() first.

# throwaway_module DIR MODULE VERSION: a module that requires MODULE@VERSION only, so the build
# uses exactly the dependency versions MODULE's own go.mod selects (-mod=mod raises the go line
# to the module's own when it is newer).
throwaway_module() {
  local dir=$1 mod=$2 ver=$3
  [ -f "$dir/.ready" ] && return
  rm -rf "$dir"; mkdir -p "$dir"
  printf 'module throwaway\ngo 1.24\nrequire %s %s\n' "$mod" "$ver" > "$dir/go.mod"
  (cd "$dir" && GOFLAGS=-mod=mod go mod download "$mod" >&2)
  touch "$dir/.ready"
}

# build OUT DIR TAGS LDFLAGS CGO PKG [GOFLAGS]: go build PKG (in the module DIR) into OUT.
# GOFLAGS is -mod=mod for a throwaway module (the default), -mod=readonly for one in the repository.
build() {
  local out=$1 dir=$2 tags=$3 ldflags=$4 cgo=$5 pkg=$6 goflags=${7:--mod=mod} start
  [ -x "$out" ] && return
  start=$(date +%s)
  log "building $(basename "$out") ($pkg; cold: a minute or more)"
  mkdir -p "$(dirname "$out")"
  (cd "$dir" && CGO_ENABLED=$cgo GOFLAGS=$goflags go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
  log "built $(basename "$out") in $(( $(date +%s) - start ))s"
}
