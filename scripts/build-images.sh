#!/usr/bin/env bash
# Build the environment images locally (no registry can be reached, so nothing is pulled):
#   localhost/mlplatform/debian-base:<tag>   debootstrap minbase + python3 and the ML packages
#   localhost/mlplatform/python:<tag2>       base + mlplatform_server in /opt/mlplatform (also :latest)
# <tag> hashes the package list and this script; <tag2> hashes <tag>, images/base/Dockerfile and
# mlplatform_server/. An image that exists is reused, so only changed inputs rebuild.
# Writes MLP_TEST_IMAGE into .testenv/env.sh.
# `scripts/build-images.sh prune` removes other (older) tags of these two images that no container uses.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

BASE_PACKAGES="python3,python3-tornado,python3-numpy,python3-sklearn,python3-joblib,python3-yaml,ca-certificates"
SUITE="bookworm"
BASE_REPO="localhost/mlplatform/debian-base"
PY_REPO="localhost/mlplatform/python"

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

# ------------------------------------------------------------------ base image
BASE_TAG="$( { echo "$SUITE $BASE_PACKAGES"; cat "${BASH_SOURCE[0]}"; } | short_hash )"
BASE_IMAGE="$BASE_REPO:$BASE_TAG"
PY_TAG="$( {
  echo "$BASE_TAG"
  cat "$ROOT/images/base/Dockerfile"
  cd "$ROOT"
  find mlplatform_server -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z \
    | xargs -0 sha256sum
} | short_hash )"
PY_IMAGE="$PY_REPO:$PY_TAG"

if [[ ${1:-} == prune ]]; then
  podman images --format '{{.Repository}}:{{.Tag}}' --filter "reference=localhost/mlplatform/*" | sort -u |
    while read -r ref; do
      case "$ref" in "$BASE_IMAGE"|"$PY_IMAGE"|*:latest|*:"<none>") continue ;; esac
      podman rmi "$ref" >/dev/null 2>&1 && log "removed $ref" || log "kept $ref (in use)"
    done
  exit 0
fi

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

# ------------------------------------------------------------------ python image

if podman image exists "$PY_IMAGE"; then
  log "image $PY_IMAGE exists"
else
  CTX="$TESTENV/image-context"
  rm -rf "$CTX"
  mkdir -p "$CTX"
  cp "$ROOT/images/base/Dockerfile" "$CTX/Dockerfile"
  tar -C "$ROOT" --exclude='__pycache__' --exclude='*.pyc' -c mlplatform_server | tar -C "$CTX" -x
  log "building $PY_IMAGE"
  podman build --pull=never --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --label "mlplatform.base=$BASE_IMAGE" --label "mlplatform.tag=$PY_TAG" \
    -t "$PY_IMAGE" "$CTX" >"$TESTENV/image-build.log" 2>&1 \
    || { log "podman build failed:"; cat "$TESTENV/image-build.log" >&2; exit 1; }
  rm -rf "$CTX"
  log "checking $PY_IMAGE"
  podman run --rm --network host "$PY_IMAGE" \
    python3 -c "import tornado, sklearn, mlplatform_server; print('ok')"
fi
podman tag "$PY_IMAGE" "$PY_REPO:latest"

echo "MLP_TEST_IMAGE=$PY_IMAGE" >"$IMAGE_ENV"
write_env
echo "images ready: $PY_IMAGE (also :latest), base $BASE_IMAGE"
