"""Build a Platform from options and serve the REST API (`mlp server`)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import signal
from dataclasses import dataclass
from pathlib import Path

from tornado.httpserver import HTTPServer

from .backends import create_backend, docker_engine_answers
from .config import KubernetesSettings, PlatformConfig, load_config
from .errors import ConfigError
from .services.platform import Platform, PlatformSettings
from .store.db import Store, sqlite_url

log = logging.getLogger("mlplatform")


@dataclass
class ServerOptions:
    data_dir: Path = Path(".mlp-data")
    host: str = "127.0.0.1"
    port: int = 8000
    backend: str = "auto"  # auto | process | docker | kubernetes
    db_url: str | None = None
    config: Path | None = None
    public_url: str | None = None  # how runs reach the API; default http://host:port
    docker_host: str | None = None
    admin_token: str | None = None
    registry_url: str | None = None  # where built model images are pushed (mlp build)
    registry_auth_file: Path | None = None  # docker config.json with the registry's credentials
    namespace: str | None = None  # kubernetes: where runs and deployments live
    kubeconfig: str | None = None  # kubernetes: default $KUBECONFIG, then ~/.kube/config or in-cluster
    pvc: str | None = None  # kubernetes: RWX claim mounted at the data dir in pods
    artifacts_uri: str | None = None  # kubernetes: object-store URI instead of a claim
    priority_class: str | None = None  # kubernetes: priorityClassName of run pods
    namespace_per_user: bool = False  # kubernetes: each user's objects in <namespace_prefix><user>
    namespace_prefix: str | None = None  # kubernetes: default mlp-u- (with namespace_per_user)


def admin_token(options: ServerOptions) -> str:
    """MLP_TOKEN if set; else the token kept in the data dir (created once, mode 0600)."""
    if options.admin_token:
        return options.admin_token
    path = Path(options.data_dir) / "admin-token"
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def choose_backend(options: ServerOptions, config: PlatformConfig | None = None):
    name = options.backend
    if name == "auto":
        name = "docker" if docker_engine_answers(options.docker_host) else "process"
    if name == "docker":
        return create_backend("docker", base_url=options.docker_host)
    if name == "kubernetes":
        return _kubernetes_backend(options, config.kubernetes if config is not None else KubernetesSettings())
    return create_backend(name)


def kubernetes_namespaces(options: ServerOptions, settings: KubernetesSettings) -> tuple[str | None, str | None]:
    """(the one namespace, or None; the per-user prefix, or None) from the options, else platform.yaml."""
    if options.namespace and (options.namespace_per_user or options.namespace_prefix):
        raise ConfigError("--namespace and --namespace-per-user exclude each other: one namespace for everyone, "
                          "or one per user")
    if options.namespace_prefix and not options.namespace_per_user:
        raise ConfigError("--namespace-prefix needs --namespace-per-user")
    if options.namespace:
        return options.namespace, None
    if options.namespace_per_user or settings.namespace_per_user:
        from .backends.kubernetes.namespaces import DEFAULT_PREFIX, validate_prefix

        prefix = options.namespace_prefix or settings.namespace_prefix or DEFAULT_PREFIX
        try:
            return None, validate_prefix(prefix)
        except ValueError as exc:
            raise ConfigError(f"--namespace-prefix: {exc}") from None
    return settings.namespace, None


def _kubernetes_backend(options: ServerOptions, settings: KubernetesSettings):
    namespace, prefix = kubernetes_namespaces(options, settings)
    if not namespace and not prefix:
        raise ConfigError("the kubernetes backend needs a namespace: --namespace NS (or --namespace-per-user)")
    if bool(options.pvc) == bool(options.artifacts_uri):
        raise ConfigError("the kubernetes backend needs one artifact store: --pvc CLAIM (a RWX claim holding "
                          "the data dir) or --artifacts-uri URI")
    try:
        return create_backend(
            "kubernetes", namespace=namespace, namespace_prefix=prefix, kubeconfig=options.kubeconfig, pvc=options.pvc,
            data_dir=Path(options.data_dir).resolve() if options.pvc else None, artifacts_uri=options.artifacts_uri,
            api_url=options.public_url or f"http://{options.host}:{options.port}",
            priority_class=options.priority_class,
        )
    except (ValueError, OSError) as exc:  # e.g. an unreadable or malformed kubeconfig, an unreadable certificate
        raise ConfigError(f"kubernetes backend: {' '.join(str(exc).split())}") from None


def build_platform(options: ServerOptions) -> Platform:
    data_dir = Path(options.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    config = load_config(options.config)
    db_url = options.db_url or sqlite_url(data_dir)
    try:
        store = Store(db_url)
    except Exception as exc:
        raise ConfigError(f"Cannot open the database {_redact(db_url)}: {exc.__class__.__name__}: {exc}") from None
    backend = choose_backend(options, config)
    settings = PlatformSettings(
        data_dir=data_dir,
        db_url=db_url,
        api_url=options.public_url or f"http://{options.host}:{options.port}",
        admin_token=admin_token(options),
    )
    platform = Platform(settings, store, backend, config)
    platform.builds.configure(options.registry_url, options.registry_auth_file, options.docker_host)
    return platform


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable URL)"


async def serve(options: ServerOptions, ready: asyncio.Event | None = None) -> None:
    from .api.app import make_app

    platform = build_platform(options)
    server = HTTPServer(make_app(platform), xheaders=True)
    # What exists now (≈ 125 000 objects: modules, classes, SQLAlchemy's and Tornado's tables) lives as
    # long as the process: out of the garbage collector's way, a full collection walks only what the
    # server made since (it took ≈ 0.1 s of CPU each time, while serving).
    gc.collect()
    gc.freeze()
    server.listen(options.port, options.host)
    platform.start()
    print(
        f"mlplatform API on http://{options.host}:{options.port}/api/v1 "
        f"(backend {platform.backend.name}, data {platform.settings.data_dir}, "
        f"db {_redact(platform.settings.db_url)})",
        flush=True,
    )
    if ready is not None:
        ready.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
    await platform.stop()
