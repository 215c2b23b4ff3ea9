"""Fixtures for the docker backend suite: a real Podman (or Docker) engine and a real image.

`make test` sets MLP_TEST_DOCKER_HOST (the engine's socket) and MLP_TEST_IMAGE (an environment
image with python3, tornado, numpy, scikit-learn and the mlplatform wheel: images/, make images).
A missing one fails the suite: it is never silently skipped.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(
            f"{name} is not set: the docker backend tests need a Docker-compatible engine and an image; "
            "run them with `make test` (or source .testenv/env.sh after scripts/services.sh and "
            "scripts/build-images.sh)"
        )
    return value


@pytest.fixture(scope="session")
def docker_host() -> str:
    return _required("MLP_TEST_DOCKER_HOST")


@pytest.fixture(scope="session")
def test_image() -> str:
    return _required("MLP_TEST_IMAGE")


@pytest.fixture(scope="session")
def engine(docker_host: str, test_image: str):
    """A plain SDK client for looking behind the backend's back."""
    import docker

    client = docker.DockerClient(base_url=docker_host)
    try:
        client.ping()
    except Exception as exc:
        pytest.fail(f"no container engine answers at MLP_TEST_DOCKER_HOST={docker_host}: {exc}")
    try:
        client.images.get(test_image)
    except docker.errors.ImageNotFound:
        pytest.fail(f"MLP_TEST_IMAGE={test_image} is not on the engine at {docker_host}: run scripts/build-images.sh")
    yield client
    client.close()


@pytest.fixture
def test_user(engine) -> str:
    """A user name unique to this test: its containers carry it as the mlplatform.user label,
    and every container with it is removed afterwards, whatever the test did."""
    user = f"dockertest-{uuid.uuid4().hex[:10]}"
    yield user
    for container in engine.containers.list(
        all=True, filters={"label": ["mlplatform.managed=true", f"mlplatform.user={user}"]}
    ):
        try:
            container.remove(force=True)
        except Exception:
            pass


@pytest.fixture(scope="session")
def backend(docker_host: str, engine):
    """One backend for the session (creating a client asks the engine for its version, which
    Podman answers slowly); it holds no event-loop state, so every test's loop can use it."""
    from mlplatform_server.backends.docker import DockerBackend

    b = DockerBackend(base_url=docker_host, stop_grace=3)
    yield b
    asyncio.run(b.close())
