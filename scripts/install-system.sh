#!/usr/bin/env bash
# Install the system packages the project's services, images and tests need (Debian bookworm, root).
# Idempotent: apt-get runs only when a package is missing (checked with dpkg -s).
set -euo pipefail

PACKAGES=(
  # container engine: Podman's Docker-compatible API with runc (crun fails on hybrid cgroups here)
  podman runc conmon catatonit netavark aardvark-dns iptables
  uidmap slirp4netns fuse-overlayfs
  buildah skopeo
  # OCI registry for image builds (scripts/registry.sh); htpasswd (bcrypt) for its auth instance
  docker-registry apache2-utils
  # base image rootfs without a registry
  debootstrap
  # database
  postgresql
  # the scripts themselves
  curl ca-certificates openssl python3 python3-venv tar
  # the JupyterLab extension's UI tests (Playwright drives Debian's Chromium). Node.js/npm and Go
  # are not Debian's (too old): scripts/install-toolchains.sh fetches them from the registries.
  chromium
)

if [[ $(id -u) -ne 0 ]]; then
  echo "install-system.sh: must run as root (apt-get)" >&2
  exit 1
fi

# One dpkg-query for all packages (dpkg -s per package piped to grep -q is slow and, with
# pipefail, wrong: grep closing the pipe early makes the check fail).
declare -A installed=()
while read -r pkg status; do
  if [[ $status == "install ok installed" ]]; then installed[$pkg]=1; fi
done < <(dpkg-query -W -f='${Package} ${Status}\n' "${PACKAGES[@]}" 2>/dev/null || true)

missing=()
for pkg in "${PACKAGES[@]}"; do
  [[ -n ${installed[$pkg]:-} ]] || missing+=("$pkg")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "system packages: all ${#PACKAGES[@]} present"
  exit 0
fi

echo "system packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends: podman recommends dbus-user-session (pulls systemd) and crun; neither is wanted.
apt-get install -y -qq --no-install-recommends "${missing[@]}"
