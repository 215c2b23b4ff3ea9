#!/usr/bin/env bash
# Start (idempotently) the services the tests and `mlp server` use, and write .testenv/env.sh:
#   - PostgreSQL: a private cluster in .testenv/pg on 127.0.0.1:$MLP_PG_PORT (55432)
#   - Podman's Docker-compatible API on unix://.testenv/podman/podman.sock
# `scripts/services.sh stop` stops both; `clean` also removes .testenv.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# ---------------------------------------------------------------- PostgreSQL
as_postgres() { (cd / && runuser -u postgres -- "$@"); }

pg_psql() {
  as_postgres "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKDIR" -p "$PG_PORT" -U postgres -d postgres "$@"
}

start_postgres() {
  PGBIN="$(pg_bindir)"
  mkdir -p "$TESTENV"
  # postgres refuses to run as root; the cluster belongs to the postgres user, who must be able to
  # reach it. A repo under a private directory (e.g. /root, mode 700) is not reachable: then the
  # cluster lives in /var/tmp and .testenv/pg is a symlink to it.
  if [[ ! -s $PG_DATA/PG_VERSION ]]; then
    if [[ -L $PG_LINK ]]; then rm -rf --one-file-system "$PG_DIR"; fi
    rm -rf "$PG_LINK"
    if ! as_postgres test -x "$TESTENV"; then
      set_pg_dir "/var/tmp/mlplatform-pg.$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
      log "$TESTENV is not reachable by the postgres user; cluster in $PG_DIR"
      rm -rf "$PG_DIR"
      mkdir -p "$PG_DIR"
      ln -s "$PG_DIR" "$PG_LINK"
    else
      set_pg_dir "$PG_LINK"
      mkdir -p "$PG_DIR"
    fi
    chown postgres: "$PG_DIR"
    if (( ${#PG_SOCKDIR} + 18 > 107 )); then
      log "socket path too long for PostgreSQL: $PG_SOCKDIR/.s.PGSQL.$PG_PORT (max 107 bytes)"
      return 1
    fi
    log "initdb $PG_DATA"
    as_postgres "$PGBIN/initdb" -D "$PG_DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log"
    as_postgres tee -a "$PG_DATA/postgresql.conf" >/dev/null <<CONF

# --- mlplatform test cluster (scripts/services.sh)
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKDIR'
max_connections = 200
# a throwaway test cluster: durability off for speed
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
  fi
  as_postgres mkdir -p "$PG_SOCKDIR"

  if as_postgres "$PGBIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    log "PostgreSQL already running"
  else
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    # pg_ctl removes a stale postmaster.pid itself (e.g. after a reboot)
    as_postgres "$PGBIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start >/dev/null \
      || { log "PostgreSQL did not start; $PG_LOG:"; tail -n 30 "$PG_LOG" >&2; return 1; }
  fi

  local i
  for i in $(seq 1 100); do
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break
    sleep 0.1
  done
  "$PGBIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" >/dev/null || { log "pg_isready failed"; return 1; }

  # role and database (idempotent)
  if [[ -z $(pg_psql -tA -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'") ]]; then
    pg_psql -c "CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD'"
  fi
  if [[ -z $(pg_psql -tA -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") ]]; then
    pg_psql -c "CREATE DATABASE $PG_DB OWNER $PG_USER"
  fi
}

stop_postgres() {
  [[ -s $PG_DATA/PG_VERSION ]] || return 0
  PGBIN="$(pg_bindir)" || return 0
  if as_postgres "$PGBIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    log "stopping PostgreSQL"
    as_postgres "$PGBIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null
  fi
}

# ---------------------------------------------------------------- Podman API
podman_ping() { curl -sf --max-time 2 --unix-socket "$PODMAN_SOCK" http://d/_ping 2>/dev/null | grep -qx OK; }

podman_pid() {
  local pid
  [[ -f $PODMAN_PIDFILE ]] || return 1
  pid="$(cat "$PODMAN_PIDFILE")"
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && grep -q podman "/proc/$pid/cmdline" 2>/dev/null || return 1
  printf '%s\n' "$pid"
}

start_podman() {
  command -v podman >/dev/null || { log "podman not installed: run 'make install'"; return 1; }
  write_containers_conf
  # A unix socket path may not exceed 107 bytes.
  if (( ${#PODMAN_SOCK} > 107 )); then log "socket path too long (${#PODMAN_SOCK} > 107): $PODMAN_SOCK"; return 1; fi

  if podman_pid >/dev/null && podman_ping; then
    log "Podman API already running"
    return 0
  fi
  if pid="$(podman_pid)"; then  # running but not answering: restart it
    log "Podman API (pid $pid) does not answer; restarting"
    kill "$pid" 2>/dev/null || true
    sleep 1
  fi
  rm -f "$PODMAN_SOCK"
  log "starting Podman API on unix://$PODMAN_SOCK"
  # setsid + nohup: the service outlives make; --time=0: never exit when idle.
  # --chdir: conmon drops files (e.g. an "oom" marker) into the service's working directory.
  setsid nohup env --chdir="$(dirname "$PODMAN_SOCK")" CONTAINERS_CONF="$CONTAINERS_CONF" podman system service --time=0 "unix://$PODMAN_SOCK" \
    >>"$PODMAN_LOG" 2>&1 </dev/null &
  echo $! >"$PODMAN_PIDFILE"

  local i
  for i in $(seq 1 150); do
    podman_ping && return 0
    if ! kill -0 "$(cat "$PODMAN_PIDFILE")" 2>/dev/null; then break; fi
    sleep 0.2
  done
  log "Podman API did not answer; $PODMAN_LOG:"
  tail -n 30 "$PODMAN_LOG" >&2
  return 1
}

stop_podman() {
  local pid
  if pid="$(podman_pid)"; then
    log "stopping Podman API (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$PODMAN_PIDFILE" "$PODMAN_SOCK"
}

# ---------------------------------------------------------------- main
case "${1:-start}" in
  start)
    start_postgres
    # OCI registries (plain + htpasswd) for image builds, before Podman: it must read their
    # registries.conf drop-in. Pushes the environment image when it is built.
    "$ROOT/scripts/registry.sh" start
    start_podman
    write_env
    "$ROOT/scripts/registry.sh" env 2>/dev/null >>"$TESTENV/env.sh"
    cat <<MSG
services ready:
  PostgreSQL   postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB   (log: ${PG_LOG#$ROOT/})
  Podman API   unix://$PODMAN_SOCK   (log: ${PODMAN_LOG#$ROOT/})
  registries   http://127.0.0.1:${MLP_REGISTRY_PORT:-55000} (no auth), http://127.0.0.1:${MLP_REGISTRY_AUTH_PORT:-55001} (htpasswd; docker config ${TESTENV#$ROOT/}/registry/config.json)
  environment  source ${TESTENV#$ROOT/}/env.sh
MSG
    ;;
  stop)
    "$ROOT/scripts/registry.sh" stop
    stop_podman
    stop_postgres
    ;;
  clean)
    "$ROOT/scripts/registry.sh" stop
    stop_podman
    stop_postgres
    # a cluster placed outside the repo (see start_postgres) goes too
    if [[ -L $PG_LINK ]]; then rm -rf --one-file-system "$PG_DIR"; fi
    rm -rf --one-file-system "$TESTENV"
    ;;
  *)
    echo "usage: $0 [start|stop|clean]" >&2
    exit 2
    ;;
esac
