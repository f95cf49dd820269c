#!/usr/bin/env bash
# Generates (once) the cluster's CA, serving and client certificates, service-account keys and kubeconfigs.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need openssl "apt-get install openssl"

mkdir -p "$PKI_DIR"
cd "$PKI_DIR"
NODE_IP=$(node_ip)
[[ -n $NODE_IP ]] || die "cannot find this node's IP address (no default route?)"

if [[ -f ca.crt && -f .node-ip && $(cat .node-ip) != "$NODE_IP" ]]; then
  log "node IP changed from $(cat .node-ip) to $NODE_IP: regenerating certificates"
  rm -f ./*.crt ./*.key ./*.kubeconfig
fi
echo "$NODE_IP" >.node-ip

if [[ ! -f ca.crt ]]; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=durable-sandbox-ca" 2>/dev/null
fi

# cert NAME SUBJECT USAGE [SAN]
cert() {
  local name=$1 subj=$2 usage=$3 san=${4:-}
  [[ -f $name.crt ]] && return 0
  local ext
  ext=$(mktemp)
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [[ -n $san ]] && echo "subjectAltName=$san"
  } >"$ext"
  openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subj" 2>/dev/null
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$name.crt" -days 3650 \
    -extfile "$ext" 2>/dev/null
  rm -f "$name.csr" "$ext"
}

host=$(hostname)
cert apiserver "/CN=kube-apiserver" serverAuth \
  "DNS:localhost,DNS:$host,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$NODE_IP,IP:$SERVICE_IP"
cert kubelet "/CN=$NODE_NAME" serverAuth "DNS:localhost,DNS:$host,DNS:$NODE_NAME,IP:127.0.0.1,IP:$NODE_IP"
cert etcd "/CN=etcd" serverAuth,clientAuth "DNS:localhost,IP:127.0.0.1"
cert admin "/O=system:masters/CN=kubernetes-admin" clientAuth
cert kube-controller-manager "/CN=system:kube-controller-manager" clientAuth
cert kube-scheduler "/CN=system:kube-scheduler" clientAuth
cert kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
cert apiserver-etcd-client "/CN=kube-apiserver-etcd-client" clientAuth
if [[ ! -f sa.key ]]; then
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
fi
chmod 600 ./*.key

# kubeconfig NAME CERT: a kubeconfig with embedded certificates (client-node refuses plain http and file paths work
# only on this machine).
kubeconfig() {
  local out=$1 crt=$2
  [[ -f $out ]] && return 0
  cat >"$out" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: durable-sandbox
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 ca.crt)
users:
- name: $crt
  user:
    client-certificate-data: $(base64 -w0 "$crt.crt")
    client-key-data: $(base64 -w0 "$crt.key")
contexts:
- name: durable-sandbox
  context:
    cluster: durable-sandbox
    user: $crt
    namespace: $SANDBOX_NAMESPACE
current-context: durable-sandbox
YAML
  chmod 600 "$out"
}
kubeconfig admin.kubeconfig admin
kubeconfig kube-controller-manager.kubeconfig kube-controller-manager
kubeconfig kube-scheduler.kubeconfig kube-scheduler
kubeconfig kubelet.kubeconfig kubelet-client
cp admin.kubeconfig "$KUBECONFIG_PATH"
