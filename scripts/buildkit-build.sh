#!/usr/bin/env bash
# Build rootless BuildKit's binaries once, cached by version outside the repo (like kube-build.sh):
#   buildkitd buildctl         github.com/moby/buildkit $BUILDKIT_VERSION (cmd/buildkitd, cmd/buildctl)
#   rootlesskit                github.com/rootless-containers/rootlesskit/v2 $ROOTLESSKIT_VERSION
#                              (the version buildkit's own Dockerfile pins: ARG ROOTLESSKIT_VERSION)
#   buildctl-daemonless.sh     from the buildkit module (examples/buildctl-daemonless/)
# into ${MLP_CACHE:-/var/cache/mlplatform}/buildkit-$BUILDKIT_VERSION/bin, from the Go module proxy
# (nothing else can be reached here). A stamp file, written last, marks a complete build of exactly
# these inputs; a missing/partial/stale build is rebuilt. scripts/build-images.sh puts them into the
# localhost/mlplatform/buildkit image (images/buildkit).
#   scripts/buildkit-build.sh          build if needed (prints the bin dir on stdout)
#   scripts/buildkit-build.sh --stamp  print the stamp (what the binaries are built from) and exit
# Cold: ≈ 6 min on 2 busy cores (nice -n 10, -p=2; measured 18 s modules + 322 s buildkit + 30 s
# rootlesskit); with a warm Go build cache 12 s; with the stamp: instant. See docs/rig.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

BUILDKIT_VERSION="${MLP_BUILDKIT_VERSION:-v0.24.0}"
ROOTLESSKIT_VERSION="${MLP_ROOTLESSKIT_VERSION:-v2.3.5}"
BUILDKIT_CACHE="${MLP_CACHE:-/var/cache/mlplatform}/buildkit-$BUILDKIT_VERSION"
BUILDKIT_BIN="$BUILDKIT_CACHE/bin"
BUILDKIT_STAMP="$BUILDKIT_CACHE/.complete"
BINARIES=(buildkitd buildctl rootlesskit buildctl-daemonless.sh)

# shellcheck source=scripts/go-env.sh
source "$(dirname "$0")/go-env.sh"
# buildkit's module ships vendor/modules.txt without the packages, and go.mod `exclude`s (so no
# `go install pkg@version`): it is built as the main module in the module cache, with -mod=readonly.
use_go -mod=readonly

# As upstream's Dockerfile builds them (buildkitd's tags; version stamps without a git revision).
buildkit_tags="osusergo netgo static_build seccomp"
buildkit_ldflags="-s -w -X github.com/moby/buildkit/version.Version=$BUILDKIT_VERSION"
buildkit_ldflags+=" -X github.com/moby/buildkit/version.Package=github.com/moby/buildkit"

stamp_content() {
  {
    echo "buildkit=$BUILDKIT_VERSION rootlesskit=$ROOTLESSKIT_VERSION GOFLAGS=$GOFLAGS tags=$buildkit_tags"
    echo "$buildkit_ldflags"
    "$GO" version
  } | sha256sum | cut -d' ' -f1
}

all_present() {
  local b
  for b in "${BINARIES[@]}"; do [[ -x $BUILDKIT_BIN/$b ]] || return 1; done
}

want="$(stamp_content)"
if [[ ${1:-} == --stamp ]]; then printf '%s\n' "$want"; exit 0; fi
done_already() { [[ -f $BUILDKIT_STAMP && "$(cat "$BUILDKIT_STAMP")" == "$want" ]] && all_present; }
if done_already; then printf '%s\n' "$BUILDKIT_BIN"; exit 0; fi

mkdir -p "$BUILDKIT_CACHE"
exec 9>"$BUILDKIT_CACHE/.lock"   # one build at a time per cache
flock 9
if done_already; then printf '%s\n' "$BUILDKIT_BIN"; exit 0; fi

rm -f "$BUILDKIT_STAMP"
staging="$BUILDKIT_CACHE/bin.partial"
rm -rf "$staging"
mkdir -p "$staging"
start=$SECONDS

src="$("$GO" mod download -json "github.com/moby/buildkit@$BUILDKIT_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
[[ -d $src ]] || { log "could not download github.com/moby/buildkit@$BUILDKIT_VERSION"; exit 1; }
log "building buildkitd and buildctl $BUILDKIT_VERSION (a few minutes)..."
(cd "$src" && nice -n 10 "$GO" build -tags "$buildkit_tags" -ldflags "$buildkit_ldflags" -o "$staging/" \
  ./cmd/buildkitd ./cmd/buildctl)
install -m 0755 "$src/examples/buildctl-daemonless/buildctl-daemonless.sh" "$staging/"
log "  buildkit: $((SECONDS - start))s"

t0=$SECONDS
log "building rootlesskit $ROOTLESSKIT_VERSION..."
GOBIN="$staging" GOFLAGS="${GOFLAGS% -mod=readonly}" nice -n 10 "$GO" install -ldflags "-s -w" \
  "github.com/rootless-containers/rootlesskit/v2/cmd/rootlesskit@$ROOTLESSKIT_VERSION"
log "  rootlesskit: $((SECONDS - t0))s"

"$staging/buildkitd" --version >&2
rm -rf "$BUILDKIT_BIN"
mv "$staging" "$BUILDKIT_BIN"
printf '%s\n' "$want" >"$BUILDKIT_STAMP"
log "buildkit binaries ready in $BUILDKIT_BIN ($((SECONDS - start))s)"
printf '%s\n' "$BUILDKIT_BIN"
