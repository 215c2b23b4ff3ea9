#!/usr/bin/env bash
# Local OCI registries for image builds (Debian's docker-registry, the distribution registry v2):
#   127.0.0.1:$MLP_REGISTRY_PORT (55000)       no auth, storage .testenv/registry/plain
#   127.0.0.1:$MLP_REGISTRY_AUTH_PORT (55001)  htpasswd auth (user mlp, password generated once into
#                                              .testenv/registry/password), storage .testenv/registry/auth
# and pushes the environment image $MLP_TEST_IMAGE (from build-images.sh) into both as
# <registry>/mlplatform/python:<tag>, and $MLP_TEST_IMAGE_DEEP_LEARNING into the plain one as
# mlplatform/deep-learning:<tag>, each only when the registry does not have it yet.
#   scripts/registry.sh [start]   start both (idempotent) and push the image if it is built
#   scripts/registry.sh env       like start, then print the export lines for .testenv/env.sh
#   scripts/registry.sh stop      stop both
# Writes .testenv/registry/config.json (a docker config.json with the credentials of the auth one) and
# .testenv/registry/registry.env (the export lines).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

REG_DIR="$TESTENV/registry"
PLAIN_PORT="${MLP_REGISTRY_PORT:-55000}"
AUTH_PORT="${MLP_REGISTRY_AUTH_PORT:-55001}"
REG_USER="mlp"
AUTH_FILE="$REG_DIR/config.json"
REGISTRY_BIN="$(command -v docker-registry || echo /usr/bin/docker-registry)"

# The test registries speak plain HTTP: tell Podman (a registries.conf drop-in, read by every new
# podman process; a Podman API service started before it was written must be restarted).
REGISTRIES_DROPIN="/etc/containers/registries.conf.d/50-mlplatform-test-registries.conf"
write_registries_conf() {
  local tmp
  tmp="$(mktemp)"
  {
    echo "# Written by mlplatform's scripts/registry.sh: the test registries on loopback speak plain HTTP."
    for port in "$PLAIN_PORT" "$AUTH_PORT"; do
      printf '[[registry]]\nlocation = "127.0.0.1:%s"\ninsecure = true\n\n' "$port"
    done
  } >"$tmp"
  if cmp -s "$tmp" "$REGISTRIES_DROPIN" 2>/dev/null; then rm -f "$tmp"; return 0; fi
  mkdir -p "$(dirname "$REGISTRIES_DROPIN")"
  chmod 644 "$tmp"
  mv "$tmp" "$REGISTRIES_DROPIN"
  log "wrote $REGISTRIES_DROPIN (a running Podman API service reads it only after a restart)"
}

reg_ping() {  # 200 (plain) or 401 (auth) from /v2/ means the registry answers
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/v2/" 2>/dev/null || true)"
  [[ $code == 200 || $code == 401 ]]
}

reg_pid() {
  local pidfile="$REG_DIR/$1.pid" pid
  [[ -f $pidfile ]] || return 1
  pid="$(cat "$pidfile")"
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && grep -q registry "/proc/$pid/cmdline" 2>/dev/null || return 1
  printf '%s\n' "$pid"
}

write_auth() {
  mkdir -p "$REG_DIR"
  if [[ ! -s $REG_DIR/password ]]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$REG_DIR/password")
  fi
  local password
  password="$(cat "$REG_DIR/password")"
  if [[ ! -s $REG_DIR/htpasswd ]] || ! htpasswd -vb "$REG_DIR/htpasswd" "$REG_USER" "$password" >/dev/null 2>&1; then
    htpasswd -Bbn "$REG_USER" "$password" >"$REG_DIR/htpasswd"
  fi
  local b64
  b64="$(printf '%s:%s' "$REG_USER" "$password" | base64 -w0)"
  (umask 077; printf '{"auths": {"127.0.0.1:%s": {"auth": "%s"}}}\n' "$AUTH_PORT" "$b64" >"$AUTH_FILE.tmp")
  mv "$AUTH_FILE.tmp" "$AUTH_FILE"
}

start_one() {  # name port [htpasswd]
  local name="$1" port="$2" auth="${3:-}" cfg="$REG_DIR/$1.yml"
  mkdir -p "$REG_DIR/$name"
  {
    echo "version: 0.1"
    echo "log: {level: warn, accesslog: {disabled: true}}"
    echo "storage:"
    echo "  filesystem: {rootdirectory: $REG_DIR/$name}"
    echo "  delete: {enabled: true}"
    echo "http: {addr: 127.0.0.1:$port}"
    if [[ -n $auth ]]; then echo "auth: {htpasswd: {realm: mlplatform-test, path: $auth}}"; fi
  } >"$cfg"
  if reg_pid "$name" >/dev/null && reg_ping "$port"; then
    log "registry $name already running on 127.0.0.1:$port"
    return 0
  fi
  if reg_ping "$port"; then
    log "something else answers as a registry on 127.0.0.1:$port (another clone?): set MLP_REGISTRY_PORT/MLP_REGISTRY_AUTH_PORT"
    return 1
  fi
  local pid
  if pid="$(reg_pid "$name")"; then kill "$pid" 2>/dev/null || true; sleep 0.5; fi
  [[ -x $REGISTRY_BIN ]] || { log "docker-registry not installed: run 'make install'"; return 1; }
  log "starting registry $name on 127.0.0.1:$port"
  setsid nohup "$REGISTRY_BIN" serve "$cfg" >>"$REG_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$REG_DIR/$name.pid"
  local i
  for i in $(seq 1 100); do
    reg_ping "$port" && return 0
    kill -0 "$(cat "$REG_DIR/$name.pid")" 2>/dev/null || break
    sleep 0.1
  done
  log "registry $name did not answer; $REG_DIR/$name.log:"
  tail -n 20 "$REG_DIR/$name.log" >&2
  return 1
}

stop_one() {
  local pid
  if pid="$(reg_pid "$1")"; then
    log "stopping registry $1 (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$REG_DIR/$1.pid"
}

test_image() {  # variable name in .testenv/image.env (MLP_TEST_IMAGE, MLP_TEST_IMAGE_DEEP_LEARNING)
  local image="${!1:-}"
  if [[ -z $image && -f $IMAGE_ENV ]]; then image="$(sed -n "s/^$1=//p" "$IMAGE_ENV")"; fi
  printf '%s\n' "$image"
}

has_manifest() {  # port repo tag [user:password]
  local code args=(-s -o /dev/null -w '%{http_code}' --max-time 5 -I
    -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json')
  if [[ -n ${4:-} ]]; then args+=(-u "$4"); fi
  code="$(curl "${args[@]}" "http://127.0.0.1:$1/v2/$2/manifests/$3" || true)"
  [[ $code == 200 ]]
}

# Push a locally built image into the plain registry as <repo>:<its tag>; prints the reference.
push_plain() {  # image repo
  local image=$1 repo=$2 tag="${1##*:}"
  if has_manifest "$PLAIN_PORT" "$repo" "$tag"; then
    log "127.0.0.1:$PLAIN_PORT/$repo:$tag already pushed"
  else
    log "pushing $image to 127.0.0.1:$PLAIN_PORT/$repo:$tag"
    local start=$SECONDS
    podman push --quiet --tls-verify=false "$image" "docker://127.0.0.1:$PLAIN_PORT/$repo:$tag" >&2
    log "pushed in $((SECONDS - start))s"
  fi
  printf '%s\n' "127.0.0.1:$PLAIN_PORT/$repo:$tag"
}

push_images() {
  local image tag repo="mlplatform/python"
  exec 8>/run/lock/mlplatform-registry-push.$PLAIN_PORT.lock
  flock 8
  image="$(test_image MLP_TEST_IMAGE_DEEP_LEARNING)"
  if [[ -n $image ]]; then DL_REF="$(push_plain "$image" mlplatform/deep-learning)"; fi
  image="$(test_image MLP_TEST_IMAGE)"
  if [[ -z $image ]]; then log "no MLP_TEST_IMAGE yet (run scripts/build-images.sh): nothing pushed"; return 0; fi
  tag="${image##*:}"
  BASE_REF="$(push_plain "$image" "$repo")"
  local creds
  creds="$REG_USER:$(cat "$REG_DIR/password")"
  if has_manifest "$AUTH_PORT" "$repo" "$tag" "$creds"; then
    log "127.0.0.1:$AUTH_PORT/$repo:$tag already copied"
  else
    log "copying it to 127.0.0.1:$AUTH_PORT/$repo:$tag"
    skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false --dest-creds "$creds" \
      "docker://$BASE_REF" "docker://127.0.0.1:$AUTH_PORT/$repo:$tag" >&2
  fi
}

print_env() {
  echo "export MLP_TEST_REGISTRY='127.0.0.1:$PLAIN_PORT'"
  echo "export MLP_TEST_REGISTRY_AUTH='127.0.0.1:$AUTH_PORT'"
  echo "export MLP_TEST_REGISTRY_AUTH_FILE='$AUTH_FILE'"
  if [[ -n ${BASE_REF:-} ]]; then echo "export MLP_TEST_BASE_REF='$BASE_REF'"; fi
  if [[ -n ${DL_REF:-} ]]; then echo "export MLP_TEST_DEEP_LEARNING_REF='$DL_REF'"; fi
}

BASE_REF=""
DL_REF=""
case "${1:-start}" in
  start|env)
    write_registries_conf
    write_auth
    start_one plain "$PLAIN_PORT"
    start_one auth "$AUTH_PORT" "$REG_DIR/htpasswd"
    push_images
    # for .testenv/env.sh (lib.sh's write_env, also run by services.sh and build-images.sh): rewritten
    # here too, or `make images` (build-images.sh, then this) would leave the old MLP_TEST_BASE_REF
    print_env >"$REG_DIR/registry.env"
    write_env
    if [[ ${1:-start} == env ]]; then print_env; fi
    ;;
  stop)
    stop_one plain
    stop_one auth
    ;;
  *)
    echo "usage: $0 [start|env|stop]" >&2
    exit 2
    ;;
esac
