#!/usr/bin/env bash
# The local hub's Node tools (tools/hub/package.json: configurable-http-proxy, JupyterHub's HTTP
# proxy for `make run`) into tools/hub/node_modules, from the lockfile; skipped when the lockfile is
# unchanged since the last install.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT/tools/hub"

STAMP=node_modules/.mlp-install-stamp
want="$(sha256sum package.json package-lock.json | sha256sum | cut -d' ' -f1)"
if [[ -f $STAMP && $(cat "$STAMP") == "$want" && -x node_modules/.bin/configurable-http-proxy ]]; then
  echo "hub tools: up to date (tools/hub/node_modules)"
  exit 0
fi
command -v npm >/dev/null || { log "npm is needed for configurable-http-proxy: run 'make system'"; exit 1; }
log "npm ci in tools/hub (configurable-http-proxy)"
npm ci --no-audit --no-fund --loglevel=error
echo "$want" >"$STAMP"
echo "hub tools: installed (tools/hub/node_modules)"
