#!/usr/bin/env bash
# Brings the whole local stack up: Temporal dev server, SeaweedFS (S3: sessions' workspaces) and a single-node
# Kubernetes (etcd, apiserver, controller manager, scheduler, containerd with runc and gVisor, kubelet). Idempotent:
# running components are left alone.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $(id -u) == 0 ]] ||
  die "the local stack needs root (containerd, kubelet and network devices): run \`sudo npm run stack:up\` once"
# Missing Debian packages are installed here (a no-op when everything is present), so a fresh machine needs no
# manual step before its first `npm run demo` or `npm run stack:up`.
"$DS_ROOT/scripts/stack/install-deps.sh"

up_start=$SECONDS
"$DS_ROOT/scripts/stack/build.sh"
mkdir -p "$LOG_DIR" "$PID_DIR" "$RUN_DIR"
"$DS_ROOT/scripts/stack/pki.sh"
NODE_IP=$(node_ip)
KUBECTL=("$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH")
PKI=$PKI_DIR

# start NAME CMD...: starts a daemon in its own session unless the one recorded for NAME is alive.
start() {
  local name=$1 pid; shift
  if pid=$(running_pid "$name"); then
    log "$name already running (PID $pid)"
    return 0
  fi
  printf '\n===== %s start %s =====\n' "$(date -Is)" "$name" >>"$LOG_DIR/$name.log"
  setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$(pid_file "$name")"
  log "$name started (PID $!, log $LOG_DIR/$name.log)"
}

# ready NAME TIMEOUT CHECK...: waits for a health check, failing with the end of the component's log.
ready() {
  local name=$1 timeout=$2; shift 2
  if ! wait_until "$name" "$timeout" "$@"; then
    tail -n 25 "$LOG_DIR/$name.log" >&2 || true
    running_pid "$name" >/dev/null || die "$name exited; its log is $LOG_DIR/$name.log"
    die "$name not healthy after ${timeout} s; its log is $LOG_DIR/$name.log"
  fi
}

fresh() { ! running_pid "$1" >/dev/null; }

prepare_host() {
  # kubelet and containerd watch many files; the machine's default of 128 inotify instances is too low.
  local cur
  cur=$(sysctl -n fs.inotify.max_user_instances)
  (( cur >= 1024 )) || sysctl -qw fs.inotify.max_user_instances=1024
  mkdir -p "$DS_STACK_DIR/cni/net.d" "$DS_STACK_DIR/containerd" "$DS_STACK_DIR/kubelet"
  # The bridge CNI enforces no NetworkPolicy: keep sandbox pods from talking to each other by dropping traffic
  # forwarded between ports of the pod bridge (bridged frames pass iptables once br_netfilter is on).
  modprobe br_netfilter 2>/dev/null || true
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] ||
    die "br_netfilter is not available: sandbox pods could reach each other (modprobe br_netfilter)"
  sysctl -qw net.bridge.bridge-nf-call-iptables=1
  iptables -C FORWARD "${POD_ISOLATION_RULE[@]}" 2>/dev/null || iptables -I FORWARD "${POD_ISOLATION_RULE[@]}"
  sandbox_network
}

# The pod bridge, made here (the CNI plugin reuses it) with the egress gateway's address on it: pods have no route,
# and that address is on their own link. The host's firewall lets a pod reach that address on the gateway's port
# only while the gateway lists the pod in its ipset (it does for pods with an allow-list, from its pod watch), and
# nothing else of the host at all (kubelet, apiserver, every other port): what NetworkPolicy does on a cluster.
sandbox_network() {
  need ipset "apt-get install ipset"
  if ! ip link show "$POD_BRIDGE" >/dev/null 2>&1; then
    ip link add "$POD_BRIDGE" type bridge
  fi
  ip link set "$POD_BRIDGE" address "$POD_BRIDGE_MAC"
  ip addr replace "$GATEWAY_IP/16" dev "$POD_BRIDGE"
  ip link set "$POD_BRIDGE" up
  ipset create "$EGRESS_IPSET" hash:ip -exist
  # Built whole in a chain of its own and then swapped in: a running stack is never without its rules for a moment.
  local next=$SANDBOX_INPUT_CHAIN-NEXT
  iptables -N "$next" 2>/dev/null || iptables -F "$next"
  iptables -A "$next" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  iptables -A "$next" -p tcp -d "$GATEWAY_IP" --dport "$GATEWAY_PORT" -m set --match-set "$EGRESS_IPSET" src -j ACCEPT
  # Refused at once (not dropped): a program that tries learns at once that it cannot connect.
  iptables -A "$next" -p tcp -d "$GATEWAY_IP" --dport "$GATEWAY_PORT" -j REJECT --reject-with tcp-reset
  iptables -A "$next" -j DROP
  iptables -I INPUT -i "$POD_BRIDGE" -j "$next"
  while iptables -D INPUT -i "$POD_BRIDGE" -j "$SANDBOX_INPUT_CHAIN" 2>/dev/null; do :; done
  if iptables -F "$SANDBOX_INPUT_CHAIN" 2>/dev/null; then iptables -X "$SANDBOX_INPUT_CHAIN"; fi
  iptables -E "$next" "$SANDBOX_INPUT_CHAIN"
}

TEMPORAL_SEARCH_ATTRIBUTES=(SandboxStatus=Keyword SandboxLanguage=Keyword SandboxExitCode=Int)

temporal_up() {
  if fresh temporal; then
    ensure_port_free "$TEMPORAL_PORT" temporal
    ensure_port_free "$TEMPORAL_UI_PORT" "temporal UI"
  fi
  mkdir -p "$DS_STACK_DIR/temporal"
  # Eager activity execution (as on Temporal Cloud): a worker that schedules an activity can start it at once,
  # without another round trip through the task queue.
  local sa=() a
  for a in "${TEMPORAL_SEARCH_ATTRIBUTES[@]}"; do sa+=(--search-attribute "$a"); done
  start temporal "$TEMPORAL_BIN/temporal" server start-dev --ip 127.0.0.1 --port "$TEMPORAL_PORT" \
    --ui-port "$TEMPORAL_UI_PORT" --db-filename "$DS_STACK_DIR/temporal/temporal.db" --log-level warn "${sa[@]}" \
    --dynamic-config-value system.enableActivityEagerExecution=true
  ready temporal 60 "$TEMPORAL_BIN/temporal" operator cluster health --address "127.0.0.1:$TEMPORAL_PORT"
  }

# SeaweedFS in one process (master, volume server, filer, S3 gateway) on loopback: where sessions keep their
# workspaces. Its S3 credentials are made once per stack directory; the worker reads them from stack.env.
seaweedfs_up() {
  local dir=$DS_STACK_DIR/seaweedfs
  mkdir -p "$dir/data"
  if [[ ! -f $dir/s3.json ]]; then
    local key secret
    key=$(openssl rand -hex 10) secret=$(openssl rand -hex 20)
    (umask 077 && printf '{"identities":[{"name":"durable-sandbox-worker","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Read","Write","List","Tagging","Admin"]}]}\n' \
      "$key" "$secret" >"$dir/s3.json")
  fi
  if fresh seaweedfs; then
    local p
    for p in "$SEAWEED_MASTER_PORT" "$SEAWEED_VOLUME_PORT" "$SEAWEED_FILER_PORT" "$S3_PORT"; do
      ensure_port_free "$p" seaweedfs
    done
  fi
  start seaweedfs "$SEAWEEDFS_BIN/weed" server -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="$SEAWEED_MASTER_PORT" -master.volumeSizeLimitMB=64 -volume.port="$SEAWEED_VOLUME_PORT" -volume.max=16 \
    -filer -filer.port="$SEAWEED_FILER_PORT" -s3 -s3.port="$S3_PORT" -s3.config="$dir/s3.json"
  ready seaweedfs 90 s3_answers
  if [[ ! -f $dir/bucket-$WORKSPACE_BUCKET ]]; then
    wait_until "S3 bucket $WORKSPACE_BUCKET" 60 create_bucket || die "could not create the S3 bucket $WORKSPACE_BUCKET"
    touch "$dir/bucket-$WORKSPACE_BUCKET"
  fi
}

# The S3 gateway answers (an unsigned request is refused with 403: it is up).
s3_answers() { [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$S3_PORT/") =~ ^(200|403)$ ]]; }

weed_shell() { echo "$1" | "$SEAWEEDFS_BIN/weed" shell -master="127.0.0.1:$SEAWEED_MASTER_PORT" 2>&1; }
create_bucket() {
  weed_shell "s3.bucket.create -name $WORKSPACE_BUCKET" >>"$LOG_DIR/seaweedfs.log"
  weed_shell "s3.bucket.list" | grep -qw "$WORKSPACE_BUCKET"
}

etcd_up() {
  fresh etcd && ensure_port_free "$ETCD_PORT" etcd
  start etcd "$ETCD_BIN/etcd" --name node --data-dir "$DS_STACK_DIR/etcd" \
    --listen-client-urls "https://127.0.0.1:$ETCD_PORT" --advertise-client-urls "https://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "node=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls http://127.0.0.1:2381 \
    --cert-file "$PKI/etcd.crt" --key-file "$PKI/etcd.key" --trusted-ca-file "$PKI/ca.crt" --client-cert-auth \
    --quota-backend-bytes 2147483648 --log-level warn
  ready etcd 30 curl -sf http://127.0.0.1:2381/health
}

apiserver_up() {
  fresh kube-apiserver && ensure_port_free "$APISERVER_PORT" kube-apiserver
  start kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers "https://127.0.0.1:$ETCD_PORT" --etcd-cafile "$PKI/ca.crt" \
    --etcd-certfile "$PKI/apiserver-etcd-client.crt" --etcd-keyfile "$PKI/apiserver-etcd-client.key" \
    --bind-address 0.0.0.0 --secure-port "$APISERVER_PORT" --advertise-address "$NODE_IP" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" --client-ca-file "$PKI/ca.crt" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" --kubelet-certificate-authority "$PKI/ca.crt" \
    --audit-policy-file "$DS_ROOT/scripts/stack/manifests/audit-policy.yaml" \
    --audit-log-path "$LOG_DIR/audit.log" --audit-log-maxsize 200 --audit-log-maxbackup 2 \
    --allow-privileged=false --profiling=false --v 1
  ready kube-apiserver 90 curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT/readyz"
}

controllers_up() {
  start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$PKI/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig "$PKI/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig "$PKI/kube-controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
    --root-ca-file "$PKI/ca.crt" --service-account-private-key-file "$PKI/sa.key" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --controllers '*' --v 1
  start kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$PKI/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig "$PKI/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig "$PKI/kube-scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --v 1
  ready kube-controller-manager 60 curl -sfk https://127.0.0.1:10257/healthz
  ready kube-scheduler 60 curl -sfk https://127.0.0.1:10259/healthz
}

containerd_up() {
  local cfg=$DS_STACK_DIR/containerd/config.toml
  cat >"$DS_STACK_DIR/containerd/runsc.toml" <<TOML
[runsc_config]
  platform = "systrap"
TOML
  cat >"$cfg" <<TOML
version = 2
root = "$DS_STACK_DIR/containerd/root"
state = "$RUN_DIR/containerd-state"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # This machine lacks CAP_SYS_RESOURCE: no negative oom_score_adj may be set.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc]
      runtime_type = "io.containerd.runsc.v1"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc.options]
        TypeUrl = "io.containerd.runsc.v1.options"
        ConfigPath = "$DS_STACK_DIR/containerd/runsc.toml"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$DS_STACK_DIR/cni/net.d"
TOML
  # A bridge that is not a gateway and no routes: pods reach other pods on the bridge and nothing else (not the
  # node, not the apiserver, not the outside).
  cat >"$DS_STACK_DIR/cni/net.d/10-durable-sandbox.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "durable-sandbox",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$POD_BRIDGE",
      "isGateway": false,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$POD_CIDR" }]],
        "dataDir": "$DS_STACK_DIR/cni/ipam"
      }
    }
  ]
}
JSON
  # The gVisor shim and runsc must be on containerd's PATH.
  start containerd env PATH="$GVISOR_BIN:$PATH" containerd --config "$cfg"
  ready containerd 30 ctr --address "$CONTAINERD_SOCK" version
  "$DS_ROOT/scripts/stack/images.sh" import
}

kubelet_up() {
  local cfg=$DS_STACK_DIR/kubelet/config.yaml
  cat >"$cfg" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: "$PKI/ca.crt" }
authorization: { mode: Webhook }
tlsCertFile: "$PKI/kubelet.crt"
tlsPrivateKeyFile: "$PKI/kubelet.key"
containerRuntimeEndpoint: "unix://$CONTAINERD_SOCK"
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
# No CAP_SYS_RESOURCE here: the kubelet may not lower its own oom_score_adj.
oomScoreAdj: 0
maxOpenFiles: 20000
# A garbage-collected local image could never be pulled again.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: { memory.available: 200Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 2% }
# Containment for fork bombs: no pod may hold more than this many processes.
podPidsLimit: 512
serializeImagePulls: false
clusterDomain: cluster.local
resolvConf: ""
staticPodPath: ""
syncFrequency: 10s
fileCheckFrequency: 10s
YAML
  fresh kubelet && ensure_port_free 10250 kubelet
  start kubelet "$K8S_BIN/kubelet" --config "$cfg" --kubeconfig "$PKI/kubelet.kubeconfig" \
    --root-dir "$DS_STACK_DIR/kubelet/root" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v 1
  ready kubelet 60 curl -sf http://127.0.0.1:10248/healthz
}

bootstrap() {
  "${KUBECTL[@]}" apply -f "$DS_ROOT/scripts/stack/manifests/runtimeclass.yaml" \
    -f "$DS_ROOT/k8s/namespace.yaml" -f "$DS_ROOT/k8s/rbac.yaml" -f "$DS_ROOT/k8s/guardrails.yaml" >/dev/null
  # The worker runs on this machine with the credentials of its ServiceAccount, so missing or extra permissions
  # show up in the tests exactly as they would in the cluster.
  local token
  token=$("${KUBECTL[@]}" -n durable-sandbox-system create token durable-sandbox-worker --duration 48h)
  sed -e "/client-certificate-data/d" -e "s|client-key-data: .*|token: $token|" -e "s|- name: admin$|- name: worker|" \
    -e "s|user: admin$|user: worker|" "$KUBECONFIG_PATH" >"$DS_STACK_DIR/worker.kubeconfig.tmp"
  chmod 600 "$DS_STACK_DIR/worker.kubeconfig.tmp"
  mv "$DS_STACK_DIR/worker.kubeconfig.tmp" "$DS_STACK_DIR/worker.kubeconfig"
}

# The egress gateway (gateway/): a host process here (a Deployment on a cluster: k8s/egress-gateway.yaml), on the
# bridge's address, watching the sandbox namespace with its own ServiceAccount's token.
gateway_up() {
  local dir=$DS_STACK_DIR/gateway bin
  bin=$(gateway_bin_dir)/durable-sandbox-gateway
  mkdir -p "$dir"
  [[ -f $dir/key ]] || (umask 077 && openssl rand -hex 32 >"$dir/key")
  touch "$dir/hosts"
  "${KUBECTL[@]}" apply -f "$DS_ROOT/k8s/egress-gateway-rbac.yaml" >/dev/null
  local token
  token=$("${KUBECTL[@]}" -n durable-sandbox-system create token durable-sandbox-gateway --duration 48h)
  sed -e "/client-certificate-data/d" -e "s|client-key-data: .*|token: $token|" -e "s|- name: admin$|- name: gateway|" \
    -e "s|user: admin$|user: gateway|" "$KUBECONFIG_PATH" >"$dir/kubeconfig.tmp"
  chmod 600 "$dir/kubeconfig.tmp"
  mv "$dir/kubeconfig.tmp" "$dir/kubeconfig"
  if fresh gateway; then
    ensure_port_free "$GATEWAY_PORT" "egress gateway"
    ensure_port_free "$GATEWAY_REPORT_PORT" "egress gateway (report)"
  fi
  start gateway "$bin" --listen "$GATEWAY_IP:$GATEWAY_PORT" --report "127.0.0.1:$GATEWAY_REPORT_PORT" \
    --kubeconfig "$dir/kubeconfig" --namespace "$SANDBOX_NAMESPACE" --key-file "$dir/key" --hosts-file "$dir/hosts" \
    --ipset "$EGRESS_IPSET" --deny "$POD_CIDR" --deny "$SERVICE_CIDR"
  ready gateway 30 curl -sf "http://127.0.0.1:$GATEWAY_REPORT_PORT/healthz"
}

node_ready() {
  [[ $("${KUBECTL[@]}" get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

prepare_host
temporal_up
seaweedfs_up
etcd_up
apiserver_up
containerd_up
controllers_up
kubelet_up
bootstrap
gateway_up
wait_until "node $NODE_NAME Ready" 120 node_ready || die "node $NODE_NAME did not become Ready; see $LOG_DIR/kubelet.log"

# What the worker, tests and demo read when KUBECONFIG / TEMPORAL_ADDRESS do not point elsewhere.
cat >"$DS_STACK_DIR/stack.env" <<ENV
TEMPORAL_ADDRESS=127.0.0.1:$TEMPORAL_PORT
TEMPORAL_NAMESPACE=default
TEMPORAL_UI=http://127.0.0.1:$TEMPORAL_UI_PORT
KUBECONFIG=$DS_STACK_DIR/worker.kubeconfig
DS_ADMIN_KUBECONFIG=$KUBECONFIG_PATH
DS_IMAGE=$PYTHON_IMAGE
DS_IMAGE_JAVASCRIPT=$NODE_IMAGE
DS_WORKSPACE_STORE=s3://$WORKSPACE_BUCKET
DS_WORKSPACE_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
DS_WORKSPACE_S3_ACCESS_KEY_ID=$(sed -nE 's/.*"accessKey":"([^"]+)".*/\1/p' "$DS_STACK_DIR/seaweedfs/s3.json")
DS_WORKSPACE_S3_SECRET_ACCESS_KEY=$(sed -nE 's/.*"secretKey":"([^"]+)".*/\1/p' "$DS_STACK_DIR/seaweedfs/s3.json")
DS_EGRESS_GATEWAY=$GATEWAY_IP:$GATEWAY_PORT
DS_EGRESS_REPORT=http://127.0.0.1:$GATEWAY_REPORT_PORT
DS_EGRESS_KEY_FILE=$DS_STACK_DIR/gateway/key
ENV
chmod 600 "$DS_STACK_DIR/stack.env"

log "stack up in $((SECONDS - up_start)) s"
cat <<TXT

  KUBECONFIG=$KUBECONFIG_PATH           (admin; the worker uses $DS_STACK_DIR/worker.kubeconfig)
  TEMPORAL_ADDRESS=127.0.0.1:$TEMPORAL_PORT      Temporal UI: http://127.0.0.1:$TEMPORAL_UI_PORT
  kubectl:  $K8S_BIN/kubectl --kubeconfig $KUBECONFIG_PATH get nodes
  logs:     $LOG_DIR

TXT
