# shellcheck shell=bash disable=SC2034
# Shared settings for scripts/kube-{build,up,down}.sh (sourced, not run). See docs/kube-rig.md.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TESTENV="$ROOT/.testenv"

KUBE_VERSION="v1.34.4"
KWOK_VERSION="v0.7.0"
HELM_VERSION="v3.22.0"

# Binaries: built once per version, outside the repo, shared by every clone on the machine.
MLP_CACHE="${MLP_CACHE:-/var/cache/mlplatform}"
KUBE_CACHE="$MLP_CACHE/kube-$KUBE_VERSION"
KUBE_BIN="$KUBE_CACHE/bin"
KUBE_STAMP="$KUBE_CACHE/.complete"
KUBE_BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm)

# Run state: all under .testenv/kube in the repo.
KUBE_DIR="$TESTENV/kube"
KUBE_PKI="$KUBE_DIR/pki"
KUBE_LOGS="$KUBE_DIR/logs"
KUBE_PIDS="$KUBE_DIR/pids"
KUBECONFIG_ADMIN="$KUBE_DIR/kubeconfig"
TESTENV_BIN="$TESTENV/bin"

# Ports (loopback only); overridable so two clones can run side by side.
KUBE_APISERVER_PORT="${MLP_KUBE_APISERVER_PORT:-6443}"
KUBE_ETCD_PORT="${MLP_KUBE_ETCD_PORT:-52379}"
KUBE_ETCD_PEER_PORT="${MLP_KUBE_ETCD_PEER_PORT:-52380}"
KUBE_CM_PORT="${MLP_KUBE_CM_PORT:-10257}"
KUBE_SCHED_PORT="${MLP_KUBE_SCHED_PORT:-10259}"
KWOK_PORT="${MLP_KWOK_PORT:-10247}"

# Start order; kube-down stops in reverse.
KUBE_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }

# pid of a component we started, if it is still that process (pid + /proc cmdline check).
component_pid() {
  local name="$1" pidfile="$KUBE_PIDS/$1.pid" pid
  [[ -f $pidfile ]] || return 1
  pid="$(cat "$pidfile")"
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  # argv[0] is the cached binary's full path (a recycled pid runs something else).
  [[ "$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n 1)" == "$KUBE_BIN/$name" ]] || return 1
  printf '%s\n' "$pid"
}
