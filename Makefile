# Install, services and tests on one Debian bookworm machine, as root (see docs/rig.md).
#   make install    system packages (apt, only when missing) + .venv with pip install -e '.[test]'
#   make services   PostgreSQL on 127.0.0.1:55432 + Podman's Docker API; writes .testenv/env.sh
#   make images     the environment images, built locally (debootstrap + podman build)
#   make kube-up    a real Kubernetes 1.34 control plane with kwok nodes (built once, cached)
#   make test       all of the above, then pytest (PYTEST_ARGS)
#   make run        JupyterHub on :8888 (login with the printed password) and the platform API on :8000
#   make clean      stop the services, remove .testenv
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
# The targets share .testenv/env.sh and the apt lock; running them in parallel gains nothing.
.NOTPARALLEL:

VENV        := .venv
PYTHON      := $(VENV)/bin/python
# Three workers, one test file each at a time (module fixtures stay in one worker): most tests wait
# on servers, kwok or Podman rather than compute, so this cuts the suite from ~28 to ~12 minutes here.
PYTEST_ARGS ?= -q -n 3 --dist loadfile tests

.PHONY: install system venv hub-tools services images images-prune test test-js run clean check-rig stop help kube-build kube-up kube-down

help:
	@sed -n '2,8s/^# //p' Makefile

install: system venv hub-tools

system:
	scripts/install-system.sh
	scripts/install-toolchains.sh

venv:
	scripts/install-venv.sh

# configurable-http-proxy (npm) for the local JupyterHub of `make run` (tools/hub/package.json).
hub-tools: system
	scripts/install-hub-tools.sh

services: system
	scripts/services.sh

images: system
	scripts/build-images.sh
	scripts/registry.sh start

# Untag older localhost/mlplatform/* images (each edit of mlplatform_server/ makes a new tag).
images-prune:
	scripts/build-images.sh prune

# images and kube-up run side by side (scripts/test-rig.sh).
test: install services test-js
	scripts/test-rig.sh
	source .testenv/env.sh && source .testenv/kube/env.sh && $(PYTHON) -m pytest $(PYTEST_ARGS)

# TypeScript unit tests of the JupyterLab extension (Jest). node_modules comes with `make install`
# (pip's build hook runs npm install in labextension/); npm ci from the lockfile if it is missing.
# The extension's browser test is tests/ui (pytest: jupyter lab + Chromium via playwright-core).
test-js: install
	cd labextension && { [[ -x node_modules/.bin/jest ]] || npm ci --no-audit --no-fund; } && npx jest --ci

# Kubernetes v1.34.4 control plane + kwok nodes on loopback (docs/kube-rig.md). First build ~17-20 min
# on 2 cores; binaries cached in $${MLP_CACHE:-/var/cache/mlplatform}/kube-v1.34.4.
kube-build:
	scripts/kube-build.sh

kube-up:
	scripts/kube-up.sh

kube-down:
	scripts/kube-down.sh

run: install services images
	scripts/run.sh

# Prove the Docker API does what the docker backend needs (host network, mounts, limits…).
check-rig: install services images
	scripts/check-docker-api.sh

stop:
	scripts/services.sh stop
	scripts/kube-down.sh

clean:
	scripts/kube-down.sh
	scripts/services.sh clean
