#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, with kwok fake nodes (see docs/kube-rig.md):
#   etcd  kube-apiserver (https://127.0.0.1:6443)  kube-controller-manager  kube-scheduler  kwok
# plus two kwok nodes: mlp-cpu-0 (16 cpu, 64Gi) and mlp-gpu-0 (16 cpu, 64Gi, 4 nvidia.com/gpu,
# GKE-like GPU pool labels, taint nvidia.com/gpu=present:NoSchedule).
# Idempotent: starts only what is not running, and returns at once when all is up and healthy.
# State under .testenv/kube (pki/ etcd/ logs/ pids/ kubeconfig, env.sh); kubectl, helm in .testenv/bin.
#   scripts/kube-up.sh        then: export KUBECONFIG=.testenv/kube/kubeconfig PATH=.testenv/bin:$PATH
# Ports (loopback): MLP_KUBE_APISERVER_PORT (6443), MLP_KUBE_ETCD_PORT (52379),
# MLP_KUBE_ETCD_PEER_PORT (52380), MLP_KUBE_CM_PORT (10257), MLP_KUBE_SCHED_PORT (10259).
set -euo pipefail
# shellcheck source=hack/kube/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../hack/kube/lib.sh"

# The controller-manager's API rate (see its start below); checked before anything starts.
CONTROLLER_API_QPS="${KUBE_CONTROLLER_API_QPS:-200}"
[[ $CONTROLLER_API_QPS =~ ^[1-9][0-9]{0,5}$ ]] ||
  { log "KUBE_CONTROLLER_API_QPS: expected a whole number of requests per second (1-999999), got '$CONTROLLER_API_QPS'"; exit 2; }

"$ROOT/scripts/kube-build.sh" >/dev/null

KUBECTL="$KUBE_BIN/kubectl"
APISERVER_URL="https://127.0.0.1:$KUBE_APISERVER_PORT"
NODES=(mlp-cpu-0 mlp-gpu-0)

kubectl_admin() { "$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# --- health checks ----------------------------------------------------------------------------
etcd_healthy() {
  curl -sf --max-time 2 "http://127.0.0.1:$KUBE_ETCD_PORT/health" | grep -q '"health":"true"'
}
apiserver_ready() {
  [[ -f $KUBECONFIG_ADMIN ]] && [[ "$(kubectl_admin get --raw /readyz --request-timeout=3s 2>/dev/null)" == ok ]]
}
secure_healthz() {  # controller-manager / scheduler: /healthz is always allowed anonymously
  [[ "$(curl -sk --max-time 2 "https://127.0.0.1:$1/healthz" 2>/dev/null)" == ok ]]
}
nodes_ready() {
  local out
  out="$(kubectl_admin get nodes "${NODES[@]}" --request-timeout=5s \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null)" || return 1
  [[ "$(grep -c '^True$' <<<"$out")" == "${#NODES[@]}" ]]
}
default_sa_exists() {
  kubectl_admin -n default get serviceaccount default --request-timeout=5s >/dev/null 2>&1
}
all_running() {
  local c
  for c in "${KUBE_COMPONENTS[@]}"; do component_pid "$c" >/dev/null || return 1; done
}
healthy() {
  all_running && etcd_healthy && apiserver_ready && secure_healthz "$KUBE_CM_PORT" &&
    secure_healthz "$KUBE_SCHED_PORT" && nodes_ready && default_sa_exists
}

# wait_for SECONDS WHAT COMMAND...: poll COMMAND every 0.5s; on timeout show the logs and fail.
wait_for() {
  local timeout="$1" what="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${timeout}s waiting for $what"
      local c
      for c in "${KUBE_COMPONENTS[@]}"; do
        component_pid "$c" >/dev/null || log "  $c is not running"
        [[ -f $KUBE_LOGS/$c.log ]] && { log "  --- tail $KUBE_LOGS/$c.log"; tail -n 15 "$KUBE_LOGS/$c.log" >&2; }
      done
      return 1
    fi
    sleep 0.5
  done
}

# Links in .testenv/bin and .testenv/kube/env.sh (also when already up: a clone may have lost them).
link_tools() {
  mkdir -p "$TESTENV_BIN"
  ln -sfn "$KUBE_BIN/kubectl" "$TESTENV_BIN/kubectl"
  ln -sfn "$KUBE_BIN/helm" "$TESTENV_BIN/helm"
  cat >"$KUBE_DIR/env.sh.tmp" <<ENV
# Written by scripts/kube-up.sh; source it before running the kube tests.
export MLP_TEST_KUBECONFIG="$KUBECONFIG_ADMIN"
case ":\$PATH:" in *":$TESTENV_BIN:"*) ;; *) export PATH="$TESTENV_BIN:\$PATH" ;; esac
ENV
  mv "$KUBE_DIR/env.sh.tmp" "$KUBE_DIR/env.sh"
}

if healthy; then
  link_tools
  log "already up: KUBECONFIG=$KUBECONFIG_ADMIN"
  exit 0
fi

mkdir -p "$KUBE_PKI" "$KUBE_LOGS" "$KUBE_PIDS" "$KUBE_DIR/etcd"
chmod 700 "$KUBE_DIR" "$KUBE_PKI"

# --- certificates (openssl; 10 years; made once, kept across restarts) ------------------------
pki() {
  local ossl=(openssl)
  cd "$KUBE_PKI"
  if [[ ! -s ca.crt || ! -s ca.key ]]; then
    log "creating the CA and certificates in $KUBE_PKI"
    rm -f ./*.crt ./*.key ./*.csr ./*.pub
    "${ossl[@]}" req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=mlplatform-test-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" 2>/dev/null
  fi
  # issue NAME SUBJECT EXTFILE-CONTENT
  issue() {
    local name="$1" subj="$2" ext="$3"
    [[ -s $name.crt && -s $name.key ]] && return 0
    "${ossl[@]}" req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subj" 2>/dev/null
    printf '%s\n' "$ext" >"$name.ext"
    "${ossl[@]}" x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -sha256 -extfile "$name.ext" -out "$name.crt" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
  }
  local client="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  issue apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  issue admin "/O=system:masters/CN=kubernetes-admin" "$client"
  issue controller-manager "/CN=system:kube-controller-manager" "$client"
  issue scheduler "/CN=system:kube-scheduler" "$client"
  # kwok acts for the kubelets of all fake nodes: it needs to write any node and pod status.
  issue kwok "/O=system:masters/CN=kwok-controller" "$client"
  # The aggregation layer's front proxy (requestheader auth), as hack/local-up-cluster.sh sets it
  # up: its own CA, and a client cert the apiserver presents to aggregated API servers. Without it
  # the controller-manager and scheduler log "missing content for CA bundle
  # client-ca::kube-system::extension-apiserver-authentication::requestheader-client-ca-file".
  if [[ ! -s front-proxy-ca.crt || ! -s front-proxy-ca.key ]]; then
    rm -f front-proxy-client.crt front-proxy-client.key
    "${ossl[@]}" req -x509 -newkey rsa:2048 -nodes -keyout front-proxy-ca.key -out front-proxy-ca.crt \
      -days 3650 -subj "/CN=mlplatform-test-front-proxy-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" 2>/dev/null
  fi
  if [[ ! -s front-proxy-client.crt || ! -s front-proxy-client.key ]]; then
    "${ossl[@]}" req -newkey rsa:2048 -nodes -keyout front-proxy-client.key -out front-proxy-client.csr \
      -subj "/CN=front-proxy-client" 2>/dev/null
    printf '%s\n' "$client" >front-proxy-client.ext
    "${ossl[@]}" x509 -req -in front-proxy-client.csr -CA front-proxy-ca.crt -CAkey front-proxy-ca.key \
      -CAcreateserial -days 3650 -sha256 -extfile front-proxy-client.ext -out front-proxy-client.crt 2>/dev/null
    rm -f front-proxy-client.csr front-proxy-client.ext
  fi
  if [[ ! -s sa.key || ! -s sa.pub ]]; then
    "${ossl[@]}" genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
    "${ossl[@]}" pkey -in sa.key -pubout -out sa.pub 2>/dev/null
  fi
  chmod 600 ./*.key
  cd - >/dev/null
}
pki

# kubeconfig NAME FILE: a kubeconfig with the CA and NAME's client cert embedded.
write_kubeconfig() {
  local name="$1" file="$2" tmp="$2.tmp.$$"
  rm -f "$tmp"
  "$KUBECTL" config --kubeconfig "$tmp" set-cluster mlp --server "$APISERVER_URL" \
    --certificate-authority "$KUBE_PKI/ca.crt" --embed-certs >/dev/null
  "$KUBECTL" config --kubeconfig "$tmp" set-credentials "$name" \
    --client-certificate "$KUBE_PKI/$name.crt" --client-key "$KUBE_PKI/$name.key" --embed-certs >/dev/null
  "$KUBECTL" config --kubeconfig "$tmp" set-context "$name@mlp" --cluster mlp --user "$name" >/dev/null
  "$KUBECTL" config --kubeconfig "$tmp" use-context "$name@mlp" >/dev/null
  chmod 600 "$tmp"
  mv "$tmp" "$file"
}
write_kubeconfig admin "$KUBECONFIG_ADMIN"
write_kubeconfig controller-manager "$KUBE_DIR/controller-manager.kubeconfig"
write_kubeconfig scheduler "$KUBE_DIR/scheduler.kubeconfig"
write_kubeconfig kwok "$KUBE_DIR/kwok.kubeconfig"

# --- processes --------------------------------------------------------------------------------
port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }

# start NAME PORT ARGS...: start the cached binary NAME unless ours is already running. setsid so
# that it outlives make's process group; its own log; its pid in pids/NAME.pid.
start() {
  local name="$1" port="$2"; shift 2
  if component_pid "$name" >/dev/null; then return 0; fi
  if [[ $port != - ]] && ! port_free "$port"; then
    log "port $port (for $name) is taken by another process; stop it or set MLP_KUBE_*_PORT"
    ss -Hltnp "sport = :$port" >&2 || true
    exit 1
  fi
  log "starting $name"
  {
    echo "=== $(date -u +%FT%TZ) $KUBE_BIN/$name $*"
  } >>"$KUBE_LOGS/$name.log"
  setsid "$KUBE_BIN/$name" "$@" >>"$KUBE_LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$KUBE_PIDS/$name.pid"
}

start etcd "$KUBE_ETCD_PORT" \
  --name=mlp \
  --data-dir="$KUBE_DIR/etcd" \
  --listen-client-urls="http://127.0.0.1:$KUBE_ETCD_PORT" \
  --advertise-client-urls="http://127.0.0.1:$KUBE_ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$KUBE_ETCD_PEER_PORT" \
  --initial-advertise-peer-urls="http://127.0.0.1:$KUBE_ETCD_PEER_PORT" \
  --initial-cluster="mlp=http://127.0.0.1:$KUBE_ETCD_PEER_PORT" \
  --unsafe-no-fsync=true \
  --quota-backend-bytes=$((2 * 1024 * 1024 * 1024)) \
  --log-level=warn
wait_for 30 "etcd on 127.0.0.1:$KUBE_ETCD_PORT" etcd_healthy

# --advertise-address=127.0.0.1: else it advertises the host's first non-loopback address. But
# the "kubernetes" Service's Endpoints may not be loopback ("may not be in the loopback range"
# every 10s), so --endpoint-reconciler-type=none: no pod really runs to call it anyway.
start kube-apiserver "$KUBE_APISERVER_PORT" \
  --etcd-servers="http://127.0.0.1:$KUBE_ETCD_PORT" \
  --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 \
  --secure-port="$KUBE_APISERVER_PORT" \
  --tls-cert-file="$KUBE_PKI/apiserver.crt" \
  --tls-private-key-file="$KUBE_PKI/apiserver.key" \
  --client-ca-file="$KUBE_PKI/ca.crt" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$KUBE_PKI/sa.pub" \
  --service-account-signing-key-file="$KUBE_PKI/sa.key" \
  --service-cluster-ip-range=10.96.0.0/12 \
  --authorization-mode=Node,RBAC \
  --requestheader-client-ca-file="$KUBE_PKI/front-proxy-ca.crt" \
  --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User \
  --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="$KUBE_PKI/front-proxy-client.crt" \
  --proxy-client-key-file="$KUBE_PKI/front-proxy-client.key" \
  --endpoint-reconciler-type=none \
  --allow-privileged=true \
  --profiling="${KUBE_APISERVER_PROFILING:-false}" \
  --v=1
wait_for 90 "kube-apiserver at $APISERVER_URL/readyz" apiserver_ready

# --kube-api-qps (KUBE_CONTROLLER_API_QPS, default 200; upstream's is 20): the Job controller spends
# ≈ 6 requests on each Job (its pod, an event, status writes), so at 20 per second it starts ≈ 3 Jobs
# per second and a burst of 500 runs (a sweep, the submit benchmark) waited minutes for its pods,
# and the backlog ran through whatever came next. Large clusters raise it the same way.
# --node-monitor-grace-period: kwok renews the fake nodes' leases from this same loaded 2-core
# machine; with the default 50 s a busy minute marks them NotReady (and taints them), which is
# the rig failing, not the code under test.
start kube-controller-manager "$KUBE_CM_PORT" \
  --kubeconfig="$KUBE_DIR/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$KUBE_DIR/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$KUBE_DIR/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 \
  --secure-port="$KUBE_CM_PORT" \
  --service-account-private-key-file="$KUBE_PKI/sa.key" \
  --root-ca-file="$KUBE_PKI/ca.crt" \
  --cluster-signing-cert-file="$KUBE_PKI/ca.crt" \
  --cluster-signing-key-file="$KUBE_PKI/ca.key" \
  --use-service-account-credentials=true \
  --service-cluster-ip-range=10.96.0.0/12 \
  --cluster-name=mlp \
  --controllers='*' \
  --node-monitor-grace-period=5m \
  --kube-api-qps="$CONTROLLER_API_QPS" \
  --kube-api-burst="$(( 3 * CONTROLLER_API_QPS / 2 ))" \
  --leader-elect=false \
  --profiling=false \
  --v=1

start kube-scheduler "$KUBE_SCHED_PORT" \
  --kubeconfig="$KUBE_DIR/scheduler.kubeconfig" \
  --authentication-kubeconfig="$KUBE_DIR/scheduler.kubeconfig" \
  --authorization-kubeconfig="$KUBE_DIR/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 \
  --secure-port="$KUBE_SCHED_PORT" \
  --leader-elect=false \
  --profiling=false \
  --v=1

# kwok's pod stages: kwok's own defaults (pod-ready, pod-complete, pod-delete) plus its chaos stage
# pod-container-running-failed, as kube-build.sh copied them from kwok's source. One change: the
# default pod-complete gets an optional delay from the pod annotation
# pod-complete.stage.kwok.x-k8s.io/delay (a Go duration, e.g. "30s", or an RFC 3339 time), the
# annotation kwok's "general" stages use; without it a Job's pod completes as soon as it runs.
write_kwok_config() {
  awk '
    /^  name: /            { stage = $2 }
    stage == "pod-complete" && $0 == "  next:" {
      print "  delay:"
      print "    durationMilliseconds: 0"
      print "    durationFrom:"
      print "      expressionFrom: '"'"'.metadata.annotations[\"pod-complete.stage.kwok.x-k8s.io/delay\"]'"'"'"
    }
    { print }
  ' "$KUBE_BIN/kwok-stages.yaml" >"$KUBE_DIR/kwok-stages.yaml.tmp"
  grep -q 'pod-complete.stage.kwok.x-k8s.io/delay' "$KUBE_DIR/kwok-stages.yaml.tmp" ||
    { log "could not add the pod-complete delay to kwok's stages"; exit 1; }
  mv "$KUBE_DIR/kwok-stages.yaml.tmp" "$KUBE_DIR/kwok-stages.yaml"
}
write_kwok_config

# kwok manages only the nodes annotated kwok.x-k8s.io/node=fake.
# --node-lease-duration-seconds: kwok renews each fake node's Lease (kube-node-lease) like a
# kubelet. Its default (40) is applied only to a KwokConfiguration document, which our --config
# (stages only) has none of: kwok then ran no lease controller and took the heartbeat stage meant
# for nodes with a lease (a status heartbeat every 10-20 min), so past the 5 min grace below the
# node lifecycle controller marked both nodes NotReady every 5 minutes and every pod on them
# NotReady (kwok re-readied the nodes, not the pods): a Deployment was then unavailable for good.
start kwok - \
  --kubeconfig="$KUBE_DIR/kwok.kubeconfig" \
  --config="$KUBE_DIR/kwok-stages.yaml" \
  --node-lease-duration-seconds=40 \
  --manage-all-nodes=false \
  --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --node-ip=127.0.0.1 \
  --cidr=10.244.0.0/16

wait_for 60 "kube-controller-manager healthz" secure_healthz "$KUBE_CM_PORT"
wait_for 60 "kube-scheduler healthz" secure_healthz "$KUBE_SCHED_PORT"

# --- nodes ------------------------------------------------------------------------------------
# Created by us (kwok only manages them); create keeps .status, and kwok's node-initialize stage
# keeps the capacity/allocatable it finds. Existing nodes are left alone.
node_yaml() {
  local name="$1" labels="$2" taints="$3" extra_capacity="$4"
  cat <<YAML
apiVersion: v1
kind: Node
metadata:
  name: $name
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: $name
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
$labels
spec:
$taints
status:
  capacity: &resources
    cpu: "16"
    memory: 64Gi
    ephemeral-storage: 100Gi
    pods: "110"
$extra_capacity
  allocatable: *resources
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
    kubeletVersion: $KUBE_VERSION
    kubeProxyVersion: $KUBE_VERSION
    containerRuntimeVersion: kwok
YAML
}
create_nodes() {
  local existing
  existing="$(kubectl_admin get nodes -o name 2>/dev/null || true)"
  if ! grep -qx node/mlp-cpu-0 <<<"$existing"; then
    node_yaml mlp-cpu-0 "    mlplatform.dev/pool: cpu" "  taints: []" "" | kubectl_admin create -f - >/dev/null
  fi
  if ! grep -qx node/mlp-gpu-0 <<<"$existing"; then
    node_yaml mlp-gpu-0 '    mlplatform.dev/pool: gpu
    cloud.google.com/gke-nodepool: gpu-pool
    cloud.google.com/gke-accelerator: nvidia-tesla-t4
    node.kubernetes.io/instance-type: n1-standard-16
    nvidia.com/gpu.present: "true"
    nvidia.com/gpu.count: "4"
    nvidia.com/gpu.product: Tesla-T4' \
      '  taints:
  - key: nvidia.com/gpu
    value: present
    effect: NoSchedule' \
      '    nvidia.com/gpu: "4"' | kubectl_admin create -f - >/dev/null
  fi
}
create_nodes

wait_for 60 "nodes ${NODES[*]} Ready (kwok)" nodes_ready
wait_for 60 "serviceaccount default/default" default_sa_exists
link_tools
log "up: KUBECONFIG=$KUBECONFIG_ADMIN (kubectl, helm in $TESTENV_BIN)"
