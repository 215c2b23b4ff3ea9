"""The kubernetes backend: a run is a ``batch/v1`` Job (and a headless Service for a distributed run),
one API call to start it; a deployment a Deployment and a Service.

A run's pods report metrics with a projected service-account token of the platform's audience
(:data:`.manifests.TOKEN_AUDIENCE`), bound to the pod; :meth:`KubernetesBackend.authenticate_workload`
checks it with a TokenReview and maps the pod to its run.

Namespaces (namespaces.py): one configured namespace, or one per user (``namespace_prefix``), made by
an admin; with one per user the reference of a run, deployment or schedule is ``namespace/name``,
the watches are per (kind, namespace), started with a namespace's first use, and only pods of the
prefix's namespaces may report.

Semantics mirror the docker backend: the reference stored with a run is the Job's name, and the
run's state is read from the cluster (the Job's conditions and its pods' status) every time it is
asked, so a restarted server knows every run's true state. When the artifact store is a shared
volume the platform also sees, the runtime's result file (``run_dir/result.json``) is the truth
about how a finished run ended; otherwise (object storage, or kwok in tests, whose pods run no
code) a Job that completed is a success.

Known limits: a Job is deleted ``ttl_seconds`` after it finished; a run whose status was never
read in that window (the server down longer than that) and that left no result file reads as
"deleted outside the platform". Status is answered from one shared list-and-watch per kind (Jobs,
Pods, Deployments carrying the platform's label, Warning events; :mod:`.watches`) when it is synced, and from GETs
otherwise (before the first LIST, after a broken watch, or for an object the watch has not seen yet).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import os
import uuid
from collections.abc import AsyncIterator, Collection
from pathlib import Path
from typing import Any

from ...errors import BackendError, InvalidInput
from ..base import Backend, DeploymentSpec, DeploymentStatus, RunSpec, RunState, RunStatus
from ..common import append_text, read_result, read_text
from . import credentials as creds
from . import manifests as mf
from ..scheduling import Firing, ScheduleSpec
from .schedules import SCHEDULE_ID_LABEL, firing_of, make_schedule_cronjob
from .cache import Informer
from .identity import WorkloadIdentity
from .watches import ClusterView
from .client import ApiError, KubeClient, resource_path
from .namespaces import join_ref, split_ref, user_namespace, validate_prefix

log = logging.getLogger(__name__)

# A run's reason from its submit until the Job controller makes its pod (Backend.initial_reason).
NO_POD_YET = "waiting for the Job's pod to be created"
# A pending run whose Job is older than this (seconds) and whose pods say nothing gets its reason
# from Warning events: not for runs that are merely young.
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


# A Job the Job controller has finished, or is finishing (the *Target / SuccessCriteriaMet
# conditions come first, Complete / Failed once its pods are gone).
_FINISHED = {"Complete", "Failed", "SuccessCriteriaMet", "FailureTarget"}


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
    ``namespace_prefix`` instead of ``namespace``: one namespace per user, ``<prefix><user>``
    (namespaces.py), made by an admin; references are then ``<namespace>/<name>``.
    """
    name = "kubernetes"
    issues_run_tokens = False  # pods report with a projected service-account token instead
    initial_reason = NO_POD_YET  # the watches then ignore a Job the Job controller has not touched

    @property
    def artifacts_on_volume(self) -> bool:
        return not self.artifacts.uri

    def __init__(
        self,
        namespace: str | None,
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
        namespace_prefix: str | None = None,
    ) -> None:
        if (namespace is None) == (namespace_prefix is None):
            raise ValueError("the kubernetes backend needs one namespace or a namespace prefix (one namespace "
                             "per user), not both")
        if artifacts is None:
            if pvc:
                artifacts = mf.ArtifactStore(pvc=pvc, root=Path(data_dir) if data_dir else None)
            elif artifacts_uri:
                artifacts = mf.ArtifactStore(uri=artifacts_uri)
            else:
                raise ValueError("the kubernetes backend needs an artifact store: a RWX PVC (pvc + data_dir) "
                                 "or an object-store URI (artifacts_uri)")
        self.namespace = namespace  # None: one namespace per user
        self.namespace_prefix = validate_prefix(namespace_prefix) if namespace_prefix is not None else None
        self.artifacts = artifacts
        self.api_url = api_url
        self.priority_class = priority_class
        self.serving_priority_class = serving_priority_class
        self.ttl_seconds = ttl_seconds
        self.backoff_limit = backoff_limit
        self.user_credentials = user_credentials
        self.client = client or KubeClient.from_kubeconfig(kubeconfig, context)
        self.watch = watch
        self.view = ClusterView(self.client, namespace, self._ref, enabled=watch)
        self.identity = WorkloadIdentity(self.client, self.view, self.managed_namespace, self._ref)

    # -- namespaces: one configured, or one per user (namespaces.py) ------------------------
    def namespace_for(self, user: str) -> str:
        """The namespace of ``user``'s runs, deployments, schedules, credentials and builds."""
        if self.namespace is not None:
            return self.namespace
        assert self.namespace_prefix is not None
        try:
            return user_namespace(self.namespace_prefix, user)
        except ValueError as exc:
            raise BackendError(f"no namespace for user {user!r}: {exc}") from None

    def managed_namespace(self, namespace: str) -> bool:
        """Whether the platform keeps objects in ``namespace`` (the one, or any with the prefix)."""
        if self.namespace is not None:
            return namespace == self.namespace
        assert self.namespace_prefix is not None
        return len(namespace) > len(self.namespace_prefix) and namespace.startswith(self.namespace_prefix)

    def _ref(self, namespace: str, name: str) -> str:
        """The reference of an object: its name with one namespace, ``namespace/name`` per user."""
        return join_ref(None if self.namespace is not None else namespace, name)

    def _locate(self, ref: str, user: str | None = None) -> tuple[str, str]:
        """(namespace, name) of a reference (a bare name lives in the one namespace, or the user's)."""
        namespace, name = split_ref(ref)
        if namespace is None:
            if self.namespace is None and user is None:
                raise BackendError(f"the reference {ref!r} names no namespace (recorded in the one-namespace mode?)")
            namespace = self.namespace if self.namespace is not None else self.namespace_for(user or "")
        return namespace, name

    def _refusal(self, what: str, exc: ApiError, namespace: str, user: str) -> BackendError:
        """The API server's refusal as a BackendError; a user namespace that is missing (or one the
        platform may not use) says so, and what an admin must do."""
        missing = exc.not_found and f'namespaces "{namespace}" not found' in exc.message
        if self.namespace_prefix is not None and (missing or exc.status == 403):
            problem = "does not exist" if missing else f"does not let the platform in ({exc.message})"
            claim = f" and the RWX claim {self.artifacts.pvc} on the shared volume" if self.artifacts.pvc else ""
            return BackendError(
                f"Kubernetes refused {what}: the namespace {namespace} of user {user} {problem}; an admin must "
                f"create it, apply deploy/rbac/platform-role.yaml there{claim} (README: One namespace per user)")
        return BackendError(f"Kubernetes refused {what}: {exc.message}")

    # -- shared list-and-watch (watches.py) ---------------------------------------------
    @property
    def informers(self) -> dict[str, Informer]:
        """The informers of the one namespace, by kind (empty with one namespace per user)."""
        return self.view.informers_of()

    def _informer(self, kind: str, namespace: str | None = None) -> Informer | None:
        return self.view.informer(kind, namespace)

    def changed_refs(self) -> set[str] | None:
        return self.view.changed_refs()

    # -- helpers -------------------------------------------------------------
    def _credentials(self, user: str) -> str | None:
        return mf.credentials_secret_name(user) if self.user_credentials else None

    def job_manifest(self, spec: RunSpec) -> dict[str, Any]:
        try:
            return mf.make_job(
                spec,
                namespace=self.namespace_for(spec.user),
                image=None,
                artifacts=self.artifacts,
                secret_name=self._credentials(spec.user),
                priority_class=self.priority_class,
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

    # -- workload identity (identity.py) ------------------------------------------------
    async def authenticate_workload(self, token: str) -> str | None:
        return await self.identity.job_of(token)

    # -- runs ----------------------------------------------------------------
    def planned_ref(self, run_id: str, user: str) -> str | None:
        """The Job's name is derived from the run id (manifests.job_name), so it is known before the call."""
        try:
            namespace = self.namespace_for(user)
        except BackendError:  # submit says why
            return None
        return self._ref(namespace, mf.job_name(run_id))

    async def submit(self, spec: RunSpec) -> str:
        job = self.job_manifest(spec)
        name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
        try:
            created = await self.client.create(job, metadata_only=True)  # only its uid is needed
            if spec.hardware.nodes > 1:
                await self.client.create(mf.make_headless_service(job, owner=created))
        except ApiError as exc:
            raise self._refusal(f"run {spec.run_id}", exc, namespace, spec.user) from None
        if self.namespace is None:  # watch a user's namespace from its first run on
            self._informer("Job", namespace)
            self._informer("Pod", namespace)
        return self._ref(namespace, name)

    async def status(self, ref: str, spec: RunSpec) -> RunStatus:
        namespace, ref = self._locate(ref, spec.user)
        job = await self.view.get("batch/v1", "Job", ref, namespace)
        result = self._local_result(spec)
        if job is None:
            if result is not None:
                return result
            return RunStatus(RunState.FAILED, "the run's Job was deleted outside the platform", missing=True)
        conditions = _conditions(job)
        done = conditions.get("Complete") or conditions.get("SuccessCriteriaMet")
        failed = conditions.get("Failed") or conditions.get("FailureTarget")
        if done:
            return result or RunStatus(RunState.SUCCEEDED, None, 0)
        pods = await self.view.pods({mf.JOB_NAME_LABEL: ref}, namespace)
        if failed:
            if result is not None:
                return result
            return self._failure(failed, pods, job, spec)
        progress = self._progress(pods, spec)
        if progress.state == RunState.PENDING and (not progress.reason or not pods) and _age(job) > EVENTS_AFTER:
            # Pod conditions say nothing (yet): the latest warning about the pod, or about the Job
            # when it has none (e.g. FailedCreate: a quota, a missing PriorityClass).
            what, name = ("Pod", pods[-1]["metadata"]["name"]) if pods else ("Job", ref)
            warning = await self.view.warning(what, name, namespace)
            if warning:
                prefix = "the Job cannot create its pod" if what == "Job" else "the pod is not running"
                return RunStatus(RunState.PENDING, f"{prefix}: {warning}")
        return progress

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
            return RunStatus(RunState.PENDING, NO_POD_YET)
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
        namespace, name = self._locate(ref, spec.user)
        while True:
            pods = await self.view.listed_pods(name, namespace)
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
                    text = await self.client.pod_log(namespace, pod, mf.CONTAINER)
                    if text is None:
                        text = read_text(saved)
                    if text:
                        yield text
                    return
                async for chunk in self.client.stream_pod_log(namespace, pod, mf.CONTAINER):
                    yield chunk
                return
            except ApiError as exc:
                if exc.status == 400 and follow:  # the container has not started yet
                    if (await self.status(ref, spec)).state.final:
                        return
                    await asyncio.sleep(1.0)
                    continue
                if exc.not_found or (exc.status >= 500 and saved.exists()):
                    # The pod is gone, or its node's kubelet cannot be reached (e.g. a cancelled
                    # run's pod still being deleted): the copy kept when the run ended.
                    text = read_text(saved)
                    if text:
                        yield text
                    return
                raise

    async def cancel(self, ref: str, spec: RunSpec) -> None:
        namespace, ref = self._locate(ref, spec.user)
        await self.client.delete("batch/v1", "Job", namespace, ref, propagation="Background")
        if spec.hardware.nodes > 1:
            await self.client.delete("v1", "Service", namespace, ref)

    async def cleanup(self, ref: str, spec: RunSpec) -> None:
        namespace, ref = self._locate(ref, spec.user)
        pods = await self.view.pods({mf.JOB_NAME_LABEL: ref}, namespace)
        if pods:
            pod = pods[-1]["metadata"]["name"]
            try:
                text = await self.client.pod_log(namespace, pod, mf.CONTAINER)
            except ApiError as exc:  # e.g. the node's kubelet is unreachable: free the rest anyway
                log.warning("run %s: could not keep the log of pod %s: %s", spec.run_id, pod, exc)
                append_text(spec.run_dir / "logs.txt", f"MLP_WARNING the pod's log could not be kept: {exc.message}\n")
            else:
                if text is not None:
                    _write_atomic(spec.run_dir / "logs.txt", text)
        job = await self.view.get("batch/v1", "Job", ref, namespace)
        if job is not None and not (_FINISHED & set(_conditions(job))):
            # Final for the platform (e.g. out of memory) but the Job would retry: stop it.
            await self.client.delete("batch/v1", "Job", namespace, ref, propagation="Background")

    # -- deployments ---------------------------------------------------------
    def deployment_manifests(self, spec: DeploymentSpec) -> tuple[dict[str, Any], dict[str, Any]]:
        namespace = self.namespace_for(spec.user)
        try:
            deployment = mf.make_deployment(spec, namespace=namespace, image=None, artifacts=self.artifacts,
                                            secret_name=self._credentials(spec.user),
                                            priority_class=self.serving_priority_class)
        except ValueError as exc:
            raise BackendError(f"cannot deploy {spec.name} on Kubernetes: {exc}") from None
        return deployment, mf.make_service(spec, namespace=namespace)

    def _url(self, name: str, namespace: str | None = None) -> str:
        return f"http://{name}.{namespace or self.namespace}.svc.cluster.local"

    async def deploy(self, spec: DeploymentSpec) -> str:
        deployment, service = self.deployment_manifests(spec)
        name, namespace = deployment["metadata"]["name"], deployment["metadata"]["namespace"]
        try:
            if spec.autoscale is not None:
                # The autoscaler owns the replicas: a new version or a rollback leaves them alone.
                deployment["spec"]["replicas"] = spec.autoscale.min_replicas
                if await self.client.get_or_none("apps/v1", "Deployment", namespace, name) is not None:
                    del deployment["spec"]["replicas"]
            # A new version deployed to the same name patches the Deployment: a rolling update.
            await self.client.apply(deployment)
            await self.client.create(service)
            await self._autoscaler(spec)
        except ApiError as exc:
            raise self._refusal(f"deployment {spec.name}", exc, namespace, spec.user) from None
        return self._ref(namespace, name)

    # -- scaling -------------------------------------------------------------
    scales_in_place = True

    async def _autoscaler(self, spec: DeploymentSpec) -> None:
        """Create or update the deployment's HorizontalPodAutoscaler, or delete it when autoscaling is off."""
        namespace = self.namespace_for(spec.user)
        if spec.autoscale is None:
            await self.client.delete("autoscaling/v2", "HorizontalPodAutoscaler", namespace,
                                     mf.deployment_name(spec.name))
            return
        await self.client.apply(mf.make_hpa(spec, namespace=namespace, min_replicas=spec.autoscale.min_replicas,
                                            max_replicas=spec.autoscale.max_replicas,
                                            cpu_utilization=spec.autoscale.target_cpu))

    async def scale(self, ref: str, spec: DeploymentSpec) -> None:
        namespace, name = self._locate(ref, spec.user)
        try:
            await self._autoscaler(spec)
            if spec.autoscale is None:
                path = resource_path("apps/v1", "Deployment", namespace, name) + "/scale"
                await self.client.request("PATCH", path, json={"spec": {"replicas": spec.replicas}},
                                          content_type="application/merge-patch+json")
        except ApiError as exc:
            if exc.not_found:
                raise BackendError(f"Cannot scale deployment {spec.name}: its Deployment {ref} is gone "
                                   "(deleted outside the platform); deploy it again") from None
            raise BackendError(f"Kubernetes refused to scale deployment {spec.name}: {exc.message}") from None

    async def deployment_status(self, ref: str, spec: DeploymentSpec) -> DeploymentStatus:
        namespace, ref = self._locate(ref, spec.user)
        dep = await self.view.get("apps/v1", "Deployment", ref, namespace)
        if dep is None:
            return DeploymentStatus("failed", None, "the Deployment was deleted outside the platform")
        url = self._url(ref, namespace)
        status = dep.get("status") or {}
        wanted = (dep.get("spec") or {}).get("replicas", 1)
        current = status.get("observedGeneration", 0) >= dep["metadata"].get("generation", 0)
        if (current and status.get("availableReplicas", 0) >= wanted
                and status.get("updatedReplicas", 0) >= wanted):
            return DeploymentStatus("ready", url)
        stalled = next((c for c in (status.get("conditions") or [])
                        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"), None)
        pods = await self.view.pods(dep["spec"]["selector"]["matchLabels"], namespace)
        _, reason, oom = _pod_problems(pods, spec.image)
        if oom is not None:
            reason = f"out of memory: exceeded the hardware size's memory limit {spec.hardware.memory}"
        if stalled is not None:
            return DeploymentStatus("failed", None, reason or stalled.get("message"))
        return DeploymentStatus("deploying", url, reason)

    async def undeploy(self, ref: str, spec: DeploymentSpec) -> None:
        namespace, ref = self._locate(ref, spec.user)
        await asyncio.gather(
            self.client.delete("apps/v1", "Deployment", namespace, ref),
            self.client.delete("v1", "Service", namespace, ref),
            self.client.delete("autoscaling/v2", "HorizontalPodAutoscaler", namespace, ref),
        )

    # -- users' credentials: one Secret per user, mounted by envFrom (credentials.py) ----------
    keeps_credentials = True

    async def _credentials_call(self, what: str, user: str, call: Any) -> Any:
        """``call(namespace)`` (a credentials.py coroutine) with the API server's refusals as BackendError."""
        if not self.user_credentials:
            raise BackendError("this platform server does not give users' credentials to runs (user_credentials "
                               "is off), so it keeps none")
        namespace = self.namespace_for(user)
        try:
            return await call(namespace)
        except ApiError as exc:
            if self.namespace is None:
                raise self._refusal(f"to {what}", exc, namespace, user) from None
            raise BackendError(f"Kubernetes refused to {what}: {exc.message}") from None

    async def put_credential(self, user: str, key: str, value: str) -> dt.datetime | None:
        return await self._credentials_call(f"write the credential {key}", user,
                                            lambda ns: creds.put(self.client, ns, user, key, value))

    async def delete_credential(self, user: str, key: str) -> bool:
        return await self._credentials_call(f"delete the credential {key}", user,
                                            lambda ns: creds.delete(self.client, ns, user, key))

    async def credential_keys(self, user: str) -> dict[str, dt.datetime | None]:
        return await self._credentials_call("read the credentials Secret", user,
                                            lambda ns: creds.keys(self.client, ns, user))

    async def credential_env(self, user: str) -> dict[str, str]:
        return {}  # never literal values in a pod spec: Jobs and Deployments use envFrom

    # -- image builds: a BuildKit Job in the user's namespace (builders/buildkit.py) --
    builds_images = True

    async def build_image(self, ctx: Any, target: Any, registry_url: str, auth_file: str | Path | None,
                          settings: Any, user: str) -> Any:
        from ...builders.buildkit import build_buildkit

        return await build_buildkit(ctx, target, registry_url, auth_file, client=self.client,
                                    namespace=self.namespace_for(user), artifacts=self.artifacts,
                                    settings=settings, user=user)

    # -- scheduled batch prediction (schedules.py) -----------------------------
    fires_schedules = True

    async def create_schedule(self, spec: ScheduleSpec) -> str:
        namespace = self.namespace_for(spec.run.user)
        try:
            cronjob = make_schedule_cronjob(spec, namespace=namespace, artifacts=self.artifacts,
                                            secret_name=self._credentials(spec.run.user),
                                            priority_class=self.priority_class, api_url=self.api_url)
        except ValueError as exc:
            raise InvalidInput(f"cannot schedule {spec.name!r} on Kubernetes: {exc}") from None
        try:
            await self.client.apply(cronjob)  # a retried create finds its own CronJob
        except ApiError as exc:
            if self.namespace is None:
                raise self._refusal(f"the CronJob of schedule {spec.name!r}", exc, namespace, spec.run.user) from None
            raise BackendError(f"Kubernetes refused the CronJob of schedule {spec.name!r}: {exc.message}") from None
        if self.namespace is None:  # its firings are Jobs in the user's namespace
            self._informer("Job", namespace)
        return self._ref(namespace, cronjob["metadata"]["name"])

    async def suspend_schedule(self, ref: str, suspended: bool) -> None:
        namespace, ref = self._locate(ref)
        try:
            await self.client.patch("batch/v1", "CronJob", namespace, ref, {"spec": {"suspend": suspended}})
        except ApiError as exc:
            what = "was deleted outside the platform" if exc.not_found else f"could not be changed: {exc.message}"
            raise BackendError(f"the CronJob {ref} {what}") from None

    async def delete_schedule(self, ref: str) -> None:
        # Background propagation: the garbage collector deletes its Jobs, and their pods.
        namespace, ref = self._locate(ref)
        await self.client.delete("batch/v1", "CronJob", namespace, ref, propagation="Background")

    async def schedule_firings(self, refs: Collection[str] = ()) -> list[Firing]:
        if self.namespace is not None:
            return await self._firings(self.namespace)
        # One namespace per user: those of the schedules' CronJobs, and those whose Jobs are watched.
        namespaces = {ns for ns in (split_ref(ref)[0] for ref in refs) if ns}
        namespaces |= {ns for ns, watched in self.view.watches.items() if "Job" in watched}
        firings: list[Firing] = []
        for namespace in sorted(namespaces):
            try:
                found = await self._firings(namespace)
            except ApiError as exc:  # e.g. a user's namespace deleted: the others still fire
                log.warning("firings in namespace %s: %s", namespace, exc.message)
                continue
            firings += [dataclasses.replace(f, backend_ref=self._ref(namespace, f.ref)) for f in found]
        return firings

    async def _firings(self, namespace: str) -> list[Firing]:
        informer = self._informer("Job", namespace)
        if informer is not None:
            jobs = informer.select({}, having=SCHEDULE_ID_LABEL)
        else:
            selector = ",".join([*(f"{k}={v}" for k, v in mf.MANAGED_BY.items()), SCHEDULE_ID_LABEL])
            jobs = await self.client.list("batch/v1", "Job", namespace, label_selector=selector)
        return [f for f in map(firing_of, jobs) if f is not None]

    async def close(self) -> None:
        await self.view.stop()
        await self.client.close()



def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # a name of its own on shared storage
    tmp.write_text(text)
    os.replace(tmp, path)

