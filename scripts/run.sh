#!/usr/bin/env bash
# `make run`: the platform API and JupyterLab (with the mlplatform extension) on the embedded
# defaults, against the services from scripts/services.sh. Prints the URLs and tokens, then
# stays in the foreground until Ctrl-C, which stops both.
#
# Settings (environment): MLP_PORT (8000), MLP_LAB_PORT (8888), MLP_DATA_DIR (.mlp-data),
# MLP_BACKEND (auto: docker when Podman/Docker answers, else process), MLP_NOTEBOOK_DIR (.).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
[[ -f $TESTENV/env.sh ]] || { log "no .testenv/env.sh: run 'make services' first"; exit 1; }
source "$TESTENV/env.sh"

port=${MLP_PORT:-8000}
lab_port=${MLP_LAB_PORT:-8888}
data_dir=$(realpath -m "${MLP_DATA_DIR:-.mlp-data}")
backend=${MLP_BACKEND:-auto}
notebook_dir=$(realpath "${MLP_NOTEBOOK_DIR:-.}")
mkdir -p "$data_dir"

# The admin token: kept in the data dir (mode 0600) so it survives restarts.
token_file="$data_dir/admin-token"
if [[ ! -s $token_file ]]; then
  (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(32))' >"$token_file")
fi
lab_token_file="$data_dir/lab-token"
if [[ ! -s $lab_token_file ]]; then
  (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(24))' >"$lab_token_file")
fi
MLP_TOKEN=$(cat "$token_file")
lab_token=$(cat "$lab_token_file")
export MLP_TOKEN MLP_URL="http://127.0.0.1:$port"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"$ROOT/.venv/bin/mlp" server --backend "$backend" --data-dir "$data_dir" --port "$port" \
  >>"$data_dir/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 150); do
  curl -fsS "http://127.0.0.1:$port/api/v1/health" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { tail -20 "$data_dir/server.log"; exit 1; }
  sleep 0.2
done

# JupyterLab talks to the platform through the extension's relay, as the admin user here.
"$ROOT/.venv/bin/jupyter" lab --no-browser --ip 127.0.0.1 --port "$lab_port" --port-retries 0 \
  --IdentityProvider.token="$lab_token" --ServerApp.root_dir="$notebook_dir" \
  $([[ $(id -u) == 0 ]] && echo --allow-root) \
  >>"$data_dir/lab.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  curl -fsS "http://127.0.0.1:$lab_port/api/status?token=$lab_token" >/dev/null 2>&1 && break
  kill -0 "${pids[1]}" 2>/dev/null || { tail -20 "$data_dir/lab.log"; exit 1; }
  sleep 0.2
done

backend_name=$(curl -fsS "http://127.0.0.1:$port/api/v1/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["backend"])')
cat <<EOF

  mlplatform is running (backend: $backend_name, data: $data_dir)

  JupyterLab     http://127.0.0.1:$lab_port/lab?token=$lab_token
  Platform API   http://127.0.0.1:$port/api/v1   (OpenAPI: /api/v1/openapi.json)
  CLI            export MLP_URL=http://127.0.0.1:$port MLP_TOKEN=\$(cat $token_file)
                 .venv/bin/mlp profiles
  Logs           $data_dir/server.log  $data_dir/lab.log

  Ctrl-C stops both.
EOF
wait -n "${pids[@]}"
