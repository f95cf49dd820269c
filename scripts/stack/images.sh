#!/usr/bin/env bash
# Builds the sandbox images without a registry and imports them into containerd's k8s.io namespace.
# Usage: images.sh build | import | worker
# `worker` builds the worker's image from this checkout (compiled sources, production node_modules, the host's node
# and the libraries it links), imports it, and prints its name: localhost/durable-sandbox/worker:<hash of the inputs>.
# It is for running the worker Deployment inside the local cluster (k8s/local/); elsewhere, build the Dockerfile.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MIRROR=${DS_DEBIAN_MIRROR:-$(sed -nE 's/^URIs: (http[^ ]*debian)\/?$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SANDBOX_UID=1001
# Python with the data stack programs reach for (numpy, pandas, matplotlib), IPython (its display classes), pip
# (installs through the egress gateway), dill (a session's state kept between pods) and the seccomp bindings the
# launcher uses; the CA certificates every TLS client checks against.
PYTHON_PACKAGES=python3,python3-numpy,python3-pandas,python3-matplotlib,python3-ipython,python3-pip,python3-dill,python3-seccomp,ca-certificates
# The launcher's python3, the language's runtime, and TypeScript's compiler (its `typescript` module).
NODE_PACKAGES=python3,nodejs,node-typescript,ca-certificates
# Copied into each sandbox's HOME by the launcher (see launcher.py).
HOME_SKELETON=/usr/share/durable-sandbox/home

# The host's own extra certificate authorities (/usr/local/share/ca-certificates), trusted in the images too: a
# network that inspects TLS (a corporate proxy) must be trusted inside the sandbox as it is on the host, since the
# egress gateway passes TLS through untouched.
trust_host_cas() {
  local root=$1 crt
  for crt in /usr/local/share/ca-certificates/*.crt; do
    [[ -e $crt ]] || continue
    install -D -m 0644 "$crt" "$root/usr/local/share/ca-certificates/$(basename "$crt")"
  done
  chroot "$root" update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed in $root"
}

archive_for() { local ref=$1; echo "$IMAGE_DIR/$(tr '/:' '__' <<<"$ref").oci.tar"; }

# Packs ROOTFS as a one-layer OCI image named REF into its archive. Extra args are `umoci config` flags.
pack() {
  local ref=$1 rootfs=$2; shift 2
  local work tag=${ref##*:}
  work=$(mktemp -d "$IMAGE_DIR/pack.XXXXXX")
  umoci init --layout "$work/oci"
  umoci new --image "$work/oci:$tag"
  umoci unpack --image "$work/oci:$tag" "$work/bundle" >/dev/null
  cp -a "$rootfs/." "$work/bundle/rootfs/"
  umoci repack --image "$work/oci:$tag" "$work/bundle"
  umoci config --image "$work/oci:$tag" "$@"
  umoci gc --layout "$work/oci"
  tar -C "$work/oci" -cf "$(archive_for "$ref").tmp" .
  mv "$(archive_for "$ref").tmp" "$(archive_for "$ref")"
  rm -rf "$work"
}

build_python() {
  [[ -f $(archive_for "$PYTHON_IMAGE") ]] && return 0
  need debootstrap "apt-get install debootstrap"
  local root=$IMAGE_DIR/python-rootfs
  rm -rf "$root"
  # The data stack programs reach for (numpy, pandas, matplotlib) and the seccomp bindings the launcher uses.
  with_progress "python image (debootstrap $IMAGE_SUITE from $MIRROR)" "$DS_CACHE_DIR/build-logs/image-python.log" \
    debootstrap --variant=minbase --include="$PYTHON_PACKAGES" "$IMAGE_SUITE" "$root" "$MIRROR"
  # The sandbox user; pods run as this uid whatever the image says.
  echo "sandbox:x:$SANDBOX_UID:$SANDBOX_UID:sandbox:/tmp:/usr/sbin/nologin" >>"$root/etc/passwd"
  echo "sandbox:x:$SANDBOX_UID:" >>"$root/etc/group"
  # matplotlib's font cache, built once here: the launcher copies this home skeleton into each sandbox's HOME, so
  # no program pays for building it.
  mkdir -p "$root$HOME_SKELETON/.cache/matplotlib"
  chroot "$root" env HOME="$HOME_SKELETON" MPLBACKEND=Agg python3 -c 'import matplotlib.pyplot' \
    >>"$DS_CACHE_DIR/build-logs/image-python.log" 2>&1
  chmod -R a+rX "$root$HOME_SKELETON"
  trust_host_cas "$root"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc "$root"/usr/share/man
  with_progress "python image (pack)" "$DS_CACHE_DIR/build-logs/image-python-pack.log" \
    pack "$PYTHON_IMAGE" "$root" --config.user "$SANDBOX_UID:$SANDBOX_UID" --config.workingdir /tmp \
    --config.cmd python3 --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  rm -rf "$root"
}

build_node() {
  [[ -f $(archive_for "$NODE_IMAGE") ]] && return 0
  need debootstrap "apt-get install debootstrap"
  local root=$IMAGE_DIR/node-rootfs
  rm -rf "$root"
  with_progress "node image (debootstrap $IMAGE_SUITE from $MIRROR)" "$DS_CACHE_DIR/build-logs/image-node.log" \
    debootstrap --variant=minbase --include="$NODE_PACKAGES" "$IMAGE_SUITE" "$root" "$MIRROR"
  echo "sandbox:x:$SANDBOX_UID:$SANDBOX_UID:sandbox:/tmp:/usr/sbin/nologin" >>"$root/etc/passwd"
  echo "sandbox:x:$SANDBOX_UID:" >>"$root/etc/group"
  chroot "$root" node -e 'console.log("node " + process.version)' >>"$DS_CACHE_DIR/build-logs/image-node.log" 2>&1 ||
    die "the node image's node does not run; see $DS_CACHE_DIR/build-logs/image-node.log"
  trust_host_cas "$root"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc "$root"/usr/share/man
  with_progress "node image (pack)" "$DS_CACHE_DIR/build-logs/image-node-pack.log" \
    pack "$NODE_IMAGE" "$root" --config.user "$SANDBOX_UID:$SANDBOX_UID" --config.workingdir /tmp \
    --config.cmd node --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  rm -rf "$root"
}

build_pause() {
  [[ -f $(archive_for "$PAUSE_IMAGE") ]] && return 0
  need catatonit "apt-get install catatonit"
  local root
  root=$(mktemp -d "$IMAGE_DIR/pause.XXXXXX")
  # Debian's catatonit is static: it is the whole image. -P makes it sleep as a pause container.
  install -m 0755 "$(command -v catatonit)" "$root/catatonit"
  pack "$PAUSE_IMAGE" "$root" --config.entrypoint /catatonit --config.entrypoint -P --config.user 65535:65535
  rm -rf "$root"
  log "pause image packed"
}

# Whether containerd has an image by this name. (The list is read whole first: `ctr ... | grep -q` can make ctr
# die of SIGPIPE, which pipefail turns into a false "missing".)
has_image() {
  local refs
  refs=$(ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q) || return 1
  grep -qxF "$1" <<<"$refs"
}

import_one() {
  local ref=$1
  if has_image "$ref"; then return 0; fi
  ctr --address "$CONTAINERD_SOCK" -n k8s.io images import --base-name "${ref%:*}" "$(archive_for "$ref")" >/dev/null
  has_image "$ref" || die "import of $ref did not produce that name"
  log "imported $ref"
}

WORKER_UID=1000
WORKER_SOURCES=(package.json package-lock.json tsconfig.json core workflows activities worker client launcher)

# The worker image's name: it changes whenever its inputs (sources, lockfile, node) do.
worker_ref() {
  local sum
  sum=$(cd "$DS_ROOT" && { node --version; find "${WORKER_SOURCES[@]}" -type f -print0 | sort -z | xargs -0 sha256sum; } |
    sha256sum | cut -c1-12)
  echo "localhost/durable-sandbox/worker:$sum"
}

# Copies into ROOT, at their paths on this host, the shared libraries that FILE links (as ldd resolves them here).
copy_libs() {
  local root=$1 file=$2 lib
  for lib in $(ldd "$file" 2>/dev/null | grep -oE '/[^ ]+\.so[^ ]*'); do
    [[ -e $root$lib ]] && continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}

build_worker() {
  local ref=$1 work root app native old
  [[ -f $(archive_for "$ref") ]] && return 0
  # Earlier builds of the worker are of no further use.
  for old in "$IMAGE_DIR"/localhost_durable-sandbox_worker_*.oci.tar; do [[ -e $old ]] && rm -f "$old"; done
  work=$(mktemp -d "$IMAGE_DIR/worker.XXXXXX")
  root=$work/rootfs
  app=$root/app
  mkdir -p "$app" "$root/tmp" "$root/etc"
  (cd "$DS_ROOT" && node_modules/.bin/tsc -p tsconfig.json --outDir "$work/dist")
  mkdir -p "$app/dist"
  for dir in core workflows activities worker client; do cp -r "$work/dist/$dir" "$app/dist/$dir"; done
  cp -r "$DS_ROOT/launcher" "$app/dist/launcher"
  cp "$DS_ROOT/package.json" "$DS_ROOT/package-lock.json" "$app/"
  cp -a "$DS_ROOT/node_modules" "$app/node_modules"
  (cd "$app" && npm prune --omit=dev --prefer-offline --ignore-scripts --no-audit --no-fund >/dev/null)
  cp -L "$(command -v node)" "$root/node"
  copy_libs "$root" "$root/node"
  # Native addons (Temporal's core bridge among them) link their own libraries.
  while IFS= read -r -d '' native; do copy_libs "$root" "$native"; done < <(find "$app/node_modules" -name '*.node' -print0)
  echo "worker:x:$WORKER_UID:$WORKER_UID:worker:/tmp:/sbin/nologin" >"$root/etc/passwd"
  echo "worker:x:$WORKER_UID:" >"$root/etc/group"
  pack "$ref" "$root" --config.user "$WORKER_UID:$WORKER_UID" --config.workingdir /app \
    --config.entrypoint /node --config.cmd dist/worker/main.js --config.env NODE_ENV=production
  rm -rf "$work"
}

case ${1:-} in
  build)
    need umoci "apt-get install umoci"
    mkdir -p "$IMAGE_DIR"
    # The three at once: debootstrap waits on downloads and dpkg more than on the CPU.
    pids=()
    for b in build_pause build_python build_node; do
      "$b" &
      pids+=("$!")
    done
    for pid in "${pids[@]}"; do wait "$pid" || die "an image failed to build (logs: $DS_CACHE_DIR/build-logs)"; done
    ;;
  import)
    import_one "$PAUSE_IMAGE"
    import_one "$PYTHON_IMAGE"
    import_one "$NODE_IMAGE"
    ;;
  worker)
    need umoci "apt-get install umoci"
    mkdir -p "$IMAGE_DIR"
    ref=$(worker_ref)
    with_progress "worker image $ref" "$DS_CACHE_DIR/build-logs/image-worker.log" build_worker "$ref"
    import_one "$ref"
    for old in $(ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q); do
      if [[ $old == localhost/durable-sandbox/worker:* && $old != "$ref" ]]; then
        ctr --address "$CONTAINERD_SOCK" -n k8s.io images rm "$old" >/dev/null
      fi
    done
    echo "$ref"
    ;;
  *) die "usage: images.sh build | import | worker" ;;
esac
