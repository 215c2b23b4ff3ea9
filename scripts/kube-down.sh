#!/usr/bin/env bash
# Stop what scripts/kube-up.sh started (by its pid files, in reverse order). Idempotent.
#   scripts/kube-down.sh            stop; keep .testenv/kube (certs, etcd data: a later kube-up
#                                   comes back with the same objects)
#   scripts/kube-down.sh --purge    stop and delete .testenv/kube
set -euo pipefail
# shellcheck source=hack/kube/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../hack/kube/lib.sh"

purge=0
case "${1:-}" in
  --purge) purge=1 ;;
  "") ;;
  *) log "usage: $0 [--purge]"; exit 2 ;;
esac

stop_component() {
  local name="$1" pid i
  if pid="$(component_pid "$name")"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do          # up to 10s, then SIGKILL
      [[ -d /proc/$pid ]] || break
      # a zombie is gone for our purposes
      [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && break
      sleep 0.1
    done
    if [[ -d /proc/$pid ]] && component_pid "$name" >/dev/null; then
      log "$name (pid $pid) ignored SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$KUBE_PIDS/$name.pid"
}

if [[ -d $KUBE_PIDS ]]; then
  for ((i = ${#KUBE_COMPONENTS[@]} - 1; i >= 0; i--)); do
    stop_component "${KUBE_COMPONENTS[i]}"
  done
fi

if [[ $purge == 1 ]]; then
  rm -rf "$KUBE_DIR"
  rm -f "$TESTENV_BIN/kubectl" "$TESTENV_BIN/helm"
  log "purged $KUBE_DIR"
fi
