#!/usr/bin/env bash
# What a sandbox pod's network costs the node: 10 gVisor pods running print(1), created together, run, deleted and
# torn down, with a pod network (a network namespace and the CNI bridge plugin on start and exit) and with
# hostNetwork (neither), in turns. Prints the node's CPU-seconds for each round (from /proc/stat, including an 8-s
# tail after the pods are gone from the API, while the runtime tears them down) and the idle node's over 20 s.
# Needs the local stack (npm run stack:up). Uses its own namespace, deleted at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck disable=SC1091 # written by scripts/stack/up.sh
[ -f .stack/stack.env ] && source .stack/stack.env
KUBECTL=${KUBECTL:-$(find /root/.cache/durable-sandbox/bin -name kubectl -type f | head -1)}
K=("$KUBECTL" --kubeconfig "${DS_ADMIN_KUBECONFIG:-.stack/kubeconfig}")
IMAGE=${DS_IMAGE:-localhost/durable-sandbox/python:3.11-bookworm-2}
NS=pod-network-cost
ROUNDS=${ROUNDS:-3}
"${K[@]}" create namespace "$NS" >/dev/null 2>&1 || true
trap '"${K[@]}" delete namespace "$NS" --wait=false >/dev/null 2>&1 || true' EXIT

busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
cpu_s() { echo "scale=2; ($2 - $1) / $(getconf CLK_TCK)" | bc; }

pods() {
  local name=$1 host=$2
  for i in $(seq 1 10); do
    cat <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $name-$i, namespace: $NS, labels: {bench: pod-network-cost}}
spec:
  runtimeClassName: gvisor
  hostNetwork: $host
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  automountServiceAccountToken: false
  enableServiceLinks: false
  containers:
  - name: c
    image: $IMAGE
    imagePullPolicy: IfNotPresent
    command: ["python3", "-c", "print(1)"]
    resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {cpu: 500m, memory: 256Mi}}
---
YAML
  done
}

round() {
  local name=$1 host=$2 b0 t0 tdone b1 t1
  sleep 8
  b0=$(busy)
  t0=$(date +%s.%N)
  pods "$name" "$host" | "${K[@]}" apply -f - >/dev/null
  until [ "$("${K[@]}" get pods -n "$NS" -l bench=pod-network-cost -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -c Succeeded)" = 10 ]; do
    sleep 0.5
  done
  tdone=$(date +%s.%N)
  "${K[@]}" delete pods -n "$NS" -l bench=pod-network-cost --grace-period=0 --wait=true >/dev/null 2>&1
  sleep 8
  b1=$(busy)
  t1=$(date +%s.%N)
  printf '%-10s hostNetwork=%-5s all succeeded after %.1f s; node CPU %s CPU-s over %.1f s\n' \
    "$name" "$host" "$(echo "$tdone - $t0" | bc)" "$(cpu_s "$b0" "$b1")" "$(echo "$t1 - $t0" | bc)"
}

sleep 8
b0=$(busy)
sleep 20
echo "idle node: $(cpu_s "$b0" "$(busy)") CPU-s over 20 s"
for r in $(seq 1 "$ROUNDS"); do
  round "network$r" false
  round "host$r" true
done
