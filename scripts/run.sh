#!/usr/bin/env bash
# `make run`: JupyterHub on one machine, on the embedded defaults, against the services from
# scripts/services.sh: log in with the printed password, pick an environment and a hardware size,
# get JupyterLab with the mlplatform extension; the platform API runs as the hub service
# `mlplatform` (jupyter-config/jupyterhub_local_config.py). MLP_RUN_MODE=lab: no hub, one
# JupyterLab as the platform's admin (the former `make run`). Prints the URLs, passwords and
# tokens, then stays in the foreground until Ctrl-C, which stops everything.
#
# Settings (environment): MLP_PORT (8000, the platform API), MLP_HUB_PORT (MLP_LAB_PORT or 8888:
# the hub, or JupyterLab in lab mode), MLP_HUB_API_PORT (8081), MLP_PROXY_API_PORT (8001),
# MLP_DATA_DIR (.mlp-data), MLP_BACKEND (auto: docker when Podman/Docker answers, else process),
# MLP_NOTEBOOK_DIR (., lab mode), MLP_RUN_MODE (hub | lab).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
[[ -f $TESTENV/env.sh ]] || { log "no .testenv/env.sh: run 'make services' first"; exit 1; }
source "$TESTENV/env.sh"

port=${MLP_PORT:-8000}
lab_port=${MLP_HUB_PORT:-${MLP_LAB_PORT:-8888}}
mode=${MLP_RUN_MODE:-hub}
[[ $mode == hub || $mode == lab ]] || { log "MLP_RUN_MODE=$mode: expected hub or lab"; exit 1; }
hub_api_port=${MLP_HUB_API_PORT:-8081}
data_dir=$(realpath -m "${MLP_DATA_DIR:-.mlp-data}")
backend=${MLP_BACKEND:-auto}
notebook_dir=$(realpath "${MLP_NOTEBOOK_DIR:-.}")
mkdir -p "$data_dir"

# Secrets are kept in the data dir (mode 0600) so they survive restarts.
secret() {  # FILE [LENGTH]: the secret kept in FILE, made once
  [[ -s $1 ]] || (umask 077; python3 -c "import secrets; print(secrets.token_urlsafe(${2:-32}))" >"$1")
  cat "$1"
}
# wait_up URL PID LOG TRIES: until URL answers (0.2 s apart); LOG's tail and exit 1 if PID dies or time runs out.
wait_up() {
  for _ in $(seq 1 "$4"); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.2
  done
  tail -20 "$3"
  exit 1
}
token_file="$data_dir/admin-token"
MLP_TOKEN=$(secret "$token_file")
lab_token=$(secret "$data_dir/lab-token" 24)
export MLP_TOKEN MLP_URL="http://127.0.0.1:$port"

# hub mode: the passwords (users', admin's) and the platform's service token.
server_env=()
if [[ $mode == hub ]]; then
  chp=${MLP_CHP:-$ROOT/tools/hub/node_modules/.bin/configurable-http-proxy}
  [[ -x $chp ]] || { log "no configurable-http-proxy at $chp: run 'make install' (scripts/install-hub-tools.sh)"; exit 1; }
  export MLP_CHP=$chp
  MLP_HUB_PASSWORD=$(secret "$data_dir/hub-password" 12)
  MLP_HUB_ADMIN_PASSWORD=$(secret "$data_dir/hub-admin-password" 24)  # the hub wants 32+ characters
  MLP_SERVICE_API_TOKEN=$(secret "$data_dir/service-token")
  export MLP_HUB_PASSWORD MLP_HUB_ADMIN_PASSWORD MLP_SERVICE_API_TOKEN
  server_env=(JUPYTERHUB_API_URL="http://127.0.0.1:$hub_api_port/hub/api"
              JUPYTERHUB_API_TOKEN="$MLP_SERVICE_API_TOKEN" JUPYTERHUB_SERVICE_NAME=mlplatform)
fi

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

env "${server_env[@]}" "$ROOT/.venv/bin/mlp" server --backend "$backend" --data-dir "$data_dir" --port "$port" \
  >>"$data_dir/server.log" 2>&1 &
pids+=($!)
wait_up "http://127.0.0.1:$port/api/v1/health" "${pids[0]}" "$data_dir/server.log" 150

backend_name=$(curl -fsS "http://127.0.0.1:$port/api/v1/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["backend"])')

if [[ $mode == hub ]]; then
  mkdir -p "$data_dir/hub"
  # The hub stops its proxy and the users' servers when it stops.
  (cd "$data_dir/hub" && exec env MLP_DATA_DIR="$data_dir" MLP_PLATFORM_URL="http://127.0.0.1:$port" \
     MLP_HUB_PORT="$lab_port" MLP_HUB_API_PORT="$hub_api_port" \
     MLP_HUB_ENGINE=$([[ $backend_name == docker ]] && echo 1 || echo 0) \
     "$ROOT/.venv/bin/jupyterhub" -f "$ROOT/jupyter-config/jupyterhub_local_config.py") \
    >>"$data_dir/hub.log" 2>&1 &
  pids+=($!)
  wait_up "http://127.0.0.1:$lab_port/hub/health" "${pids[1]}" "$data_dir/hub.log" 300
  cat <<EOT

  mlplatform is running (JupyterHub; backend: $backend_name, data: $data_dir)

  JupyterHub     http://127.0.0.1:$lab_port/hub/login
  Password       $MLP_HUB_PASSWORD   (any user name; kept in $data_dir/hub-password)
  Admin          user admin, password $MLP_HUB_ADMIN_PASSWORD   ($data_dir/hub-admin-password)
  Platform API   http://127.0.0.1:$port/api/v1   (the hub service mlplatform; OpenAPI: /api/v1/openapi.json)
  CLI            export MLP_URL=http://127.0.0.1:$port MLP_TOKEN=\$(cat $token_file)
                 .venv/bin/mlp profiles      (in a notebook's terminal mlp is already set up)
  Logs           $data_dir/server.log  $data_dir/hub.log

  Ctrl-C stops everything.
EOT
  wait -n "${pids[@]}"
  exit
fi

# JupyterLab talks to the platform through the extension's relay, as the admin user here.
"$ROOT/.venv/bin/jupyter" lab --no-browser --ip 127.0.0.1 --port "$lab_port" --port-retries 0 \
  --IdentityProvider.token="$lab_token" --ServerApp.root_dir="$notebook_dir" \
  $([[ $(id -u) == 0 ]] && echo --allow-root) \
  >>"$data_dir/lab.log" 2>&1 &
pids+=($!)
wait_up "http://127.0.0.1:$lab_port/api/status?token=$lab_token" "${pids[1]}" "$data_dir/lab.log" 300

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
