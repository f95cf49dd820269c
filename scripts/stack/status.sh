#!/usr/bin/env bash
# Prints each component of the local stack: version, PID, endpoint, health and log. Exits 1 if any is unhealthy.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PKI=$PKI_DIR
bad=0

row() {
  local name=$1 version=$2 endpoint=$3; shift 3
  local pid health
  pid=$(running_pid "$name") || pid=-
  if [[ $pid != - ]] && "$@" >/dev/null 2>&1; then health=healthy; else health=DOWN; bad=1; fi
  printf '%-24s %-10s %-8s %-7s %-34s %s\n' "$name" "$version" "$pid" "$health" "$endpoint" "$LOG_DIR/$name.log"
}

printf '%-24s %-10s %-8s %-7s %-34s %s\n' COMPONENT VERSION PID HEALTH ENDPOINT LOG
row temporal "$TEMPORAL_CLI_VERSION" "127.0.0.1:$TEMPORAL_PORT (UI :$TEMPORAL_UI_PORT)" \
  "$TEMPORAL_BIN/temporal" operator cluster health --address "127.0.0.1:$TEMPORAL_PORT"
row seaweedfs "$SEAWEEDFS_VERSION" "http://127.0.0.1:$S3_PORT (S3)" \
  bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$S3_PORT/) =~ ^(200|403)\$ ]]"
row etcd "$ETCD_VERSION" "https://127.0.0.1:$ETCD_PORT" curl -sf http://127.0.0.1:2381/health
row kube-apiserver "$KUBERNETES_VERSION" "https://127.0.0.1:$APISERVER_PORT" \
  curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "https://127.0.0.1:$APISERVER_PORT/readyz"
row kube-controller-manager "$KUBERNETES_VERSION" https://127.0.0.1:10257 curl -sfk https://127.0.0.1:10257/healthz
row kube-scheduler "$KUBERNETES_VERSION" https://127.0.0.1:10259 curl -sfk https://127.0.0.1:10259/healthz
row containerd "$(containerd --version 2>/dev/null | awk '{print $3}')" "unix://$CONTAINERD_SOCK" \
  ctr --address "$CONTAINERD_SOCK" version
row kubelet "$KUBERNETES_VERSION" "https://0.0.0.0:10250" curl -sf http://127.0.0.1:10248/healthz
row gateway "smokescreen" "$GATEWAY_IP:$GATEWAY_PORT (egress)" curl -sf "http://127.0.0.1:$GATEWAY_REPORT_PORT/healthz"
printf '\ngVisor %s (runsc, containerd-shim-runsc-v1 in %s)\n' "$GVISOR_VERSION" "$GVISOR_BIN"
printf 'KUBECONFIG=%s\nTEMPORAL_ADDRESS=127.0.0.1:%s\n' "$KUBECONFIG_PATH" "$TEMPORAL_PORT"
if [[ -f $KUBECONFIG_PATH && -x $K8S_BIN/kubectl ]]; then
  echo
  "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" get nodes -o wide 2>&1 || true
fi
exit $bad
