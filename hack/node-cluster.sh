#!/bin/bash
# A one-node Kubernetes cluster for tokenguard's node suite: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, containerd (runc, bridge CNI), the kubelet and kube-proxy
# (iptables), all inside one network namespace of their own. Nothing listens on the machine's own
# interfaces; kube-proxy's and the CNI's iptables rules live in that namespace and go with it.
#
#   hack/node-cluster.sh up DIR              start; prints KUBECONFIG=... and NETNS=...
#   hack/node-cluster.sh load DIR IMAGE.tar  import docker-archive/OCI tarballs into the node's containerd
#   hack/node-cluster.sh down DIR            stop everything it started: processes, pod sandboxes,
#                                            mounts, cgroups, network namespaces
#   hack/node-cluster.sh reap DIR PID        wait until process PID exits, then `down DIR` (the test
#                                            harness starts one, so a killed test run leaves nothing)
#   hack/node-cluster.sh leftovers DIR       print what `down` should have removed and is still there
#
# The binaries, found the way the e2e suite finds them (nothing here reads another checkout):
#   KUBEBUILDER_ASSETS      etcd, kube-apiserver, kube-controller-manager, kubectl (v1.36)
#   TOKENGUARD_NODE_ASSETS  kubelet, kube-proxy, kube-scheduler, pause (v1.36)
#   TOKENGUARD_NODE_DEPS    root of the unpacked Debian pieces: usr/bin/containerd, ctr,
#                           containerd-shim-runc-v2, usr/sbin/runc, usr/lib/cni/{bridge,host-local,loopback}
#   TOKENGUARD_NODE_KUBELET optional: another kubelet (e.g. v1.29.14, which still has kubernetes#130442)
#   TOKENGUARD_NODE_SYNC_FREQUENCY optional: the kubelet's syncFrequency (default 1m; the node suite: 10s)
# iptables and conntrack come from PATH (kube-proxy runs them). Needs root.
#
# Every setting below was a failure first on this kind of machine (2 cores, cgroup v1 hybrid layout,
# no CAP_SYS_RESOURCE); docs/development.md says why each is there.
set -euo pipefail
CMD=${1:?usage: node-cluster.sh up|load|down|reap|leftovers DIR}
DIR=${2:?usage: node-cluster.sh $CMD DIR}
[ "$CMD" = up ] && mkdir -p "$DIR"
[ -d "$DIR" ] && DIR=$(cd "$DIR" && pwd)
NETNS=${TOKENGUARD_NODE_NETNS:-tokenguard-node}
NODE=${TOKENGUARD_NODE_NAME:-node-1}
POD_CIDR=10.88.0.0/16 BRIDGE_IP=10.88.0.1 SERVICE_CIDR=10.0.0.0/24
RUN=$DIR/run PKI=$DIR/pki
X="nsenter --net=/var/run/netns/$NETNS"
log() { echo "node-cluster: $*" >&2; }
die() { log "$*"; exit 1; }

bins() {
  CP_BIN=${KUBEBUILDER_ASSETS:?set KUBEBUILDER_ASSETS to the v1.36 control-plane binaries}
  NODE_BIN=${TOKENGUARD_NODE_ASSETS:?set TOKENGUARD_NODE_ASSETS to the kubelet, kube-proxy, kube-scheduler and pause binaries}
  DEPS=${TOKENGUARD_NODE_DEPS:?set TOKENGUARD_NODE_DEPS to the unpacked containerd, runc and CNI plugins}
  KUBELET=${TOKENGUARD_NODE_KUBELET:-$NODE_BIN/kubelet}
  export PATH=$DEPS/usr/bin:$DEPS/usr/sbin:$CP_BIN:$PATH
}

# Processes of this cluster: the ones it launched (pid files), the pods' (the kubelet puts them
# under the kubepods cgroup), the containerd shims of this run folder, anything in the namespace.
cluster_pids() {
  cat "$RUN"/*.pid 2>/dev/null || true
  find /sys/fs/cgroup/memory/kubepods /sys/fs/cgroup/pids/kubepods /sys/fs/cgroup/kubepods -name cgroup.procs 2>/dev/null | xargs -r cat 2>/dev/null || true
  pgrep -f "containerd-shim-runc-v2 -namespace k8s.io -id .* -address $RUN/" 2>/dev/null || true
  ip netns pids "$NETNS" 2>/dev/null || true
}

down() {
  for p in kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver etcd containerd; do
    [ -f "$RUN/$p.pid" ] && kill "$(cat "$RUN/$p.pid")" 2>/dev/null || true
  done
  sleep 2
  for _ in 1 2 3; do
    pids=$(cluster_pids | sort -u)
    [ -z "$pids" ] && break
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
    sleep 1
  done
  # The pods' own network namespaces: made by this cluster's containerd (its CNI names them cni-*).
  for n in $(ip netns list 2>/dev/null | awk '/^cni-/{print $1}'); do ip netns del "$n" 2>/dev/null || true; done
  mount | awk -v d="$DIR/" 'index($3, d) == 1 {print $3}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  ip netns del "$NETNS" 2>/dev/null || true
  # The kubelet's cgroups (cgroupfs driver): empty now, removed deepest first.
  for root in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$root" ] && find "$root" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  rm -f "$RUN"/*.pid
}

leftovers() {
  local out=""
  pids=$(cluster_pids | sort -u | while read -r p; do [ -d "/proc/$p" ] && echo "$p"; done)
  [ -n "$pids" ] && out+="processes: $(echo $pids)"$'\n'
  m=$(mount | awk -v d="$DIR/" 'index($3, d) == 1 {print $3}')
  [ -n "$m" ] && out+="mounts: $(echo $m)"$'\n'
  n=$(ip netns list 2>/dev/null | awk -v ns="$NETNS" '$1 == ns || /^cni-/ {print $1}')
  [ -n "$n" ] && out+="network namespaces: $(echo $n)"$'\n'
  r=$(iptables-save 2>/dev/null | grep -E 'KUBE-|CNI-' || true)
  [ -n "$r" ] && out+="iptables rules on the machine: $(echo "$r" | head -3)"$'\n'
  printf '%s' "$out"
}

case $CMD in
  down) down; exit 0 ;;
  leftovers) leftovers; exit 0 ;;
  reap)
    PARENT=${3:?usage: node-cluster.sh reap DIR PID}
    while kill -0 "$PARENT" 2>/dev/null; do sleep 1; done
    # Stopped the ordinary way (the folder is gone, or marked): nothing to do, and nothing of a
    # cluster started since then is touched.
    if [ -d "$DIR" ] && [ ! -f "$DIR/.down" ]; then down; rm -rf "$DIR"; fi
    exit 0 ;;
  load)
    bins
    shift 2
    for t in "$@"; do ctr --address "$RUN/containerd.sock" -n k8s.io images import "$t" >&2; done
    exit 0 ;;
  up) ;;
  *) die "unknown command $CMD" ;;
esac

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, containerd, the kubelet)"
bins
for b in containerd ctr runc iptables conntrack nsenter; do command -v $b >/dev/null || die "missing $b"; done
[ -x "$DEPS/usr/lib/cni/bridge" ] || die "missing CNI plugins under $DEPS/usr/lib/cni"
down
rm -rf "$RUN" "$DIR/.down"
mkdir -p "$RUN" "$PKI" "$DIR/cni" "$DIR/pv"

# ---- PKI: one CA for everything, a leaf for each component
cd "$PKI"
if [ ! -f ca.crt ]; then
  openssl req -x509 -new -nodes -newkey rsa:2048 -keyout ca.key -sha256 -days 3650 -subj "/CN=tokenguard-node-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out ca.crt 2>/dev/null
  openssl genrsa -out sa.key 2048 2>/dev/null && openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
fi
issue() { # NAME SUBJECT EKU [SAN]
  [ -f "$1.crt" ] && return 0
  local ext; ext=$(mktemp)
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n' "$3" > "$ext"
  [ -n "${4:-}" ] && echo "subjectAltName=$4" >> "$ext"
  openssl req -new -nodes -newkey rsa:2048 -keyout "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 3650 -extfile "$ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$ext"
}
issue apiserver /CN=kube-apiserver serverAuth \
  "IP:127.0.0.1,IP:$BRIDGE_IP,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
issue admin "/O=system:masters/CN=kubernetes-admin" clientAuth
issue kcm /CN=system:kube-controller-manager clientAuth
issue scheduler /CN=system:kube-scheduler clientAuth
issue kube-proxy /CN=system:kube-proxy clientAuth
issue kubelet "/O=system:nodes/CN=system:node:$NODE" clientAuth
issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
cd - >/dev/null
kc() { cat > "$DIR/$1.kubeconfig" <<Y
apiVersion: v1
kind: Config
clusters: [{name: node, cluster: {server: "https://127.0.0.1:6443", certificate-authority: "$PKI/ca.crt"}}]
users: [{name: $1, user: {client-certificate: "$PKI/$1.crt", client-key: "$PKI/$1.key"}}]
contexts: [{name: node, context: {cluster: node, user: $1}}]
current-context: node
Y
}
for u in admin kcm scheduler kube-proxy kubelet; do kc $u; done

# ---- the network namespace: loopback, a bridge for the pods, a route for the service CIDR
ip netns add "$NETNS"
$X ip link set lo up
$X ip link add tg0 type bridge
$X ip addr add "$BRIDGE_IP/16" dev tg0
$X ip link set tg0 up
# Without a route the API server's own calls to a Service IP (webhooks) fail with "network is
# unreachable" before kube-proxy's DNAT, and a failurePolicy: Ignore webhook is silently skipped.
$X ip route add "$SERVICE_CIDR" dev tg0
$X sysctl -qw net.ipv4.ip_forward=1
cat > "$DIR/cni/10-bridge.conflist" <<Y
{"cniVersion": "0.4.0", "name": "node", "plugins": [
  {"type": "bridge", "bridge": "tg0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$RUN/cni-ipam", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$BRIDGE_IP"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "loopback"}]}
Y

# setsid: a signal to the test runner's process group does not reach the cluster first; `down` (or
# the reaper) stops it in order.
launch() { local n=$1; shift; ( exec setsid $X "$@" > "$RUN/$n.log" 2>&1 < /dev/null ) & echo $! > "$RUN/$n.pid"; }
wait_for() { local what=$1 secs=$2; shift 2; for _ in $(seq 1 "$((secs * 2))"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done; die "$what not ready after $secs s (logs in $RUN)"; }
K() { $X kubectl --kubeconfig "$DIR/admin.kubeconfig" "$@"; }

# ---- containerd 1.7 (CRI), runc, the bridge CNI
cat > "$DIR/containerd.toml" <<Y
version = 2
root = "$RUN/containerd"
state = "$RUN/containerd-state"
[grpc]
  address = "$RUN/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  # No CAP_SYS_RESOURCE here: a pod's oom_score_adj may not go below containerd's own, or every
  # sandbox fails with "runc create failed: ... can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$DEPS/usr/lib/cni"
    conf_dir = "$DIR/cni"
Y
launch containerd containerd --config "$DIR/containerd.toml"
wait_for containerd 30 ctr --address "$RUN/containerd.sock" version
# The pause image, from the static pause binary: nothing is pulled.
python3 "$(dirname "$0")/mkimage.py" "$RUN/pause.tar" registry.k8s.io/pause:3.10 '["/pause"]' "$NODE_BIN/pause:/pause" >/dev/null
ctr --address "$RUN/containerd.sock" -n k8s.io images import "$RUN/pause.tar" >/dev/null

# ---- control plane
launch etcd "$CP_BIN/etcd" --name=default --data-dir="$RUN/etcd-data" --listen-client-urls=http://127.0.0.1:2379 \
  --advertise-client-urls=http://127.0.0.1:2379 --listen-peer-urls=http://127.0.0.1:2380 \
  --initial-advertise-peer-urls=http://127.0.0.1:2380 --initial-cluster=default=http://127.0.0.1:2380 \
  --initial-cluster-state=new --logger=zap --log-outputs=stderr
wait_for etcd 60 $X curl -fsS http://127.0.0.1:2379/health
# --kubelet-preferred-address-types=InternalIP: exec/logs/port-forward would otherwise resolve the
# node's name through DNS, and there is none.
launch kube-apiserver "$CP_BIN/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
  --bind-address=0.0.0.0 --secure-port=6443 --advertise-address="$BRIDGE_IP" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" --client-ca-file="$PKI/ca.crt" \
  --authorization-mode=Node,RBAC \
  --enable-admission-plugins=NamespaceLifecycle,ServiceAccount,NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local --service-account-key-file="$PKI/sa.pub" \
  --service-account-signing-key-file="$PKI/sa.key" --api-audiences=https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range="$SERVICE_CIDR" --allow-privileged=true \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types=InternalIP \
  --cert-dir="$RUN/apiserver-certs" --profiling=false --v=1
wait_for kube-apiserver 90 K get --raw /readyz
# The OpenShift fork's ServiceAccount admission adds an openshift-service-ca.crt ConfigMap to every
# kube-api-access volume: its publisher controller stays on, or pods wait in ContainerCreating.
launch kube-controller-manager "$CP_BIN/kube-controller-manager" --kubeconfig="$DIR/kcm.kubeconfig" \
  --authentication-kubeconfig="$DIR/kcm.kubeconfig" --authorization-kubeconfig="$DIR/kcm.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=10257 --use-service-account-credentials=true \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" --cluster-name=node \
  --controllers='*,-node-ipam-controller,-cloud-node-lifecycle-controller,-node-route-controller,-service-lb-controller' \
  --leader-elect=false --profiling=false --v=1
launch kube-scheduler "$NODE_BIN/kube-scheduler" --kubeconfig="$DIR/scheduler.kubeconfig" \
  --authentication-kubeconfig="$DIR/scheduler.kubeconfig" --authorization-kubeconfig="$DIR/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=10259 --leader-elect=false

# ---- the node
cat > "$DIR/kubelet.yaml" <<Y
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication: {anonymous: {enabled: false}, webhook: {enabled: true}, x509: {clientCAFile: "$PKI/ca.crt"}}
authorization: {mode: Webhook}
containerRuntimeEndpoint: "unix://$RUN/containerd.sock"
# The hybrid cgroup v1 layout: 1.36 refuses it unless told otherwise; no systemd here.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
address: 0.0.0.0
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
clusterDomain: cluster.local
# No CoreDNS: an address nothing answers keeps the kubelet from warning MissingClusterDNS on every pod.
clusterDNS: [10.0.0.10]
resolvConf: ""
# The disk is shared with the rest of the machine: never evict for it.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
enforceNodeAllocatable: []
# How often each pod is synced; a projected token is refreshed at the first sync once it is due.
syncFrequency: ${TOKENGUARD_NODE_SYNC_FREQUENCY:-1m}
Y
launch kubelet "$KUBELET" --config="$DIR/kubelet.yaml" --kubeconfig="$DIR/kubelet.kubeconfig" \
  --hostname-override="$NODE" --node-ip="$BRIDGE_IP" --root-dir="$RUN/kubelet" --v=1
cat > "$DIR/kube-proxy.yaml" <<Y
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$DIR/kube-proxy.kubeconfig"}
mode: iptables
clusterCIDR: $POD_CIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0}
Y
launch kube-proxy "$NODE_BIN/kube-proxy" --config="$DIR/kube-proxy.yaml" --hostname-override="$NODE"
node_ready() { K get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -qx True; }
wait_for "node $NODE" 120 node_ready
sa_ready() { K -n default get serviceaccount default; }
wait_for "the default ServiceAccount" 60 sa_ready
echo "KUBECONFIG=$DIR/admin.kubeconfig"
echo "NETNS=$NETNS"
