#!/usr/bin/env bash
# What `make test` needs besides install and services: the environment images (pushed to the test
# registry) and the Kubernetes control plane. The two are independent and, on a fresh machine, the
# slowest steps (images ≈ 15 min, mostly downloads and unpacking; the Kubernetes build ≈ 20 min of
# compiling), so they run side by side. Cached runs take seconds either way.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

mkdir -p "$TESTENV"
images_log="$TESTENV/build-images.log"
"$ROOT/scripts/build-images.sh" >"$images_log" 2>&1 &
images_pid=$!
trap 'kill "$images_pid" 2>/dev/null || true' EXIT

kube_status=0
"$ROOT/scripts/kube-up.sh" || kube_status=$?
images_status=0
wait "$images_pid" || images_status=$?
trap - EXIT
cat "$images_log" >&2
if (( images_status != 0 )); then log "scripts/build-images.sh failed (exit $images_status)"; exit "$images_status"; fi
if (( kube_status != 0 )); then log "scripts/kube-up.sh failed (exit $kube_status)"; exit "$kube_status"; fi
"$ROOT/scripts/registry.sh" start
