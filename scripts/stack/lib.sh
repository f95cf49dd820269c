# shellcheck shell=bash
# Shared by the stack scripts: paths, versions, logging and small helpers. Sourced, never run.
# shellcheck disable=SC2034 # the paths and ports defined here are used by the scripts that source this file
set -euo pipefail

DS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=versions.env
source "$DS_ROOT/scripts/stack/versions.env"

# Data, logs, PIDs, PKI and kubeconfig of this checkout's stack (git-ignored).
DS_STACK_DIR=${DS_STACK_DIR:-$DS_ROOT/.stack}
# Binaries and images, cached per version so a second checkout or a CI run reuses them.
DS_CACHE_DIR=${DS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/durable-sandbox}

BIN_DIR=$DS_CACHE_DIR/bin
K8S_BIN=$BIN_DIR/kubernetes-$KUBERNETES_VERSION
ETCD_BIN=$BIN_DIR/etcd-$ETCD_VERSION
TEMPORAL_BIN=$BIN_DIR/temporal-$TEMPORAL_CLI_VERSION
GVISOR_BIN=$BIN_DIR/gvisor-$GVISOR_VERSION
CRICTL_BIN=$BIN_DIR/crictl-$CRICTL_VERSION
SEAWEEDFS_BIN=$BIN_DIR/seaweedfs-$SEAWEEDFS_VERSION
IMAGE_DIR=$DS_CACHE_DIR/images

# The egress gateway's build, named by the hash of its sources.
gateway_bin_dir() {
  local sum
  sum=$(cd "$DS_ROOT/gateway" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-12)
  echo "$BIN_DIR/gateway-$sum"
}

LOG_DIR=$DS_STACK_DIR/logs
PID_DIR=$DS_STACK_DIR/pids
PKI_DIR=$DS_STACK_DIR/pki
RUN_DIR=$DS_STACK_DIR/run
KUBECONFIG_PATH=$DS_STACK_DIR/kubeconfig

# Ports (loopback unless stated); override by environment.
TEMPORAL_PORT=${DS_TEMPORAL_PORT:-7233}
TEMPORAL_UI_PORT=${DS_TEMPORAL_UI_PORT:-8233}
APISERVER_PORT=${DS_APISERVER_PORT:-6443}
ETCD_PORT=${DS_ETCD_PORT:-2379}
ETCD_PEER_PORT=${DS_ETCD_PEER_PORT:-2380}
# SeaweedFS: master, volume and filer (each also serves gRPC on port + 10000) and the S3 gateway.
SEAWEED_MASTER_PORT=${DS_SEAWEED_MASTER_PORT:-9333}
SEAWEED_VOLUME_PORT=${DS_SEAWEED_VOLUME_PORT:-9340}
SEAWEED_FILER_PORT=${DS_SEAWEED_FILER_PORT:-8888}
S3_PORT=${DS_S3_PORT:-8333}
WORKSPACE_BUCKET=ds-workspaces
SANDBOX_NAMESPACE=${DS_SANDBOX_NAMESPACE:-durable-sandbox}
POD_CIDR=10.88.0.0/16
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1
# The egress gateway listens on the pod bridge's own address: the only address a sandbox with an allow-list reaches.
GATEWAY_IP=10.88.0.1
GATEWAY_PORT=${DS_GATEWAY_PORT:-3128}
GATEWAY_REPORT_PORT=${DS_GATEWAY_REPORT_PORT:-3129}
EGRESS_IPSET=ds-egress
SANDBOX_INPUT_CHAIN=DS-SANDBOX-IN
NODE_NAME=$(hostname | tr '[:upper:]' '[:lower:]')

CONTAINERD_SOCK=$RUN_DIR/containerd.sock
POD_BRIDGE=dsbr0
# The bridge's own MAC, fixed (locally administered): left to itself a bridge takes the lowest MAC of its ports, so it
# changed as pods came and went, and a pod that had learned the old one lost the gateway until its ARP entry aged.
POD_BRIDGE_MAC=02:64:73:00:00:01
POD_ISOLATION_RULE=(-i "$POD_BRIDGE" -o "$POD_BRIDGE" -m comment --comment "durable-sandbox: no traffic between sandbox pods" -j DROP)

ts() { date +%H:%M:%S; }
log() { printf '[stack %s] %s\n' "$(ts)" "$*" >&2; }
die() { printf '[stack %s] error: %s\n' "$(ts)" "$*" >&2; exit 1; }

# The node's primary IPv4 address (the source address of the default route).
node_ip() {
  ip -4 route get 1.1.1.1 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "src") { print $(i + 1); exit }}'
}

need() {
  local cmd=$1 hint=$2
  command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found: $hint"
}

# Runs a long command with its output in a log file, printing elapsed time every 30 s.
# On failure prints the end of the log and the log's path.
with_progress() {
  local name=$1 logfile=$2; shift 2
  local start=$SECONDS
  log "$name: started (log: $logfile)"
  mkdir -p "$(dirname "$logfile")"
  "$@" >"$logfile" 2>&1 &
  local pid=$!
  local next=$((start + 30))
  while kill -0 "$pid" 2>/dev/null; do
    sleep 2
    if (( SECONDS >= next )) && kill -0 "$pid" 2>/dev/null; then
      log "$name: still working, $((SECONDS - start)) s elapsed"
      next=$((next + 30))
    fi
  done
  if ! wait "$pid"; then
    tail -n 30 "$logfile" >&2
    die "$name failed after $((SECONDS - start)) s; full log: $logfile"
  fi
  log "$name: done in $((SECONDS - start)) s"
}

pid_file() { echo "$PID_DIR/$1.pid"; }

# Prints the PID of a component started by `up` if that process is still alive.
running_pid() {
  local f pid
  f=$(pid_file "$1")
  [[ -f $f ]] || return 1
  pid=$(cat "$f")
  [[ -n $pid && -r /proc/$pid/stat ]] || return 1
  # A killed daemon whose parent (here PID 1, which may not reap) has not reaped it is a zombie: not running.
  local state
  state=$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $state != Z && $state != X ]] || return 1
  echo "$pid"
}

# Which process listens on a TCP port, as "PID (name)", or nothing.
port_owner() {
  local port=$1 line
  line=$(ss -Htlnp "sport = :$port" 2>/dev/null | head -n 1) || true
  [[ -n $line ]] || return 1
  sed -nE 's/.*users:\(\("([^"]+)",pid=([0-9]+).*/\2 (\1)/p' <<<"$line"
}

ensure_port_free() {
  local port=$1 component=$2 owner
  if owner=$(port_owner "$port"); then
    die "port $port, needed by $component, is taken by PID $owner; stop it or set the DS_*_PORT override"
  fi
}

wait_until() {
  local what=$1 timeout=$2; shift 2
  local start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    (( SECONDS - start < timeout )) || return 1
    sleep 0.5
  done
  log "$what ready after $((SECONDS - start)) s"
}
