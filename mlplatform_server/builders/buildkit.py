"""The `buildkit` builder: ``docker build`` without a Docker daemon, as a Kubernetes Job running
rootless BuildKit daemonless (``buildctl-daemonless.sh``: buildkitd and buildctl in one container,
gone with it). For builds that install a requirements.txt when the platform runs on Kubernetes.

The flow (:func:`build_buildkit`):

1. The build context (the generated Dockerfile plus ``code/``) is written as a tarball to
   ``builds/<id>/context.tar`` on the shared RWX artifact volume (the kubernetes backend's
   :class:`~..backends.kubernetes.manifests.ArtifactStore`, ``pvc``), with a ``buildkitd.toml``
   when a registry speaks plain HTTP.
2. The registry credentials (only the target registry's entry of the server's ``--registry-auth``
   file) become a ``kubernetes.io/dockerconfigjson`` Secret, mounted at ``$DOCKER_CONFIG``; never
   a literal in the pod spec. Or the admin names an existing one (``builders.buildkit.push_secret``).
3. The Job (:func:`make_buildkit_job`): an init container unpacks the tarball into an
   ``emptyDir`` (fully locked down), then BuildKit builds and pushes ``<repo>:<version>`` and
   writes its metadata (the pushed manifest's digest) to ``builds/<id>/out/metadata.json``.
4. The platform waits for the Job; on success it checks that the registry has that digest
   (registry.py) and returns ``repo@sha256:…``. A Job that completed without the metadata, or a
   digest the registry does not have, is "pushed no image"; a failed Job gives the pod's reason,
   exit code and log tail. Nothing is recorded on the version unless the image is in the registry.

What rootless BuildKit needs from the pod, and why (upstream: moby/buildkit
``examples/kubernetes/job.rootless.yaml``, ``docs/rootless.md``). The build container runs as
uid/gid 1000, ``runAsNonRoot``, not privileged, no service-account token, but:

- ``seccompProfile: Unconfined`` — RootlessKit creates a user namespace and mounts inside it
  (``unshare``, ``mount``, ``pivot_root``); the runtime's default seccomp profile denies those
  to a process without CAP_SYS_ADMIN.
- ``appArmorProfile: Unconfined`` — the runtime's default AppArmor profile denies ``mount``
  ("failed to share mount point: /: permission denied").
- ``allowPrivilegeEscalation: true`` (the default, stated) and the runtime's default capabilities
  — ``newuidmap``/``newgidmap`` are privileged helpers (setuid, or file capabilities) that write the subordinate uid/gid maps of the
  user namespace; ``no_new_privs`` or a bounding set without CAP_SETUID/CAP_SETGID breaks them.
- ``BUILDKITD_FLAGS=--oci-worker-no-process-sandbox`` — instead of ``procMount: Unmasked`` (which
  needs ``hostUsers: false`` and more): the build's ``RUN`` steps share BuildKit's PID namespace,
  so a step could signal the BuildKit process of its own, single-use pod; nothing else.

Pod Security Standards: these two ``Unconfined`` profiles are all that the ``baseline`` level
objects to (tests/kube/test_buildkit.py proves it), so the namespace must not *enforce*
baseline/restricted on pods; run builds in a namespace labelled
``pod-security.kubernetes.io/enforce: privileged`` (the pod is still not privileged).
The init container keeps every default lock: RuntimeDefault seccomp, no privilege escalation,
all capabilities dropped, read-only root filesystem.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import shutil
import time
import uuid
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ..errors import BackendError, ConfigError, InvalidInput
from .context import BuildContext
from .layer import BuildResult
from .registry import (ImageNotInRegistry, ImageRef, RegistryClient, load_credentials, registry_host,
                       registry_scheme)

if TYPE_CHECKING:
    from ..backends.kubernetes.client import KubeClient
    from ..backends.kubernetes.manifests import ArtifactStore
    from ..config import BuildKitSettings

log = logging.getLogger("mlplatform.builds")

BUILDS_DIR = "builds"  # under the artifact store's root: builds/<id>/{context.tar,buildkitd.toml,out/}
CONTEXT_TAR = "context.tar"
BUILDKITD_TOML = "buildkitd.toml"
METADATA = "metadata.json"
CONTAINER = "buildkit"
INIT_CONTAINER = "unpack"
BUILD_MOUNT = PurePosixPath("/mlp/build")  # builds/<id>, read-only
OUT_MOUNT = PurePosixPath("/mlp/out")  # builds/<id>/out, where buildctl writes its metadata
WORKSPACE = PurePosixPath("/mlp/workspace")  # the unpacked context (emptyDir)
HOME = PurePosixPath("/home/user")  # the rootless image's user (uid 1000)
STATE_DIR = HOME / ".local/share/buildkit"
DOCKER_CONFIG_DIR = HOME / ".docker"
BUILDKIT_UID = 1000  # fixed by the rootless image (its /etc/subuid entries are for it)
BUILD_ID_LABEL = "mlplatform.io/build-id"
DOCKERCONFIG_KEY = ".dockerconfigjson"
# Waiting containers that will not get better by waiting (a pull already retried, a bad name, a
# missing Secret): the build fails at once with the reason instead of at its deadline.
_HOPELESS = ("ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError")


class BuildKitBuildError(BackendError):
    code = "build_failed"


# -- pure builders -------------------------------------------------------------------------------


def build_job_name(build_id: str) -> str:
    return f"mlp-build-{build_id}"


def build_labels(build_id: str, model: str, version: str, user: str) -> dict[str, str]:
    from ..backends.kubernetes.manifests import MANAGED_BY, sanitize_label_value

    return {
        **MANAGED_BY,
        "app.kubernetes.io/component": "build",
        BUILD_ID_LABEL: build_id,
        "mlplatform.io/user": sanitize_label_value(user),
        "mlplatform.io/model": sanitize_label_value(model),
        "mlplatform.io/version": sanitize_label_value(version),
    }


def plain_http_hosts(registry_url: str, *images: str) -> list[str]:
    """The registry hosts that speak plain HTTP: the target registry (by its URL's scheme, or a
    loopback address) and the registries of `images` (the base image) when they are loopback."""
    target = registry_host(registry_url)
    hosts = [target] if registry_scheme(registry_url) == "http" else []
    for image in images:
        try:
            host = ImageRef.parse(image).registry
        except InvalidInput:  # docker.io shorthand: HTTPS
            continue
        if host != target and host not in hosts and registry_scheme(host) == "http":
            hosts.append(host)
    return hosts


def buildkitd_toml(http_hosts: list[str]) -> str:
    """buildkitd's registry config: which registries to reach over plain HTTP."""
    return "".join(f'[registry."{host}"]\n  http = true\n  insecure = true\n\n' for host in http_hosts)


def docker_config_for(auth_file: Path | str | None, registry: str) -> dict[str, Any] | None:
    """A docker config.json holding only `registry`'s entry of `auth_file` (None: no credentials)."""
    credentials = load_credentials(auth_file, registry)
    if credentials is None:
        return None
    token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
    return {"auths": {registry: {"auth": token}}}


def make_push_secret(name: str, namespace: str, docker_config: dict[str, Any],
                     labels: dict[str, str]) -> dict[str, Any]:
    """The imagePullSecret-style Secret BuildKit pushes with."""
    data = base64.b64encode(json.dumps(docker_config, sort_keys=True).encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {DOCKERCONFIG_KEY: data},
    }


def _quantity_cpu(cpu: float) -> str:
    return str(int(cpu)) if float(cpu).is_integer() else f"{int(round(cpu * 1000))}m"


def make_buildkit_job(
    *,
    build_id: str,
    namespace: str,
    target: str,
    model: str,
    version: str,
    user: str,
    settings: BuildKitSettings,
    pvc: str,
    build_sub_path: str,
    push_secret: str | None,
    http_registry: bool,
    buildkitd_config: bool,
) -> dict[str, Any]:
    """The ``batch/v1`` Job that builds the context at ``build_sub_path`` (a claim-relative
    directory holding ``context.tar``, optionally ``buildkitd.toml``, and ``out/``) and pushes
    ``target`` (``host/repo:tag``). See the module docstring for its security context."""
    name = build_job_name(build_id)
    labels = build_labels(build_id, model, version, user)
    amounts = {"cpu": _quantity_cpu(settings.cpu), "memory": settings.memory,
               "ephemeral-storage": settings.ephemeral_storage}
    output = f"type=image,name={target},push=true"
    if http_registry:
        output += ",registry.insecure=true"
    flags = "--oci-worker-no-process-sandbox"
    if buildkitd_config:
        flags += f" --config={BUILD_MOUNT / BUILDKITD_TOML}"
    env = [{"name": "BUILDKITD_FLAGS", "value": flags}]
    mounts = [
        {"name": "data", "mountPath": str(BUILD_MOUNT), "subPath": build_sub_path, "readOnly": True},
        {"name": "data", "mountPath": str(OUT_MOUNT), "subPath": f"{build_sub_path}/out"},
        {"name": "workspace", "mountPath": str(WORKSPACE), "readOnly": True},
        {"name": "buildkitd", "mountPath": str(STATE_DIR)},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "data", "persistentVolumeClaim": {"claimName": pvc}},
        {"name": "workspace", "emptyDir": {}},
        {"name": "buildkitd", "emptyDir": {}},
    ]
    if push_secret:
        env.append({"name": "DOCKER_CONFIG", "value": str(DOCKER_CONFIG_DIR)})
        mounts.append({"name": "docker-config", "mountPath": str(DOCKER_CONFIG_DIR), "readOnly": True})
        volumes.append({"name": "docker-config", "secret": {
            "secretName": push_secret, "items": [{"key": DOCKERCONFIG_KEY, "path": "config.json"}]}})
    unpack = {
        "name": INIT_CONTAINER,
        "image": settings.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["tar", "-x", "-f", str(BUILD_MOUNT / CONTEXT_TAR), "-C", str(WORKSPACE)],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
        "volumeMounts": [
            {"name": "data", "mountPath": str(BUILD_MOUNT), "subPath": build_sub_path, "readOnly": True},
            {"name": "workspace", "mountPath": str(WORKSPACE)},
        ],
    }
    buildkit = {
        "name": CONTAINER,
        "image": settings.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["buildctl-daemonless.sh"],
        "args": [
            "build",
            "--frontend", "dockerfile.v0",
            "--local", f"context={WORKSPACE}",
            "--local", f"dockerfile={WORKSPACE}",
            "--output", output,
            "--metadata-file", str(OUT_MOUNT / METADATA),
        ],
        "env": env,
        "resources": {"requests": dict(amounts), "limits": dict(amounts)},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": BUILDKIT_UID,
            "runAsGroup": BUILDKIT_UID,
            "privileged": False,
            # newuidmap/newgidmap (setuid or file caps) map the user namespace's ids: no no_new_privs.
            "allowPrivilegeEscalation": True,
            # RootlessKit's unshare/mount in its user namespace: denied by the default profiles.
            "seccompProfile": {"type": "Unconfined"},
            "appArmorProfile": {"type": "Unconfined"},
        },
        "volumeMounts": mounts,
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": BUILDKIT_UID,
            "runAsGroup": BUILDKIT_UID,
            "fsGroup": BUILDKIT_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [unpack],
        "containers": [buildkit],
        "volumes": volumes,
    }
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]
    if settings.node_selector:
        pod_spec["nodeSelector"] = dict(settings.node_selector)
    annotations = {"mlplatform.io/user": user}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels), "annotations": dict(annotations)},
        "spec": {
            "backoffLimit": 0,  # the same context fails the same way again
            "activeDeadlineSeconds": settings.timeout_seconds,
            "ttlSecondsAfterFinished": settings.ttl_seconds,
            "template": {
                "metadata": {"labels": {**settings.labels, **labels},
                             "annotations": {**settings.annotations, **annotations}},
                "spec": pod_spec,
            },
        },
    }


# -- reading the outcome ---------------------------------------------------------------------------


def job_outcome(job: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """("Complete" | "Failed", the condition) once the Job has finished, else None."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return cond["type"], cond
    return None


def _statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def hopeless_reason(pods: list[dict[str, Any]]) -> str | None:
    """Why a build pod cannot start (its image cannot be pulled, its Secret is missing...), or None."""
    for pod in pods:
        for cs in _statuses(pod):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _HOPELESS:
                detail = f": {waiting['message']}" if waiting.get("message") else ""
                return f"container {cs.get('name')} ({cs.get('image')}) is {waiting['reason']}{detail}"
    return None


def pod_failure(pods: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """(the failed container's name, "exit code N, REASON: message") of the newest failed pod."""
    for pod in sorted(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "", reverse=True):
        for cs in _statuses(pod):
            term = (cs.get("state") or {}).get("terminated") or {}
            if term and term.get("exitCode", 0) != 0:
                text = f"exit code {term.get('exitCode')}"
                if term.get("reason"):
                    text += f", {term['reason']}"
                if term.get("message"):
                    text += f": {term['message'].strip()}"
                return cs.get("name"), text
        status = pod.get("status") or {}
        if status.get("phase") == "Failed" and (status.get("reason") or status.get("message")):
            return None, ": ".join(x for x in (status.get("reason"), status.get("message")) if x)
    return None, None


def pushed_image(out_dir: Path, target: ImageRef, registry_url: str, auth_file: Path | str | None,
                 job: str) -> str:
    """``repo@sha256:…`` of what the build pushed: the digest from buildctl's metadata file,
    confirmed by the registry. Anything else is "pushed no image"."""
    where = f"{target.registry}/{target.repository}:{target.tag}"
    metadata_file = out_dir / METADATA
    try:
        metadata = json.loads(metadata_file.read_text())
    except FileNotFoundError:
        raise BuildKitBuildError(
            f"The build Job finished but pushed no image: {job} completed without writing the build's "
            f"metadata (no {METADATA}), so nothing was pushed to {where}; nothing was recorded",
            job=job, image=where) from None
    except (OSError, ValueError) as exc:
        raise BuildKitBuildError(f"The build Job finished but pushed no image: {job}'s {METADATA} is not "
                                 f"readable JSON ({exc}); nothing was recorded", job=job) from None
    digest = metadata.get("containerimage.digest") if isinstance(metadata, dict) else None
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise BuildKitBuildError(f"The build Job finished but pushed no image: {job}'s {METADATA} names no "
                                 f"image digest; nothing was recorded", job=job)
    with RegistryClient(registry_url, auth_file) as registry:
        try:
            _, _, manifest_digest = registry.get_manifest(target.repository, digest)
        except ImageNotInRegistry:
            raise BuildKitBuildError(
                f"The build Job finished but pushed no image: {job} reports {digest}, and the registry has "
                f"no such manifest in {target.registry}/{target.repository}; nothing was recorded",
                job=job, digest=digest) from None
    return f"{target.registry}/{target.repository}@{manifest_digest}"


# -- the builder -----------------------------------------------------------------------------------


async def _failure_message(client: KubeClient, namespace: str, name: str, cond: dict[str, Any],
                           pods: list[dict[str, Any]]) -> str:
    why = cond.get("reason") or "Failed"
    if cond.get("message"):
        why += f": {cond['message']}"
    container, detail = pod_failure(pods)
    text = f"The buildkit build Job {name} failed ({why})"
    if detail:
        text += f"; {'container ' + container + ' ' if container else ''}{detail}"
    pod = next(iter(sorted((p["metadata"]["name"] for p in pods), reverse=True)), None)
    if pod is not None:
        from ..backends.kubernetes.client import ApiError

        try:
            log_text = await client.pod_log(namespace, pod, container or CONTAINER)
        except ApiError as exc:
            log_text = None
            text += f" (no log: {exc.message[:200]})"
        if log_text:
            text += "\n" + "\n".join(log_text.strip().splitlines()[-20:])
    return text


def write_build_dir(ctx: BuildContext, build_dir: Path, registry_url: str) -> list[str]:
    """What the build Job reads from the shared volume: ``context.tar``, ``buildkitd.toml`` when a
    registry speaks plain HTTP, and an empty ``out/`` for the metadata. Returns those plain-HTTP hosts."""
    out_dir = build_dir / "out"
    out_dir.mkdir(parents=True)
    out_dir.chmod(0o777)  # written by uid 1000 in the pod, whoever the platform runs as
    http_hosts = plain_http_hosts(registry_url, ctx.env_image)
    (build_dir / CONTEXT_TAR).write_bytes(ctx.docker_context_tar())
    if http_hosts:
        (build_dir / BUILDKITD_TOML).write_text(buildkitd_toml(http_hosts))
    for path in (build_dir, build_dir / CONTEXT_TAR, *([build_dir / BUILDKITD_TOML] if http_hosts else [])):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return http_hosts


async def build_buildkit(
    ctx: BuildContext,
    target: ImageRef,
    registry_url: str,
    auth_file: Path | str | None,
    *,
    client: KubeClient,
    namespace: str,
    artifacts: ArtifactStore,
    settings: BuildKitSettings,
    user: str,
    poll_seconds: float = 0.5,
) -> BuildResult:
    """Build and push `ctx` with a BuildKit Job (see the module docstring)."""
    from ..backends.kubernetes.client import ApiError
    from ..backends.kubernetes.manifests import owner_reference

    started = time.monotonic()
    if artifacts.pvc is None or artifacts.root is None:
        raise ConfigError("The buildkit builder hands the build context to its Job through the shared artifact "
                          "volume: start the server with --pvc CLAIM (object storage is not supported for builds)")
    if not target.tag:
        raise ConfigError("The buildkit builder needs a tag for the target image")
    build_id = uuid.uuid4().hex[:12]
    name = build_job_name(build_id)
    build_dir = Path(artifacts.root) / BUILDS_DIR / build_id
    out_dir = build_dir / "out"
    labels = build_labels(build_id, ctx.model, ctx.version, user)
    push_config: dict[str, Any] | None = None
    try:
        http_hosts = write_build_dir(ctx, build_dir, registry_url)
        push_config = None if settings.push_secret else docker_config_for(auth_file, target.registry)
        secret_name = f"{name}-push" if push_config is not None else settings.push_secret
        job = make_buildkit_job(
            build_id=build_id, namespace=namespace, target=f"{target.registry}/{target.repository}:{target.tag}",
            model=ctx.model, version=ctx.version, user=user, settings=settings, pvc=artifacts.pvc,
            build_sub_path=artifacts.sub_path(build_dir), push_secret=secret_name,
            http_registry=target.registry in http_hosts, buildkitd_config=bool(http_hosts))
        try:
            if push_config is not None:
                await client.create(make_push_secret(f"{name}-push", namespace, push_config, labels))
            created = await client.create(job)
            if push_config is not None:  # the Secret goes with the Job, even if the platform dies mid-build
                await client.patch("v1", "Secret", namespace, f"{name}-push",
                                   {"metadata": {"ownerReferences": [owner_reference(created)]}})
        except ApiError as exc:
            raise BuildKitBuildError(f"Kubernetes refused the build Job {name}: {exc.message}", job=name) from None
        log.info("build %s of %s:%s: Job %s started", build_id, ctx.model, ctx.version, name)
        try:
            await _wait(client, namespace, name, settings, poll_seconds)
        except asyncio.CancelledError:  # the request went away: so does its Job
            await asyncio.shield(client.delete("batch/v1", "Job", namespace, name, propagation="Background"))
            raise
        image = await asyncio.to_thread(pushed_image, out_dir, target, registry_url, auth_file, name)
    finally:
        if push_config is not None:
            try:
                await client.delete("v1", "Secret", namespace, f"{name}-push")
            except ApiError as exc:
                log.warning("could not delete the build's push Secret %s-push: %s", name, exc)
        shutil.rmtree(build_dir, ignore_errors=True)
    return BuildResult(image=image, builder="buildkit", bytes_uploaded=None, layer_size=None,
                       seconds=time.monotonic() - started)


async def _wait(client: KubeClient, namespace: str, name: str, settings: BuildKitSettings,
                poll_seconds: float) -> None:
    """Until the Job completes; a failed, stuck or vanished Job raises :class:`BuildKitBuildError`."""
    from ..backends.kubernetes.client import ApiError
    from ..backends.kubernetes.manifests import JOB_NAME_LABEL

    # activeDeadlineSeconds fails the Job itself; this only guards against a controller that never says so.
    deadline = time.monotonic() + settings.timeout_seconds + 120
    selector = f"{JOB_NAME_LABEL}={name}"
    while True:
        try:
            job = await client.get_or_none("batch/v1", "Job", namespace, name)
            if job is None:
                raise BuildKitBuildError(f"The build Job {name} was deleted before it finished", job=name)
            outcome = job_outcome(job)
            pods = await client.list("v1", "Pod", namespace, label_selector=selector)
        except ApiError as exc:
            raise BuildKitBuildError(f"Lost track of the build Job {name}: {exc.message}", job=name) from None
        if outcome is not None:
            kind, cond = outcome
            if kind == "Complete":
                return
            raise BuildKitBuildError(await _failure_message(client, namespace, name, cond, pods), job=name)
        stuck = hopeless_reason(pods)
        if stuck is None and time.monotonic() > deadline:
            stuck = f"it did not finish in {settings.timeout_seconds}s"
        if stuck is not None:
            await client.delete("batch/v1", "Job", namespace, name, propagation="Background")
            message = f"The buildkit build Job {name} cannot run: {stuck}"
            if "Image" in stuck:
                message += (f" (builders.buildkit.image is {settings.image}: mirror it into a registry the "
                            "cluster can pull from)")
            raise BuildKitBuildError(message, job=name)
        await asyncio.sleep(poll_seconds)
