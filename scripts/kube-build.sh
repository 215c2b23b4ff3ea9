#!/usr/bin/env bash
# Build the Kubernetes test control plane's binaries once, cached by version outside the repo:
#   kube-apiserver kube-controller-manager kube-scheduler kubectl  k8s.io/kubernetes (hack/kube)
#   etcd                                   the version k8s.io/kubernetes pins     (hack/kube/etcd)
#   kwok                                   sigs.k8s.io/kwok/cmd/kwok   (go install, own go.mod)
#   helm                                   helm.sh/helm/v3/cmd/helm    (go install, own go.mod)
# into ${MLP_CACHE:-/var/cache/mlplatform}/kube-v1.34.4/bin. A stamp file, written last, marks a
# complete build of exactly these inputs; a missing/partial/stale build is rebuilt.
#   scripts/kube-build.sh            build if needed (prints the bin dir on stdout)
#   scripts/kube-build.sh --force    rebuild everything
# Cold: ~15-25 min on 2 cores (nice -n 10, -p=2); warm: instant. See docs/kube-rig.md.
set -euo pipefail
# shellcheck source=hack/kube/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../hack/kube/lib.sh"

force=0
[[ ${1:-} == --force ]] && force=1

# shellcheck source=scripts/go-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-env.sh"
use_go   # keeps the two cores for the others with -p; the builds also run under nice

# Version stamps as upstream's hack/lib/version.sh sets them, or the server says v0.0.0-master.
minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

kwok_ldflags="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"

helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
helm_ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"

# kwok's stages as `kwok --config` files: kwok drops ALL its default pod stages as soon as a config
# holds one pod Stage, so the config re-supplies the defaults (pod-ready, pod-complete, pod-delete,
# from kwok's own kustomize/stage/pod/fast at $KWOK_VERSION) plus its "chaos" stage
# pod-container-running-failed (a Running pod labelled
# pod-container-running-failed.stage.kwok.x-k8s.io=true goes to Failed; weight 10000 beats
# pod-complete). See docs/kube-rig.md.
write_kwok_stages() {
  local out="$1" dir f
  dir="$("$GO" mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  : >"$out"
  for f in pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete \
           pod/chaos/pod-container-running-failed; do
    [[ -f $dir/kustomize/stage/$f.yaml ]] || { log "kwok $KWOK_VERSION has no stage $f"; return 1; }
    { echo "# kwok $KWOK_VERSION kustomize/stage/$f.yaml"; cat "$dir/kustomize/stage/$f.yaml"; echo "---"; } >>"$out"
  done
}

# What the stamp certifies: versions, flags, the wrapper module and the Go version. A change to
# any of them rebuilds (the Go build cache makes that mostly a relink).
stamp_content() {
  {
    echo "kubernetes=$KUBE_VERSION kwok=$KWOK_VERSION helm=$HELM_VERSION GOFLAGS=$GOFLAGS"
    echo "$kube_ldflags"; echo "$kwok_ldflags"; echo "$helm_ldflags"
    "$GO" version
    cat "$ROOT/hack/kube/go.mod" "$ROOT/hack/kube/go.sum" "$ROOT/hack/kube/etcd/main.go"
    declare -f write_kwok_stages
  } | sha256sum | cut -d' ' -f1
}

all_present() {
  local b
  for b in "${KUBE_BINARIES[@]}"; do [[ -x $KUBE_BIN/$b ]] || return 1; done
  [[ -s $KUBE_BIN/kwok-stages.yaml ]]
}

want="$(stamp_content)"
if [[ $force == 0 && -f $KUBE_STAMP && "$(cat "$KUBE_STAMP")" == "$want" ]] && all_present; then
  printf '%s\n' "$KUBE_BIN"
  exit 0
fi

mkdir -p "$KUBE_CACHE"
# One build at a time per cache (two clones running make kube-up at once).
exec 9>"$KUBE_CACHE/.lock"
flock 9
# Another build may have finished while we waited.
if [[ $force == 0 && -f $KUBE_STAMP && "$(cat "$KUBE_STAMP")" == "$want" ]] && all_present; then
  printf '%s\n' "$KUBE_BIN"
  exit 0
fi

rm -f "$KUBE_STAMP"
staging="$KUBE_CACHE/bin.partial"
rm -rf "$staging"
mkdir -p "$staging"
start=$SECONDS
build="nice -n 10 $GO"

t0=$SECONDS
log "building kube-apiserver kube-controller-manager kube-scheduler kubectl etcd ($KUBE_VERSION)..."
(cd "$ROOT/hack/kube" &&
  $build build -ldflags "$kube_ldflags" -o "$staging/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl \
    ./etcd)
log "  kubernetes + etcd: $((SECONDS - t0))s"

# kwok and helm have no replace directives, so `go install module@version` builds them with their
# own go.mod/go.sum (helm v3.22 needs k8s.io/* v0.37, kwok v0.7 v0.33: they cannot share hack/kube).
t0=$SECONDS
log "building kwok $KWOK_VERSION..."
GOBIN="$staging" $build install -ldflags "$kwok_ldflags" \
  "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
log "  kwok: $((SECONDS - t0))s"

t0=$SECONDS
log "building helm $HELM_VERSION..."
# helm's Makefile sets the Kubernetes version it assumes (chartutil's default capabilities, the
# linter) from its own k8s.io/client-go requirement; do the same.
helm_mod="$("$GO" mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
helm_k8s_minor="$(awk '$1 == "k8s.io/client-go" {print $2}' "$helm_mod" | cut -d. -f2)"
[[ $helm_k8s_minor =~ ^[0-9]+$ ]] || { log "cannot read helm's k8s.io/client-go version"; exit 1; }
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$helm_k8s_minor"
done
GOBIN="$staging" $build install -ldflags "$helm_ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
log "  helm: $((SECONDS - t0))s"

write_kwok_stages "$staging/kwok-stages.yaml"
for b in "${KUBE_BINARIES[@]}"; do
  [[ -x $staging/$b ]] || { log "missing $b after the build"; exit 1; }
done
rm -rf "$KUBE_BIN"
mv "$staging" "$KUBE_BIN"
printf '%s\n' "$want" >"$KUBE_STAMP"
log "built in $((SECONDS - start))s; $(du -sh "$KUBE_BIN" | cut -f1) in $KUBE_BIN"
printf '%s\n' "$KUBE_BIN"
