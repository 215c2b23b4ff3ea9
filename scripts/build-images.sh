#!/usr/bin/env bash
# Build the environment images locally (no registry can be reached, so nothing is pulled; Debian
# packages and PyPI wheels are fetched from their registries):
#   localhost/mlplatform/debian-base:<t>      debootstrap minbase + python3 and Debian's ML packages
#   localhost/mlplatform/python-deps:<t>      + images/base: JupyterLab, jupyterhub-singleuser, TensorBoard, …
#   localhost/mlplatform/deep-learning-deps:<t>  + images/deep-learning: PyTorch (CPU)
#   localhost/mlplatform/gpu-deps:<t>         + images/gpu: PyTorch's CUDA build and the CUDA runtime
#   localhost/mlplatform/hub-deps:<t>         + images/hub: KubeSpawner
# and, on each *-deps image, the final image with the mlplatform wheel (images/runtime):
#   localhost/mlplatform/{python,deep-learning,gpu,hub}:<t> (also :latest); platform = hub.
# and, on the base, rootless BuildKit for the `buildkit` builder's Job (images/buildkit; binaries from
# scripts/buildkit-build.sh, cached by version under /var/cache/mlplatform):
#   localhost/mlplatform/buildkit:<t>         (also :latest); <t> hashes the base, images/buildkit
#                                             and the binaries' build stamp
# Every <t> hashes the image's inputs (the parent's tag, its directory under images/, and for the
# final images the project's sources), so an image that exists is reused and only changed inputs
# rebuild; a code change rebuilds only the thin wheel layers.
# Writes MLP_TEST_IMAGE (python), MLP_TEST_IMAGE_{DEEP_LEARNING,GPU,HUB} and MLP_TEST_IMAGE_BUILDKIT
# into .testenv/env.sh.
# `scripts/build-images.sh prune` removes other (older) tags of these images that no container uses
# (it keeps every image :latest points at, the *-deps ones included).
# MLP_IMAGES="python hub" builds only those final images (default: all four).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

BASE_PACKAGES="python3,python3-pip,python3-tornado,python3-numpy,python3-pandas,python3-sklearn,python3-xgboost,python3-joblib,python3-yaml,ca-certificates"
SUITE="bookworm"
REPO="localhost/mlplatform"
BASE_REPO="$REPO/debian-base"
FINAL_IMAGES="${MLP_IMAGES:-python deep-learning gpu hub}"

command -v podman >/dev/null || { log "podman not installed: run 'make install'"; exit 1; }
command -v debootstrap >/dev/null || { log "debootstrap not installed: run 'make install'"; exit 1; }
write_containers_conf   # podman build/run use runc with explicit ulimits too

short_hash() { sha256sum | cut -c1-12; }

# The Debian mirror this machine's apt uses (deb822 first, then one-line format).
debian_mirror() {
  local mirror=""
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    mirror="$(awk -v suite="$SUITE" '
      BEGIN { RS = ""; FS = "\n" }
      {
        uris = ""; ok = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); split($i, u, /[ \t]+/); uris = u[1] }
          if ($i ~ /^Suites:/) { n = split($i, s, /[ \t]+/); for (j = 2; j <= n; j++) if (s[j] == suite) ok = 1 }
        }
        if (ok && uris != "") { print uris; exit }
      }' /etc/apt/sources.list.d/debian.sources)"
  fi
  if [[ -z $mirror && -f /etc/apt/sources.list ]]; then
    mirror="$(awk -v suite="$SUITE" '$1 == "deb" && $0 !~ /\[/ && $3 == suite { print $2; exit }' /etc/apt/sources.list)"
  fi
  printf '%s\n' "${mirror:-http://deb.debian.org/debian}"
}

ROOTFS=""
cleanup() {
  [[ -n $ROOTFS && -d $ROOTFS ]] || return 0
  # debootstrap mounts proc/sys inside the target; never rm -rf across a mount.
  local m
  for m in $(awk -v d="$ROOTFS" 'index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  if awk -v d="$ROOTFS" 'index($2, d "/") == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    log "not removing $ROOTFS: something is still mounted under it"
  else
    rm -rf --one-file-system "$ROOTFS"
  fi
}
trap cleanup EXIT

# One build at a time on this machine (the image store is shared by every clone).
exec 9>/run/lock/mlplatform-build-images.lock
flock 9

# ------------------------------------------------------------------ tags
# Files of a directory (or the project's sources), each with its hash, in a fixed order.
hash_files() {  # paths relative to $ROOT...
  cd "$ROOT"
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard -- "$@"
  else
    find "$@" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' ! -path '*/node_modules/*' -print0
  fi | LC_ALL=C sort -z | while IFS= read -r -d '' f; do [[ -f $f ]] && printf '%s\0' "$f"; done \
     | xargs -0 -r sha256sum
}
# The base's tag: the package list and the text of this script's "base image" section (only an
# edit there rebuilds the debootstrap base and so every image).
base_section() { sed -n '/^# -\{10,\} base image$/,/^# -\{10,\} environment images$/p' "${BASH_SOURCE[0]}"; }
BASE_TAG="$( { echo "$SUITE $BASE_PACKAGES"; base_section; } | short_hash )"
BASE_IMAGE="$BASE_REPO:$BASE_TAG"
# What goes into the mlplatform wheel.
SOURCES_HASH="$(hash_files mlplatform_server labextension jupyter-config pyproject.toml images/runtime | short_hash)"

if [[ ${1:-} == prune ]]; then
  keep="$(podman images --format '{{.Repository}}:{{.Tag}}' --filter "reference=$REPO/*:latest" |
    xargs -r podman image inspect --format '{{.Id}}' 2>/dev/null | sort -u)"
  podman images --format '{{.Repository}}:{{.Tag}} {{.Id}}' --filter "reference=$REPO/*" | sort -u |
    while read -r ref id; do
      case "$ref" in "$BASE_IMAGE"|*:latest|*:"<none>") continue ;; esac
      if grep -q "^${id}" <<<"$keep"; then continue; fi
      podman rmi "$ref" >/dev/null 2>&1 && log "removed $ref" || log "kept $ref (in use)"
    done
  exit 0
fi

# ------------------------------------------------------------------ base image
if podman image exists "$BASE_IMAGE"; then
  log "base image $BASE_IMAGE exists"
else
  MIRROR="$(debian_mirror)"
  ROOTFS="$(mktemp -d /var/tmp/mlplatform-rootfs.XXXXXX)"
  chmod 755 "$ROOTFS"
  log "debootstrap $SUITE from $MIRROR into $ROOTFS (a few minutes)"
  start=$SECONDS
  if ! debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" \
      >"$TESTENV/debootstrap.log" 2>&1; then
    log "debootstrap failed; tail of .testenv/debootstrap.log (full log: $ROOTFS/debootstrap/debootstrap.log):"
    tail -n 30 "$TESTENV/debootstrap.log" >&2
    tail -n 30 "$ROOTFS/debootstrap/debootstrap.log" >&2 2>/dev/null || true
    ROOTFS=""   # keep it for inspection
    exit 1
  fi
  log "debootstrap took $((SECONDS - start))s"
  # uid 1000 for Kubernetes (runAsUser); the image itself runs as root (see images/base/Dockerfile)
  chroot "$ROOTFS" useradd --uid 1000 --user-group --create-home --shell /bin/bash mlp
  # smaller image: no package cache or lists (the image is not meant to apt-get)
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/*.log
  log "importing $BASE_IMAGE"
  tar -C "$ROOTFS" --numeric-owner -c . | podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase --include=$BASE_PACKAGES $SUITE" \
    - "$BASE_IMAGE" >/dev/null
  cleanup
  ROOTFS=""
fi
podman tag "$BASE_IMAGE" "$BASE_REPO:latest"

# ------------------------------------------------------------------ environment images
HOST_CA=/etc/ssl/certs/ca-certificates.crt   # for pip in RUN steps (see images/base/Dockerfile)

podman_build() {  # image from context [extra podman build args...]
  local image=$1 from=$2 context=$3 start=$SECONDS
  shift 3
  local log_file="$TESTENV/image-build-${image##*/}.log"
  log_file="${log_file/:/-}"
  # (the parent is recorded by buildah itself: the org.opencontainers.image.base.name annotation)
  local args=(--pull=never --network host --build-arg "FROM_IMAGE=$from" -t "$image")
  [[ -s $HOST_CA ]] && args+=(--volume "$HOST_CA:/run/mlplatform/host-ca.crt:ro")
  args+=("$@")
  log "building $image (from $from)"
  podman build "${args[@]}" "$context" >"$log_file" 2>&1 \
    || { log "podman build of $image failed; tail of $log_file:"; tail -n 40 "$log_file" >&2; exit 1; }
  log "built $image in $((SECONDS - start))s"
}

# A dependency image from images/<dir> on top of <from>; its name in $IMAGE (no subshell, so
# that build_wheel's state survives between calls).
deps_image() {  # name dir from
  local name=$1 dir=$2 from=$3
  IMAGE="$REPO/$name:$( { echo "$from"; hash_files "images/$dir"; } | short_hash )"
  # --no-cache: requirements.txt is bind-mounted (images/base/Dockerfile), which the build cache
  # cannot see; a missing tag means images/<dir> changed anyway.
  podman image exists "$IMAGE" || podman_build "$IMAGE" "$from" "$ROOT/images/$dir" --no-cache
  podman tag "$IMAGE" "$REPO/$name:latest"   # so that `prune` keeps the current one
}

WHEEL_DIR=""
# The mlplatform wheel (with the prebuilt JupyterLab extension), built once per run when needed.
build_wheel() {
  [[ -n $WHEEL_DIR ]] && return 0
  WHEEL_DIR="$TESTENV/image-wheel"
  rm -rf "$WHEEL_DIR"; mkdir -p "$WHEEL_DIR"
  local pip="$ROOT/.venv/bin/pip"
  [[ -x $pip ]] || { log ".venv missing: run 'make install'"; exit 1; }
  log "building the mlplatform wheel"
  "$pip" wheel --quiet --no-deps -w "$WHEEL_DIR" "$ROOT" >"$TESTENV/image-wheel.log" 2>&1 \
    || { log "wheel build failed:"; tail -n 40 "$TESTENV/image-wheel.log" >&2; exit 1; }
  cp "$ROOT/images/runtime/Dockerfile" "$WHEEL_DIR/Dockerfile"
}

# The final image <name>: <deps> + the mlplatform wheel; tagged :latest too; its name in $IMAGE.
final_image() {  # name deps
  local name=$1 deps=$2
  IMAGE="$REPO/$name:$( { echo "$deps"; echo "$SOURCES_HASH"; } | short_hash )"
  if ! podman image exists "$IMAGE"; then
    build_wheel
    # --no-cache: the wheel is bind-mounted (images/runtime), so the build cache cannot see that it
    # changed and would reuse the layer of an older wheel.
    podman_build "$IMAGE" "$deps" "$WHEEL_DIR" --no-cache
  fi
  podman tag "$IMAGE" "$REPO/$name:latest"
}

declare -A FINAL
IMAGE=""
deps_image python-deps base "$BASE_IMAGE"
PY_DEPS="$IMAGE"
for name in $FINAL_IMAGES; do
  case "$name" in
    python) IMAGE="$PY_DEPS" ;;
    deep-learning|gpu|hub) deps_image "$name-deps" "$name" "$PY_DEPS" ;;
    *) log "unknown image '$name' in MLP_IMAGES (expected python, deep-learning, gpu, hub)"; exit 1 ;;
  esac
  final_image "$name" "$IMAGE"
  FINAL[$name]="$IMAGE"
done
if [[ -n ${FINAL[hub]:-} ]]; then podman tag "${FINAL[hub]}" "$REPO/platform:latest"; fi
[[ -n $WHEEL_DIR ]] && rm -rf "$WHEEL_DIR"

# ------------------------------------------------------------------ buildkit image
# After the environment images' section: nothing here changes their tags.
buildkit_image() {
  local bin stamp context="$TESTENV/image-buildkit"
  stamp="$("$ROOT/scripts/buildkit-build.sh" --stamp)"
  IMAGE="$REPO/buildkit:$( { echo "$BASE_IMAGE"; hash_files images/buildkit; echo "$stamp"; } | short_hash )"
  if ! podman image exists "$IMAGE"; then
    bin="$("$ROOT/scripts/buildkit-build.sh")"
    rm -rf "$context"; mkdir -p "$context"
    cp -r "$ROOT/images/buildkit/." "$context/"
    cp -a "$bin" "$context/bin"
    podman_build "$IMAGE" "$BASE_IMAGE" "$context"
    rm -rf "$context"
  fi
  podman tag "$IMAGE" "$REPO/buildkit:latest"
}
buildkit_image
BUILDKIT_IMAGE="$IMAGE"

{
  [[ -n ${FINAL[python]:-} ]] && echo "MLP_TEST_IMAGE=${FINAL[python]}"
  [[ -n ${FINAL[deep-learning]:-} ]] && echo "MLP_TEST_IMAGE_DEEP_LEARNING=${FINAL[deep-learning]}"
  [[ -n ${FINAL[gpu]:-} ]] && echo "MLP_TEST_IMAGE_GPU=${FINAL[gpu]}"
  [[ -n ${FINAL[hub]:-} ]] && echo "MLP_TEST_IMAGE_HUB=${FINAL[hub]}"
  echo "MLP_TEST_IMAGE_BUILDKIT=$BUILDKIT_IMAGE"
  true
} >"$IMAGE_ENV"
write_env
for name in $FINAL_IMAGES; do echo "image ready: ${FINAL[$name]} (also :latest)"; done
echo "image ready: $BUILDKIT_IMAGE (also :latest)"
