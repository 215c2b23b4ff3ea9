"""Pure builders of the Kubernetes objects the kubernetes backend creates.

Every function returns a plain ``dict`` (the JSON the API server takes), never a client object,
so the builders are tested against literal dicts and the client layer stays thin.

Pod layout (mirrors the docker backend's, ``backends/docker.py``):

- ``/mlp/code``      the model version's code, read-only
- ``/mlp/run``       the run's directory (result.json, artifacts/), read-write; the working directory
- ``/mlp/artifacts`` batch prediction and serving: the training run's artifacts, read-only
- ``/mlp/input/<name>``, ``/mlp/output``  batch prediction inputs and outputs
- ``/tmp``           an ``emptyDir``: the root filesystem is read-only

With a RWX PersistentVolumeClaim (:class:`ArtifactStore` with ``pvc``) these are ``subPath``
mounts of the claim, whose root the platform itself sees at ``ArtifactStore.root`` (its data
directory: ``runs/<run_id>``, ``models/<model>/<version>``). With an object store (``uri``)
``/mlp/code`` and ``/mlp/run`` are ``emptyDir`` volumes and ``MLP_ARTIFACTS_URI`` (plus
``MLP_MODEL_URI`` and, for batch prediction, ``MLP_SOURCE_ARTIFACTS_URI``) tell where the
run's files live; moving them is the runtime's job (a later issue).

Secrets never appear as literal values: the run-scoped token comes from a per-run Secret through
``secretKeyRef``, the user's credentials through ``envFrom`` (optional).
"""

from __future__ import annotations

import base64
import copy
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..base import DeploymentSpec, Hardware, RunSpec
from ..common import rendezvous_env
from .names import sanitize_label_value, sanitize_name

__all__ = [
    "ArtifactStore",
    "GPU_RESOURCE",
    "MANAGED_BY",
    "RENDEZVOUS_PORT",
    "SERVING_PORT",
    "credentials_secret_name",
    "cronjob_name",
    "deployment_labels",
    "deployment_name",
    "job_name",
    "make_cronjob",
    "make_deployment",
    "make_headless_service",
    "make_hpa",
    "make_job",
    "make_secret",
    "make_service",
    "pin_image",
    "run_labels",
    "sanitize_label_value",
    "sanitize_name",
]

GPU_RESOURCE = "nvidia.com/gpu"
MANAGED_BY = {"app.kubernetes.io/managed-by": "mlplatform"}
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
RENDEZVOUS_PORT = 29500
SERVING_PORT = 8080
CONTAINER = "runtime"
TOKEN_KEY = "MLP_RUN_TOKEN"
# A run's pods report to the platform with a projected service-account token of this audience,
# bound to the pod: the API server rejects it (wrong audience), the platform checks it with a
# TokenReview and maps the pod to its run. No per-run Secret, and it dies with the pod.
TOKEN_AUDIENCE = "mlplatform"
TOKEN_DIR = PurePosixPath("/var/run/secrets/mlplatform")
TOKEN_FILE_ENV = "MLP_RUN_TOKEN_FILE"
TOKEN_EXPIRATION_SECONDS = 3600

CODE_DIR = PurePosixPath("/mlp/code")
RUN_DIR = PurePosixPath("/mlp/run")
ARTIFACTS_DIR = PurePosixPath("/mlp/artifacts")
INPUT_DIR = PurePosixPath("/mlp/input")
OUTPUT_DIR = PurePosixPath("/mlp/output")

# Never hand the platform's own credentials to user code (as the other backends).
_PRIVATE_ENV = ("MLP_TOKEN", "MLP_ADMIN_TOKEN", "MLP_DB_URL", "MLP_TEST_PG_URL")
_PATH_ENV = ("MLP_MODULE_PATH", "MLP_ARTIFACTS", "MLP_RESULT_PATH", "MLP_INPUTS", "MLP_OUTPUTS")
# Exit codes of the runtime that mean "the user's code or configuration is wrong": retrying
# cannot help (runtime/__init__.py: 1 the user's code raised, 2 the run could not start).
USER_ERROR_EXIT_CODES = [1, 2]
# Job and CronJob names: a CronJob's name is at most 52 characters (it appends a timestamp),
# and an Indexed Job's pod hostname ``<job>-<index>`` must stay a DNS label.
JOB_NAME_MAX = 52


@dataclass(frozen=True)
class ArtifactStore:
    """Where runs' files live, as pods see them: exactly one of a RWX PersistentVolumeClaim
    (``pvc``; ``root`` is where the platform sees the claim's root, i.e. its data directory) or
    an object-store URI (``uri``, e.g. ``s3://bucket/mlp``)."""

    pvc: str | None = None
    root: Path | None = None
    uri: str | None = None

    def __post_init__(self) -> None:
        if (self.pvc is None) == (self.uri is None):
            raise ValueError("ArtifactStore needs exactly one of pvc (a RWX claim name) or uri (object storage)")
        if self.pvc is not None and self.root is None:
            raise ValueError("ArtifactStore(pvc=...) needs root: where the platform sees the claim's root")

    def sub_path(self, host_path: Path | str) -> str:
        """The claim-relative path of a platform path (which must be under ``root``)."""
        assert self.root is not None
        path, root = os.path.abspath(host_path), os.path.abspath(self.root)
        relative = _below(path, root)
        if relative is None:
            raise ValueError(f"{host_path} is not on the shared artifact volume (mounted at {root} on the platform)")
        return relative or "."

    def run_uri(self, *parts: str) -> str:
        assert self.uri is not None
        return "/".join([self.uri.rstrip("/"), *parts])


# -- names and labels --------------------------------------------------------------------------


def job_name(run_id: str) -> str:
    return sanitize_name(f"mlp-run-{run_id}", JOB_NAME_MAX)


def deployment_name(name: str) -> str:
    """Named after the platform deployment (not its id), so a new version deployed to the same name
    is a rolling update of the same Deployment."""
    return sanitize_name(f"mlp-dep-{name}")


def cronjob_name(name: str) -> str:
    return sanitize_name(f"mlp-cron-{name}", JOB_NAME_MAX)


def credentials_secret_name(user: str) -> str:
    """The user's credentials Secret (one per user, written by the platform API)."""
    return sanitize_name(f"mlp-cred-{user}")


def run_labels(spec: RunSpec) -> dict[str, str]:
    return {
        **MANAGED_BY,
        "mlplatform.io/run-id": sanitize_label_value(spec.run_id),
        "mlplatform.io/user": sanitize_label_value(spec.user),
        "mlplatform.io/model": sanitize_label_value(spec.model),
        "mlplatform.io/version": sanitize_label_value(spec.version),
        "mlplatform.io/kind": sanitize_label_value(spec.action),
    }


def deployment_labels(spec: DeploymentSpec) -> dict[str, str]:
    return {
        **MANAGED_BY,
        "mlplatform.io/deployment": sanitize_label_value(spec.name),
        "mlplatform.io/deployment-id": sanitize_label_value(spec.deployment_id),
        "mlplatform.io/user": sanitize_label_value(spec.user),
        "mlplatform.io/model": sanitize_label_value(spec.model),
        "mlplatform.io/version": sanitize_label_value(spec.version),
    }


def _selector(spec: DeploymentSpec) -> dict[str, str]:
    # Immutable on a Deployment: only what stays the same across versions of one deployment.
    return {**MANAGED_BY, "mlplatform.io/deployment": sanitize_label_value(spec.name)}


def _annotations(user: str) -> dict[str, str]:
    # Label values are sanitized; the exact user name is kept here.
    return {"mlplatform.io/user": user}


# -- pieces ------------------------------------------------------------------------------------


def pin_image(image: str | None) -> str:
    """The image reference to run. A reference with a digest runs by digest only
    (``repo:tag@sha256:…`` → ``repo@sha256:…``): a tag can move, a digest cannot."""
    if not image:
        raise ValueError("no container image: choose an environment (or containerize the model) first")
    if "@" in image:
        name, _, digest = image.partition("@")
        last = name.rsplit("/", 1)
        if ":" in last[-1]:
            last[-1] = last[-1].split(":", 1)[0]
            name = "/".join(last)
        return f"{name}@{digest}"
    return image


def _image_pull_policy(image: str) -> str:
    return "IfNotPresent" if "@" in image else "Always"


def cpu_quantity(cpu: float) -> str:
    """0.5 → "500m", 2.0 → "2"."""
    if float(cpu).is_integer():
        return str(int(cpu))
    return f"{int(round(cpu * 1000))}m"


def _resources(hardware: Hardware) -> dict[str, Any]:
    amounts: dict[str, str] = {"cpu": cpu_quantity(hardware.cpu), "memory": hardware.memory}
    if hardware.gpus > 0:
        amounts[GPU_RESOURCE] = str(hardware.gpus)
    # Requests equal limits: the size is what the user chose and what is billed.
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _tolerations(hardware: Hardware) -> list[dict[str, Any]]:
    tolerations = [dict(t) for t in hardware.tolerations]
    if hardware.gpus > 0 and not any(t.get("key") == GPU_RESOURCE for t in tolerations):
        # GPU node pools are tainted so that only pods asking for GPUs land there.
        tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    return tolerations


def _pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }


def _env_list(env: dict[str, str]) -> list[dict[str, Any]]:
    return [{"name": k, "value": v} for k, v in env.items()]


def _env_from(secret_name: str | None) -> list[dict[str, Any]]:
    if not secret_name:
        return []
    return [{"secretRef": {"name": secret_name, "optional": True}}]


def _below(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` ("" when equal), or None when it is not under it; both
    absolute and normalised (os.path.abspath). Strings, not pathlib: this runs for every path of
    every Job, where pathlib cost ten times as much."""
    if path == root:
        return ""
    prefix = root if root.endswith("/") else root + "/"
    return path[len(prefix):] if path.startswith(prefix) else None


class _Volumes:
    """Volumes and mounts of one pod, and the translation of platform paths to pod paths."""

    def __init__(self, artifacts: ArtifactStore) -> None:
        self.artifacts = artifacts
        self.volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
        self.mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
        self._map: list[tuple[str, str]] = []  # (platform path, pod path), the deepest platform path first
        if artifacts.pvc:
            self.volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": artifacts.pvc}})

    def add(self, host: Path | str, pod: PurePosixPath, read_only: bool, empty: str | None = None) -> None:
        """Mount ``host`` (a platform path) at ``pod``: a subPath of the claim, or, with object
        storage, an ``emptyDir`` named ``empty`` (None: not mounted, only translated)."""
        host_path, pod_path = os.path.abspath(host), str(pod)
        self._map.append((host_path, pod_path))
        self._map.sort(key=lambda m: m[0].rstrip("/").count("/"), reverse=True)
        if self.artifacts.pvc:
            mount = {"name": "data", "mountPath": pod_path, "subPath": self.artifacts.sub_path(host_path)}
            if read_only:
                mount["readOnly"] = True
            self.mounts.append(mount)
        elif empty:
            self.volumes.append({"name": empty, "emptyDir": {}})
            self.mounts.append({"name": empty, "mountPath": pod_path})

    def covers(self, host: Path | str) -> bool:
        return self.translate(str(host)) != str(host)

    def translate(self, value: str) -> str:
        path = os.path.abspath(value)
        for host, pod in self._map:
            relative = _below(path, host)
            if relative is not None:
                return posixpath.join(pod, relative) if relative else pod
        return value


def _translated_env(env: dict[str, str], volumes: _Volumes, api_url: str | None) -> dict[str, str]:
    out = {k: v for k, v in env.items() if k not in _PRIVATE_ENV and k != TOKEN_KEY}
    for key in _PATH_ENV:
        if out.get(key):
            out[key] = volumes.translate(out[key])
    if api_url and "MLP_URL" in out:
        out["MLP_URL"] = api_url
    out["PYTHONUNBUFFERED"] = "1"
    out["HOME"] = "/tmp"  # the root filesystem is read-only
    return out


# -- runs --------------------------------------------------------------------------------------


def _run_volumes(spec: RunSpec, artifacts: ArtifactStore) -> tuple[_Volumes, dict[str, str]]:
    """The pod's volumes for a run, and the object-store variables (empty with a PVC)."""
    volumes = _Volumes(artifacts)
    extra: dict[str, str] = {}
    volumes.add(spec.module_path.parent, CODE_DIR, read_only=True, empty="code")
    volumes.add(spec.run_dir, RUN_DIR, read_only=False, empty="run")
    source = spec.source_artifacts
    if spec.action == "batch-predict" and source is not None:
        volumes.add(source, ARTIFACTS_DIR, read_only=True, empty="artifacts")
    if artifacts.pvc:
        result = spec.env.get("MLP_RESULT_PATH")
        if result and not volumes.covers(Path(result)):
            raise ValueError(f"the result file {result} is outside the run directory {spec.run_dir}")
        inputs = spec.inputs or (Path(spec.env["MLP_INPUTS"]) if spec.env.get("MLP_INPUTS") else None)
        if inputs is not None:
            volumes.add(inputs, INPUT_DIR / (Path(os.path.abspath(inputs)).name or "input"), read_only=True)
        outputs = spec.outputs or (Path(spec.env["MLP_OUTPUTS"]) if spec.env.get("MLP_OUTPUTS") else None)
        if outputs is not None:
            volumes.add(outputs.parent, OUTPUT_DIR, read_only=False)
    else:
        extra["MLP_ARTIFACTS_URI"] = artifacts.run_uri("runs", spec.run_id)
        extra["MLP_MODEL_URI"] = artifacts.run_uri("models", spec.model, spec.version)
        if spec.action == "batch-predict" and source is not None:
            extra["MLP_SOURCE_ARTIFACTS_URI"] = artifacts.run_uri("runs", source.parent.name, source.name)
    return volumes, extra


def _distributed_env(name: str, hardware: Hardware) -> list[dict[str, Any]]:
    """torchrun's rendezvous: across the Indexed Job's pods (index 0 is the master, each pod's
    ``NODE_RANK`` its completion index) or, for one node with several GPUs, inside the pod."""
    multi_node = hardware.nodes > 1
    master = f"{name}-0.{name}" if multi_node else "127.0.0.1"
    env = _env_list(rendezvous_env(hardware, master, RENDEZVOUS_PORT))
    if multi_node:
        env.append({"name": "NODE_RANK",
                    "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}})
    return env


def _run_token_volume(audience: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The projected, pod-bound token the runtime reports metrics with (``MLP_RUN_TOKEN_FILE``)."""
    volume = {
        "name": "mlp-run-token",
        "projected": {
            "sources": [{"serviceAccountToken": {
                "audience": audience, "expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}}],
        },
    }
    mount = {"name": "mlp-run-token", "mountPath": str(TOKEN_DIR), "readOnly": True}
    return volume, mount


def make_job(
    spec: RunSpec,
    *,
    namespace: str,
    image: str | None,
    artifacts: ArtifactStore,
    secret_name: str | None,
    priority_class: str | None,
    token_audience: str = TOKEN_AUDIENCE,
    ttl_seconds: int = 3600,
    backoff_limit: int = 3,
    api_url: str | None = None,
    service_account: str | None = None,
) -> dict[str, Any]:
    """The ``batch/v1`` Job of one training or batch-prediction run.

    ``image`` overrides ``spec.image`` (None: use the spec's). ``secret_name`` is the user's
    credentials Secret (``envFrom``, optional so a user without one still runs).
    The run token is a projected service-account token of ``token_audience`` (see
    :data:`TOKEN_AUDIENCE`); no Kubernetes API token is mounted. ``api_url`` replaces
    ``MLP_URL`` with an address pods can reach (the platform's Service). A hardware size with
    ``nodes > 1`` gives an Indexed Job with the torchrun rendezvous environment; it needs the
    Service from :func:`make_headless_service`.
    """
    name = job_name(spec.run_id)
    pinned = pin_image(image or spec.image)
    labels = run_labels(spec)
    volumes, extra_env = _run_volumes(spec, artifacts)
    env = _env_list({**_translated_env(spec.env, volumes, api_url), **extra_env})
    token_volume, token_mount = _run_token_volume(token_audience)
    env.append({"name": TOKEN_FILE_ENV, "value": str(TOKEN_DIR / "token")})
    hardware = spec.hardware
    distributed = hardware.nodes > 1
    env.extend(_distributed_env(name, hardware))
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": pinned,
        "imagePullPolicy": _image_pull_policy(pinned),
        "command": ["python3", "-m", "mlplatform_server.runtime", spec.action],
        "workingDir": str(RUN_DIR),
        "env": env,
        "resources": _resources(hardware),
        "securityContext": _container_security_context(),
        "volumeMounts": [*volumes.mounts, token_mount],
    }
    if env_from := _env_from(secret_name):
        container["envFrom"] = env_from
    if distributed:
        container["ports"] = [{"name": "rendezvous", "containerPort": RENDEZVOUS_PORT}]
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security_context(),
        "containers": [container],
        "volumes": [*volumes.volumes, token_volume],
    }
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    if hardware.node_selector:
        pod_spec["nodeSelector"] = dict(hardware.node_selector)
    if tolerations := _tolerations(hardware):
        pod_spec["tolerations"] = tolerations
    if priority_class:
        pod_spec["priorityClassName"] = priority_class
    if distributed:
        pod_spec["subdomain"] = name
    job_spec: dict[str, Any] = {
        "backoffLimit": backoff_limit,
        "ttlSecondsAfterFinished": ttl_seconds,
        "podFailurePolicy": {
            "rules": [
                {
                    # A user error fails at once: the same code fails the same way again.
                    "action": "FailJob",
                    "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": USER_ERROR_EXIT_CODES},
                },
                {
                    # Preemption, eviction, node drain: not the run's fault, and not counted.
                    "action": "Ignore",
                    "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                },
            ]
        },
        "template": {
            "metadata": {"labels": dict(labels), "annotations": _annotations(spec.user)},
            "spec": pod_spec,
        },
    }
    if spec.timeout_seconds:
        job_spec["activeDeadlineSeconds"] = int(spec.timeout_seconds)
    if distributed:
        job_spec["completionMode"] = "Indexed"
        job_spec["completions"] = hardware.nodes
        job_spec["parallelism"] = hardware.nodes
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": _annotations(spec.user),
        },
        "spec": job_spec,
    }


def owner_reference(obj: dict[str, Any]) -> dict[str, Any]:
    """An ownerReference to a created object (it must carry ``metadata.uid``), so the garbage
    collector deletes the dependent with it (e.g. a token Secret with its Job)."""
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "blockOwnerDeletion": False,
    }


def make_headless_service(
    job: dict[str, Any], *, owner: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The headless Service of a distributed run: each pod of the Indexed Job gets the DNS name
    ``<job>-<index>.<job>``, so ``MASTER_ADDR`` points at index 0. Not-ready addresses are
    published because rendezvous happens before any pod is ready. ``owner``: the created Job,
    so the Service goes with it."""
    name = job["metadata"]["name"]
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": job["metadata"]["namespace"],
        "labels": dict(job["metadata"]["labels"]),
    }
    if owner is not None:
        metadata["ownerReferences"] = [owner_reference(owner)]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {JOB_NAME_LABEL: name},
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT, "targetPort": RENDEZVOUS_PORT}],
        },
    }


def make_secret(
    name: str,
    namespace: str,
    data: dict[str, str],
    labels: dict[str, str],
    *,
    encode: bool = False,
    owner: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An Opaque Secret: ``stringData`` by default, base64 ``data`` with ``encode``."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": {**MANAGED_BY, **labels}}
    if owner is not None:
        metadata["ownerReferences"] = [owner_reference(owner)]
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque"}
    if encode:
        body["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    else:
        body["stringData"] = dict(data)
    return body


def make_cronjob(
    spec: RunSpec,
    *,
    name: str,
    schedule: str,
    namespace: str,
    image: str | None,
    artifacts: ArtifactStore,
    secret_name: str | None,
    priority_class: str | None,
    time_zone: str | None = None,
    history: int = 3,
    starting_deadline_seconds: int = 300,
    api_url: str | None = None,
) -> dict[str, Any]:
    """A scheduled batch prediction: a CronJob whose job template is :func:`make_job`'s.
    ``spec`` is the template run (its ``run_dir`` is shared by every execution)."""
    job = make_job(
        spec,
        namespace=namespace,
        image=image,
        artifacts=artifacts,
        secret_name=secret_name,
        priority_class=priority_class,
        api_url=api_url,
    )
    labels = {**run_labels(spec), "mlplatform.io/schedule": sanitize_label_value(name)}
    job_spec = copy.deepcopy(job["spec"])
    job_spec["template"]["metadata"]["labels"] = dict(labels)
    cron_spec: dict[str, Any] = {
        "schedule": schedule,
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": starting_deadline_seconds,
        "successfulJobsHistoryLimit": history,
        "failedJobsHistoryLimit": history,
        "jobTemplate": {"metadata": {"labels": dict(labels)}, "spec": job_spec},
    }
    if time_zone:
        cron_spec["timeZone"] = time_zone
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": cronjob_name(name),
            "namespace": namespace,
            "labels": labels,
            "annotations": _annotations(spec.user),
        },
        "spec": cron_spec,
    }


# -- deployments -------------------------------------------------------------------------------


def make_deployment(
    spec: DeploymentSpec,
    *,
    namespace: str,
    image: str | None,
    artifacts: ArtifactStore,
    secret_name: str | None,
    priority_class: str | None = None,
    revision_history: int = 5,
) -> dict[str, Any]:
    """The Deployment serving a model: one serving worker per replica, probed on ``/ping``,
    rolled out without ever going below the wanted replicas."""
    name = deployment_name(spec.name)
    pinned = pin_image(image or spec.image)
    labels = deployment_labels(spec)
    volumes = _Volumes(artifacts)
    volumes.add(spec.module_path.parent, CODE_DIR, read_only=True, empty="code")
    volumes.add(spec.artifacts, ARTIFACTS_DIR, read_only=True, empty="artifacts")
    env = _translated_env(spec.env, volumes, None)
    env.update({"MLP_PORT": str(SERVING_PORT), "MLP_HOST": "0.0.0.0", "MLP_WORKERS": "1"})
    if artifacts.uri:
        env["MLP_MODEL_URI"] = artifacts.run_uri("models", spec.model, spec.version)
        env["MLP_ARTIFACTS_URI"] = artifacts.run_uri("runs", spec.artifacts.parent.name, spec.artifacts.name)
    probe = {"httpGet": {"path": "/ping", "port": "http"}}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": pinned,
        "imagePullPolicy": _image_pull_policy(pinned),
        "command": ["python3", "-m", "mlplatform_server.runtime", "serve"],
        "env": _env_list(env),
        "ports": [{"name": "http", "containerPort": SERVING_PORT}],
        "resources": _resources(spec.hardware),
        "securityContext": _container_security_context(),
        "volumeMounts": volumes.mounts,
        # init_predict may load a large model: up to 5 minutes before liveness applies.
        "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 60},
        "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 6},
    }
    if env_from := _env_from(secret_name):
        container["envFrom"] = env_from
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security_context(),
        # The runtime drains in-flight requests for MLP_STOP_GRACE_SECONDS (30) after SIGTERM.
        "terminationGracePeriodSeconds": 40,
        "containers": [container],
        "volumes": volumes.volumes,
    }
    if spec.hardware.node_selector:
        pod_spec["nodeSelector"] = dict(spec.hardware.node_selector)
    if tolerations := _tolerations(spec.hardware):
        pod_spec["tolerations"] = tolerations
    if priority_class:
        pod_spec["priorityClassName"] = priority_class
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": _annotations(spec.user),
        },
        "spec": {
            "replicas": spec.replicas,
            "revisionHistoryLimit": revision_history,
            "selector": {"matchLabels": _selector(spec)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": dict(labels), "annotations": _annotations(spec.user)}, "spec": pod_spec},
        },
    }


def make_service(spec: DeploymentSpec, *, namespace: str) -> dict[str, Any]:
    """The ClusterIP Service in front of a deployment: port 80 → the serving port."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": deployment_name(spec.name), "namespace": namespace, "labels": deployment_labels(spec)},
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(spec),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def make_hpa(
    spec: DeploymentSpec,
    *,
    namespace: str,
    min_replicas: int,
    max_replicas: int,
    cpu_utilization: int = 70,
) -> dict[str, Any]:
    """An ``autoscaling/v2`` HorizontalPodAutoscaler on the deployment's CPU use."""
    if not 1 <= min_replicas <= max_replicas:
        raise ValueError(f"autoscaling needs 1 <= min_replicas <= max_replicas, got {min_replicas}..{max_replicas}")
    name = deployment_name(spec.name)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": namespace, "labels": deployment_labels(spec)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu_utilization}},
                }
            ],
        },
    }

