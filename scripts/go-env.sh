# shellcheck shell=bash
# The Go toolchain that builds the test rig's binaries from the Go module proxy (sourced by
# scripts/kube-build.sh and scripts/buildkit-build.sh after their lib.sh, which defines `log`).
# Sets GO and exports the settings every such build shares: never switch toolchains behind our
# back, static binaries, and -p (MLP_GO_P, default 2) so the builds leave cores to the others.
# Extra GOFLAGS may be given as arguments.
use_go() {
  GO="${GO:-$(command -v go || true)}"
  [[ -n $GO && -x $GO ]] || GO=/usr/local/go/bin/go
  [[ -x $GO ]] || GO="${MLP_TOOLCHAINS:-/opt/mlplatform}/go/bin/go"   # scripts/install-toolchains.sh
  [[ -x $GO ]] || { log "no Go toolchain (go on PATH, /usr/local/go or /opt/mlplatform/go): run 'make install'"; exit 1; }
  export GOTOOLCHAIN=local
  export GOFLAGS="-p=${MLP_GO_P:-2} -buildvcs=false -trimpath${*:+ $*}"
  export CGO_ENABLED=0
}
