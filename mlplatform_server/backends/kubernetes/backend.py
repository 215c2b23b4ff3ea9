"""The kubernetes backend: a run is a ``batch/v1`` Job (plus a per-run token Secret, and a headless
Service for a distributed run), a deployment a Deployment and a Service.

Semantics mirror the docker backend: the reference stored with a run is the Job's name, and the
run's state is read from the cluster (the Job's conditions and its pods' status) every time it is
asked, so a restarted server knows every run's true state. When the artifact store is a shared
volume the platform also sees, the runtime's result file (``run_dir/result.json``) is the truth
about how a finished run ended; otherwise (object storage, or kwok in tests, whose pods run no
code) a Job that completed is a success.

Known limits: a Job is deleted ``ttl_seconds`` after it finished; a run whose status was never
read in that window (the server down longer than that) and that left no result file reads as
"deleted outside the platform". Status is answered from one shared list-and-watch per kind (Jobs,
Pods, Deployments carrying the platform's label; :mod:`.cache`) when it is synced, and from GETs
otherwise (before the first LIST, after a broken watch, or for an object the watch has not seen yet).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ...errors import BackendError
from ..base import Backend, DeploymentSpec, DeploymentStatus, RunSpec, RunState, RunStatus
from ..common import append_text, read_result, read_text
from . import manifests as mf
from .cache import Informer
from .client import ApiError, KubeClient

log = logging.getLogger(__name__)

# A pending run whose Job is older than this (seconds) and whose pods say nothing gets its reason
# from events (one LIST per status call): not for runs that are merely young.
EVENTS_AFTER = 5.0

_WAITING_PROBLEMS = {
    "ErrImagePull": "the image {image} could not be pulled",
    "ImagePullBackOff": "the image {image} could not be pulled",
    "InvalidImageName": "the image name {image} is not valid",
    "CreateContainerConfigError": "the container could not be configured",
    "CreateContainerError": "the container could not be created",
    "CrashLoopBackOff": "the container keeps crashing",
}


def _age(obj: dict[str, Any]) -> float:
    """Seconds since the object was created (0 when unknown)."""
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return 0.0
    try:
        when = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return (dt.datetime.now(dt.timezone.utc) - when).total_seconds()


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type", ""): c for c in (obj.get("status") or {}).get("conditions") or []
            if c.get("status") == "True" or c.get("type") == "PodScheduled"}


def _container_states(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in (pod.get("status") or {}).get("containerStatuses") or []]


def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    for cs in _container_states(pod):
        term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if term:
            return term
    return None


def _pod_problems(pods: list[dict[str, Any]], image: str | None) -> tuple[int, str | None, dict[str, Any] | None]:
    """How many pods run, why the others do not (scheduler, image pull, eviction...), and the
    container state of an out-of-memory kill if there was one."""
    running = 0
    reasons: list[str] = []
    for pod in pods:
        status = pod.get("status") or {}
        phase = status.get("phase")
        term = _terminated(pod)
        if term and term.get("reason") == "OOMKilled":
            return running, None, term
        if phase == "Running":
            running += 1
            continue
        if phase == "Failed" and status.get("reason") == "Evicted":
            reasons.append(f"evicted ({status.get('message') or 'node pressure'}); retrying")
            continue
        if phase != "Pending":
            continue
        sched = _conditions(pod).get("PodScheduled")
        if sched and sched.get("status") == "False":
            message = sched.get("message") or sched.get("reason") or "not scheduled yet"
            reasons.append(f"cannot be scheduled: {message}")
            continue
        for cs in _container_states(pod):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            template = _WAITING_PROBLEMS.get(waiting.get("reason", ""))
            if template:
                text = template.format(image=cs.get("image") or image)
                detail = waiting.get("message")
                reasons.append(f"{text}: {detail}" if detail else text)
    return running, "; ".join(dict.fromkeys(reasons)) or None, None


class KubernetesBackend(Backend):
    """See the module docstring. ``namespace``: where runs and deployments live (the platform's
    service account needs deploy/rbac/platform-role.yaml there). The artifact store is either
    ``artifacts`` or built from ``pvc`` + ``data_dir`` (the claim's root as the platform sees it)
    or ``artifacts_uri``. ``api_url``: ``MLP_URL`` as pods reach the platform API.
    ``priority_class`` / ``serving_priority_class``: ``priorityClassName`` of run / serving pods.
    ``user_credentials``: mount each user's ``mlp-cred-<user>`` Secret (optional) through envFrom.
    """
    name = "kubernetes"

    def __init__(
        self,
        namespace: str,
        kubeconfig: str | None = None,
        artifacts: mf.ArtifactStore | None = None,
        *,
        pvc: str | None = None,
        data_dir: str | Path | None = None,
        artifacts_uri: str | None = None,
        context: str | None = None,
        api_url: str | None = None,
        priority_class: str | None = None,
        serving_priority_class: str | None = None,
        ttl_seconds: int = 3600,
        backoff_limit: int = 3,
        user_credentials: bool = True,
        client: KubeClient | None = None,
        watch: bool = True,
    ) -> None:
        if artifacts is None:
            if pvc:
                artifacts = mf.ArtifactStore(pvc=pvc, root=Path(data_dir) if data_dir else None)
            elif artifacts_uri:
                artifacts = mf.ArtifactStore(uri=artifacts_uri)
            else:
                raise ValueError("the kubernetes backend needs an artifact store: a RWX PVC (pvc + data_dir) "
                                 "or an object-store URI (artifacts_uri)")
        self.namespace = namespace
        self.artifacts = artifacts
        self.api_url = api_url
        self.priority_class = priority_class
        self.serving_priority_class = serving_priority_class
        self.ttl_seconds = ttl_seconds
        self.backoff_limit = backoff_limit
        self.user_credentials = user_credentials
        self.client = client or KubeClient.from_kubeconfig(kubeconfig, context)
        self.watch = watch
        self.informers: dict[str, Informer] = {}

    # -- shared list-and-watch -------------------------------------------------
    def _informer(self, kind: str) -> Informer | None:
        """The synced watch cache of ``kind`` (Job, Pod, Deployment), started on first use; None
        while it is not synced (the caller reads the API server)."""
        if not self.watch:
            return None
        informer = self.informers.get(kind)
        if informer is None:
            api_version = {"Job": "batch/v1", "Pod": "v1", "Deployment": "apps/v1"}[kind]
            selector = ",".join(f"{k}={v}" for k, v in mf.MANAGED_BY.items())
            informer = self.informers[kind] = Informer(self.client, api_version, kind, self.namespace, selector)
        informer.start()
        return informer if informer.synced else None

    async def _get_cached(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        informer = self._informer(kind)
        obj = informer.get(name) if informer else None
        if obj is None:  # not synced, or not seen by the watch yet (just created or deleted)
            obj = await self.client.get_or_none(api_version, kind, self.namespace, name)
        return obj

    async def _pods_cached(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        informer = self._informer("Pod")
        if informer is not None:
            pods = informer.select(labels)
        else:
            selector = ",".join(f"{k}={v}" for k, v in labels.items())
            pods = await self.client.list("v1", "Pod", self.namespace, label_selector=selector)
        return sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")

    # -- helpers -------------------------------------------------------------
    def _credentials(self, user: str) -> str | None:
        return mf.credentials_secret_name(user) if self.user_credentials else None

    def job_manifest(self, spec: RunSpec) -> dict[str, Any]:
        try:
            return mf.make_job(
                spec,
                namespace=self.namespace,
                image=None,
                artifacts=self.artifacts,
                secret_name=self._credentials(spec.user),
                priority_class=self.priority_class,
                run_token_secret=mf.run_token_secret_name(spec.run_id),
                ttl_seconds=self.ttl_seconds,
                backoff_limit=self.backoff_limit,
                api_url=self.api_url,
            )
        except ValueError as exc:
            raise BackendError(f"cannot run {spec.action} run {spec.run_id} on Kubernetes: {exc}") from None

    def _local_result(self, spec: RunSpec) -> RunStatus | None:
        if self.artifacts.pvc is None:
            return None
        return read_result(spec.run_dir / "result.json")

    async def _pods(self, job: str) -> list[dict[str, Any]]:
        pods = await self.client.list("v1", "Pod", self.namespace, label_selector=f"{mf.JOB_NAME_LABEL}={job}")
        return sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")

    # -- runs ----------------------------------------------------------------
    async def submit(self, spec: RunSpec) -> str:
        job = self.job_manifest(spec)
        name = job["metadata"]["name"]
        labels = mf.run_labels(spec)
        secret = mf.make_secret(mf.run_token_secret_name(spec.run_id), self.namespace,
                                {mf.TOKEN_KEY: spec.env.get(mf.TOKEN_KEY, "")}, labels)
        try:
            # A retried submit may carry a newer token: the Secret holds the latest one.
            await self.client.apply(secret)
            created = await self.client.create(job)
            owner = mf.owner_reference(created)
            steps = [self.client.patch("v1", "Secret", self.namespace, secret["metadata"]["name"],
                                       {"metadata": {"ownerReferences": [owner]}})]
            if spec.hardware.nodes > 1:
                steps.append(self.client.create(mf.make_headless_service(job, owner=created)))
            await asyncio.gather(*steps)
        except ApiError as exc:
            raise BackendError(f"Kubernetes refused run {spec.run_id}: {exc.message}") from None
        return name

    async def status(self, ref: str, spec: RunSpec) -> RunStatus:
        job = await self._get_cached("batch/v1", "Job", ref)
        result = self._local_result(spec)
        if job is None:
            if result is not None:
                return result
            return RunStatus(RunState.FAILED, "the run's Job was deleted outside the platform")
        conditions = _conditions(job)
        done = conditions.get("Complete") or conditions.get("SuccessCriteriaMet")
        failed = conditions.get("Failed") or conditions.get("FailureTarget")
        if done:
            return result or RunStatus(RunState.SUCCEEDED, None, 0)
        pods = await self._pods_cached({mf.JOB_NAME_LABEL: ref})
        if failed:
            if result is not None:
                return result
            return self._failure(failed, pods, job, spec)
        progress = self._progress(pods, spec)
        if progress.state == RunState.PENDING and (not progress.reason or not pods) and _age(job) > EVENTS_AFTER:
            # Pod conditions say nothing (yet): the latest warning about the pod, or about the Job
            # when it has none (e.g. FailedCreate: a quota, a missing PriorityClass).
            what, name = ("Pod", pods[-1]["metadata"]["name"]) if pods else ("Job", ref)
            warning = await self._warning(what, name)
            if warning:
                prefix = "the Job cannot create its pod" if what == "Job" else "the pod is not running"
                return RunStatus(RunState.PENDING, f"{prefix}: {warning}")
        return progress

    async def _warning(self, kind: str, name: str) -> str | None:
        """The latest Warning event about an object, as "Reason: message"; None if none (or not readable)."""
        try:
            events = await self.client.list("v1", "Event", self.namespace, field_selector=(
                f"involvedObject.kind={kind},involvedObject.name={name},type=Warning"))
        except ApiError as exc:
            log.debug("events of %s %s: %s", kind, name, exc)
            return None
        if not events:
            return None
        latest = max(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime")
                     or e["metadata"].get("creationTimestamp") or "")
        return f"{latest.get('reason') or 'Warning'}: {latest.get('message') or ''}".rstrip(": ")

    def _failure(self, cond: dict[str, Any], pods: list[dict[str, Any]], job: dict[str, Any],
                 spec: RunSpec) -> RunStatus:
        reason = cond.get("reason") or ""
        term = next((t for t in (_terminated(p) for p in reversed(pods)) if t), None)
        code = term.get("exitCode") if term else None
        if term and term.get("reason") == "OOMKilled":
            return RunStatus(RunState.FAILED, self._oom(spec), code)
        if reason == "DeadlineExceeded":
            limit = job["spec"].get("activeDeadlineSeconds")
            return RunStatus(RunState.FAILED, f"the run exceeded its time limit of {limit} seconds", code)
        if reason == "PodFailurePolicy":
            return RunStatus(RunState.FAILED, f"the run's code failed (exit code {code}); not retried", code)
        if reason == "BackoffLimitExceeded":
            tries = job["spec"].get("backoffLimit", 0) + 1
            what = f" (last exit code {code}{': ' + term['message'] if term and term.get('message') else ''})" \
                if code is not None else ""
            return RunStatus(RunState.FAILED, f"the run's pod failed {tries} times{what}", code)
        message = cond.get("message") or reason or "the Job failed"
        return RunStatus(RunState.FAILED, f"the run's Job failed: {message}", code)

    def _oom(self, spec: RunSpec) -> str:
        return f"out of memory: exceeded the hardware size's memory limit {spec.hardware.memory}"

    def _progress(self, pods: list[dict[str, Any]], spec: RunSpec) -> RunStatus:
        if not pods:
            return RunStatus(RunState.PENDING, "waiting for the Job's pod to be created")
        running, reasons, oom = _pod_problems(pods, spec.image)
        if oom is not None:
            # Retrying with the same memory limit fails the same way: the run has failed
            # (cleanup deletes the Job so it is not retried).
            return RunStatus(RunState.FAILED, self._oom(spec), oom.get("exitCode"))
        if reasons:
            return RunStatus(RunState.PENDING, reasons)
        nodes = max(1, spec.hardware.nodes)
        if running >= nodes:
            return RunStatus(RunState.RUNNING)
        if running:
            return RunStatus(RunState.RUNNING, f"{running} of {nodes} nodes running")
        return RunStatus(RunState.PENDING)

    async def logs(self, ref: str, spec: RunSpec, follow: bool = False) -> AsyncIterator[str]:
        saved = spec.run_dir / "logs.txt"
        while True:
            pods = await self._pods(ref)
            pod = pods[-1]["metadata"]["name"] if pods else None
            if pod is None:
                if not follow or (await self.status(ref, spec)).state.final:
                    text = read_text(saved)
                    if text:
                        yield text
                    return
                await asyncio.sleep(1.0)
                continue
            try:
                if not follow:
                    text = await self.client.pod_log(self.namespace, pod, mf.CONTAINER)
                    if text is None:
                        text = read_text(saved)
                    if text:
                        yield text
                    return
                async for chunk in self.client.stream_pod_log(self.namespace, pod, mf.CONTAINER):
                    yield chunk
                return
            except ApiError as exc:
                if exc.status == 400 and follow:  # the container has not started yet
                    if (await self.status(ref, spec)).state.final:
                        return
                    await asyncio.sleep(1.0)
                    continue
                if exc.not_found:
                    text = read_text(saved)
                    if text:
                        yield text
                    return
                raise

    async def cancel(self, ref: str, spec: RunSpec) -> None:
        await asyncio.gather(
            self.client.delete("batch/v1", "Job", self.namespace, ref, propagation="Background"),
            self.client.delete("v1", "Secret", self.namespace, mf.run_token_secret_name(spec.run_id)),
        )
        if spec.hardware.nodes > 1:
            await self.client.delete("v1", "Service", self.namespace, ref)

    async def cleanup(self, ref: str, spec: RunSpec) -> None:
        pods = await self._pods(ref)
        if pods:
            pod = pods[-1]["metadata"]["name"]
            try:
                text = await self.client.pod_log(self.namespace, pod, mf.CONTAINER)
            except ApiError as exc:  # e.g. the node's kubelet is unreachable: free the rest anyway
                log.warning("run %s: could not keep the log of pod %s: %s", spec.run_id, pod, exc)
                append_text(spec.run_dir / "logs.txt", f"MLP_WARNING the pod's log could not be kept: {exc.message}\n")
            else:
                if text is not None:
                    _write_atomic(spec.run_dir / "logs.txt", text)
        job = await self.client.get_or_none("batch/v1", "Job", self.namespace, ref)
        if job is not None and not ({"Complete", "Failed"} & set(_conditions(job))):
            # Final for the platform (e.g. out of memory) but the Job would retry: stop it.
            await self.client.delete("batch/v1", "Job", self.namespace, ref, propagation="Background")
        await self.client.delete("v1", "Secret", self.namespace, mf.run_token_secret_name(spec.run_id))

    # -- deployments ---------------------------------------------------------
    def deployment_manifests(self, spec: DeploymentSpec) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            deployment = mf.make_deployment(spec, namespace=self.namespace, image=None, artifacts=self.artifacts,
                                            secret_name=self._credentials(spec.user),
                                            priority_class=self.serving_priority_class)
        except ValueError as exc:
            raise BackendError(f"cannot deploy {spec.name} on Kubernetes: {exc}") from None
        return deployment, mf.make_service(spec, namespace=self.namespace)

    def _url(self, name: str) -> str:
        return f"http://{name}.{self.namespace}.svc.cluster.local"

    async def deploy(self, spec: DeploymentSpec) -> str:
        deployment, service = self.deployment_manifests(spec)
        try:
            # A new version deployed to the same name patches the Deployment: a rolling update.
            await self.client.apply(deployment)
            await self.client.create(service)
        except ApiError as exc:
            raise BackendError(f"Kubernetes refused deployment {spec.name}: {exc.message}") from None
        return deployment["metadata"]["name"]

    async def deployment_status(self, ref: str, spec: DeploymentSpec) -> DeploymentStatus:
        dep = await self._get_cached("apps/v1", "Deployment", ref)
        if dep is None:
            return DeploymentStatus("failed", None, "the Deployment was deleted outside the platform")
        url = self._url(ref)
        status = dep.get("status") or {}
        wanted = (dep.get("spec") or {}).get("replicas", 1)
        current = status.get("observedGeneration", 0) >= dep["metadata"].get("generation", 0)
        if (current and status.get("availableReplicas", 0) >= wanted
                and status.get("updatedReplicas", 0) >= wanted):
            return DeploymentStatus("ready", url)
        stalled = next((c for c in (status.get("conditions") or [])
                        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"), None)
        pods = await self._pods_cached(dep["spec"]["selector"]["matchLabels"])
        _, reason, oom = _pod_problems(pods, spec.image)
        if oom is not None:
            reason = f"out of memory: exceeded the hardware size's memory limit {spec.hardware.memory}"
        if stalled is not None:
            return DeploymentStatus("failed", None, reason or stalled.get("message"))
        return DeploymentStatus("deploying", url, reason)

    async def undeploy(self, ref: str, spec: DeploymentSpec) -> None:
        await asyncio.gather(
            self.client.delete("apps/v1", "Deployment", self.namespace, ref),
            self.client.delete("v1", "Service", self.namespace, ref),
            self.client.delete("autoscaling/v2", "HorizontalPodAutoscaler", self.namespace, ref),
        )

    async def close(self) -> None:
        await asyncio.gather(*(informer.stop() for informer in self.informers.values()))
        await self.client.close()



def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)

