#!/usr/bin/env bash
# Create .venv (if missing or broken) and `pip install -e '.[test]'` into it, skipping pip when
# pyproject.toml (and the interpreter) are unchanged since the last successful install.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
STAMP="$VENV/.mlp-install-stamp"

if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  [[ -e $VENV ]] && log "$VENV is broken (no working python); recreating"
  rm -rf "$VENV"
  log "creating $VENV with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi

# Content, not mtime: a fresh clone or checkout touches every file. The JupyterLab extension's
# sources count too: pip's build hook rebuilds it (labextension/build-cached.mjs) when they change.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  log "node and npm are needed to build the JupyterLab extension (labextension/): run 'make system' (scripts/install-toolchains.sh)"
  exit 1
fi
labext_hash="$(node labextension/build-cached.mjs --hash)"
want="$( { sha256sum pyproject.toml; echo "$labext_hash"; "$VENV/bin/python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
if [[ -f $STAMP && $(cat "$STAMP") == "$want" && -x $VENV/bin/mlp \
      && -f $VENV/share/jupyter/labextensions/mlplatform/package.json ]]; then
  echo "python environment: up to date ($VENV)"
  exit 0
fi

log "pip install -e '.[test]' into $VENV"
rm -f "$STAMP"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
echo "$want" >"$STAMP"
echo "python environment: installed ($VENV)"
