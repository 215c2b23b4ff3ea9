# Install, services and tests on one Debian bookworm machine, as root (see docs/rig.md).
#   make install    system packages (apt, only when missing) + .venv with pip install -e '.[test]'
#   make services   PostgreSQL on 127.0.0.1:55432 + Podman's Docker API; writes .testenv/env.sh
#   make images     the environment images, built locally (debootstrap + podman build)
#   make kube-up    a real Kubernetes 1.34 control plane with kwok nodes (built once, cached)
#   make test       all of the above, then pytest (PYTEST_ARGS)
#   make run        the platform API on :8000 and JupyterLab on :8888, on the embedded defaults
#   make clean      stop the services, remove .testenv
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
# The targets share .testenv/env.sh and the apt lock; running them in parallel gains nothing.
.NOTPARALLEL:

VENV        := .venv
PYTHON      := $(VENV)/bin/python
PYTEST_ARGS ?= -q tests

.PHONY: install system venv services images images-prune test run clean check-rig stop help kube-build kube-up kube-down

help:
	@sed -n '2,8s/^# //p' Makefile

install: system venv

system:
	scripts/install-system.sh

venv:
	scripts/install-venv.sh

services: system
	scripts/services.sh

images: system
	scripts/build-images.sh
	scripts/registry.sh start

# Untag older localhost/mlplatform/* images (each edit of mlplatform_server/ makes a new tag).
images-prune:
	scripts/build-images.sh prune

test: install services images kube-up
	source .testenv/env.sh && source .testenv/kube/env.sh && $(PYTHON) -m pytest $(PYTEST_ARGS)

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
