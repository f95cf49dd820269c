#!/usr/bin/env bash
# Stops everything `up` started (by recorded PIDs), removes every pod sandbox, mount and network device the stack
# made, and keeps the data (Temporal's database, etcd, SeaweedFS) unless --purge is given.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

purge=0
for a in "$@"; do
  case $a in
    --purge) purge=1 ;;
    *) die "unknown option '$a' (expected --purge)" ;;
  esac
done

stop() {
  local name=$1 pid f
  f=$(pid_file "$name")
  if ! pid=$(running_pid "$name"); then
    rm -f "$f"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for ((i = 0; i < 60; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (PID $pid) ignored SIGTERM for 15 s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$f"
  log "$name stopped (PID $pid)"
}

# Background workers the CLI started for this stack (cli/background-worker.ts) go first: they serve its Temporal.
for note in "$DS_STACK_DIR"/workers/*.json; do
  [[ -e $note ]] || continue
  pid=$(sed -nE 's/^\s*"pid": ([0-9]+),?$/\1/p' "$note")
  if [[ -n $pid ]] && grep -qa -- '--background' "/proc/$pid/cmdline" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
    log "background worker stopped (PID $pid)"
  fi
  rm -f "$note"
done

# The kubelet goes first so it does not restart what is removed next.
stop kubelet
if running_pid containerd >/dev/null && [[ -x $CRICTL_BIN/crictl ]]; then
  # Stopping a pod sandbox through the CRI also tears down its network namespace and veth.
  "$CRICTL_BIN/crictl" --runtime-endpoint "unix://$CONTAINERD_SOCK" --timeout 30s rmp --all --force >/dev/null 2>&1 ||
    log "warning: crictl rmp failed; remaining sandboxes are removed with containerd below"
fi
stop gateway
stop kube-scheduler
stop kube-controller-manager
stop kube-apiserver
stop etcd
stop temporal
stop seaweedfs
stop containerd

# Shims outlive containerd by design; any left serve this stack's socket only.
shims=$(pgrep -f -- "-address $CONTAINERD_SOCK" || true)
if [[ -n $shims ]]; then
  log "killing leftover containerd shims: $shims"
  # shellcheck disable=SC2086 # one PID per word
  kill -KILL $shims 2>/dev/null || true
fi

# Mounts the stack made (container rootfs, volumes, netns), innermost first.
mapfile -t mounts < <(awk -v a="$DS_STACK_DIR/" -v b="/run/containerd/" '
  index($2, a) == 1 || index($2, b) == 1 { print $2 }' /proc/self/mounts | sort -r)
for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null || true; done
for ns in /var/run/netns/cni-*; do
  [[ -e $ns ]] || continue
  ip netns delete "$(basename "$ns")" 2>/dev/null || true
done
if ip link show "$POD_BRIDGE" >/dev/null 2>&1; then ip link delete "$POD_BRIDGE"; fi
while iptables -D FORWARD "${POD_ISOLATION_RULE[@]}" 2>/dev/null; do :; done
while iptables -D INPUT -i "$POD_BRIDGE" -j "$SANDBOX_INPUT_CHAIN" 2>/dev/null; do :; done
iptables -F "$SANDBOX_INPUT_CHAIN" 2>/dev/null || true
iptables -X "$SANDBOX_INPUT_CHAIN" 2>/dev/null || true
ipset destroy "$EGRESS_IPSET" 2>/dev/null || true
# Empty pod cgroups, leaves first.
for ctl in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do
  if [[ -d $ctl ]]; then find "$ctl" -depth -type d -exec rmdir {} \; 2>/dev/null || true; fi
done

if (( purge )); then
  rm -rf "$DS_STACK_DIR"
  log "stack data removed ($DS_STACK_DIR)"
fi
log "stack down"
