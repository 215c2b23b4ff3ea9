"""A stand-in for the kubelet: run a Kubernetes pod spec's containers in a Docker-compatible engine
(Podman here), mapped field by field. Only for tests, and only because the test control plane's
kwok nodes run no containers: a pod spec the platform generates (the buildkit builder's Job) can
then be run for real, so that its image, command, args, env, user and security context are proven
to work, not merely accepted by the API server.

What it maps (and how the kubelet + a CRI runtime would apply it):

- init containers one after the other, each to completion; a failed one ends the pod (``restartPolicy:
  Never``); then the containers (exactly one: the kubelet would run several side by side);
- ``command`` → the entrypoint, ``args`` → the command (``command`` without ``args`` drops the image's
  CMD), ``env`` (``value`` only), ``workingDir``; the image must already be on the engine
  (``imagePullPolicy`` is honoured as "never pull");
- the effective security context (container over pod): ``runAsUser``/``runAsGroup`` → ``--user``,
  ``runAsNonRoot`` is checked like the kubelet does, ``fsGroup`` → a supplemental group and the group
  of the emptyDir volumes (setgid), ``seccompProfile`` Unconfined → ``seccomp=unconfined``
  (RuntimeDefault: the engine's default profile), ``appArmorProfile`` Unconfined →
  ``apparmor=unconfined``, ``allowPrivilegeEscalation: false`` → ``no-new-privileges``,
  ``capabilities`` → ``--cap-drop``/``--cap-add``, ``readOnlyRootFilesystem`` → ``--read-only``,
  ``privileged`` → ``--privileged``;
- ``resources.limits`` cpu and memory → the engine's limits (ephemeral-storage is not enforced);
- volumes: a ``persistentVolumeClaim`` is a host directory the caller gives per claim name (a
  mount's ``subPath`` is a directory below it), an ``emptyDir`` a fresh 0777 directory per pod, a
  ``secret`` its ``items`` written as 0644 files from the Secret manifest the caller gives.

Any field it does not know makes it fail (:class:`Unmapped`) instead of silently running something
else than the manifest says. Containers are created through Podman's own API (``libpod/containers/
create``, on the same socket as the Docker-compatible one the docker SDK then starts, waits for and
inspects them with): its Docker-compatible create adds writable tmpfs mounts on /tmp, /var/tmp and
/run to a read-only root filesystem, which Kubernetes does not. The pod shares the host's network
(the test registries listen on loopback), like ``hostNetwork: true``; no service-account token is
mounted, so the spec must say ``automountServiceAccountToken: false``.
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

POD_FIELDS = {"restartPolicy", "automountServiceAccountToken", "enableServiceLinks", "securityContext",
              "initContainers", "containers", "volumes",
              "imagePullSecrets", "nodeSelector"}  # scheduling / pulling: nothing to run differently
CONTAINER_FIELDS = {"name", "image", "imagePullPolicy", "command", "args", "env", "workingDir", "resources",
                    "securityContext", "volumeMounts"}
SECURITY_FIELDS = {"runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "seccompProfile", "appArmorProfile",
                   "privileged", "allowPrivilegeEscalation", "capabilities", "readOnlyRootFilesystem"}
POD_ONLY_SECURITY = {"fsGroup"}
MOUNT_FIELDS = {"name", "mountPath", "subPath", "readOnly"}


class Unmapped(AssertionError):
    """The pod spec uses something the stand-in does not map: extend it, never ignore the field."""


@dataclass
class ContainerRun:
    name: str
    exit_code: int
    logs: str
    seconds: float
    attrs: dict[str, Any]  # the engine's inspect of the container (Config, HostConfig, State)


@dataclass
class PodRun:
    containers: list[ContainerRun] = field(default_factory=list)

    def get(self, name: str) -> ContainerRun:
        return next(c for c in self.containers if c.name == name)


def _only(what: str, obj: dict[str, Any], known: set[str]) -> None:
    unknown = set(obj) - known
    if unknown:
        raise Unmapped(f"the kubelet stand-in does not map {what} field(s) {sorted(unknown)}")


def _quantity(value: str | int | float) -> float:
    """A Kubernetes quantity as a number (bytes, or cores for cpu)."""
    text = str(value)
    suffixes = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
                "m": 1e-3}
    for suffix, factor in suffixes.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def effective_security(pod_sc: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """The container's security context over the pod's (fields both levels have)."""
    sc = container.get("securityContext") or {}
    _only(f"container {container['name']} securityContext", sc, SECURITY_FIELDS - POD_ONLY_SECURITY)
    inherited = {k: v for k, v in pod_sc.items() if k not in POD_ONLY_SECURITY}
    return {**inherited, **sc}


def security_options(sc: dict[str, Any]) -> dict[str, Any]:
    """Podman's container-create fields (libpod SpecGenerator) for an effective security context."""
    spec: dict[str, Any] = {}
    seccomp = (sc.get("seccompProfile") or {}).get("type", "RuntimeDefault")
    if seccomp == "Unconfined":
        spec["seccomp_profile_path"] = "unconfined"
    elif seccomp != "RuntimeDefault":  # RuntimeDefault: the engine's default profile
        raise Unmapped(f"seccompProfile {seccomp}")
    apparmor = (sc.get("appArmorProfile") or {}).get("type", "RuntimeDefault")
    if apparmor == "Unconfined":
        spec["apparmor_profile"] = "unconfined"
    elif apparmor != "RuntimeDefault":
        raise Unmapped(f"appArmorProfile {apparmor}")
    caps = sc.get("capabilities") or {}
    _only("capabilities", caps, {"add", "drop"})
    spec.update(
        no_new_privileges=sc.get("allowPrivilegeEscalation") is False,  # unset: allowed, as in Kubernetes
        cap_drop=list(caps.get("drop") or []), cap_add=list(caps.get("add") or []),
        privileged=bool(sc.get("privileged", False)),
        read_only_filesystem=bool(sc.get("readOnlyRootFilesystem", False)))
    return spec


def _user(engine: Any, image: str, sc: dict[str, Any], name: str) -> str | None:
    """``uid[:gid]`` for the engine, after the kubelet's runAsNonRoot check."""
    uid = sc.get("runAsUser")
    if sc.get("runAsNonRoot"):
        image_user = (engine.images.get(image).attrs.get("Config") or {}).get("User") or "0"
        effective = uid if uid is not None else image_user.split(":")[0]
        if not str(effective).isdigit() or int(effective) == 0:
            raise AssertionError(f"container {name}: runAsNonRoot, and it would run as {effective!r} "
                                 "(the kubelet refuses: CreateContainerConfigError)")
    if uid is None:
        return None if sc.get("runAsGroup") is None else f"0:{sc['runAsGroup']}"
    return f"{uid}:{sc['runAsGroup']}" if sc.get("runAsGroup") is not None else str(uid)


class _Volumes:
    """The pod's volumes as host directories."""

    def __init__(self, spec: list[dict[str, Any]], claims: dict[str, Path], secrets: list[dict[str, Any]],
                 scratch: Path, fs_group: int | None) -> None:
        self.paths: dict[str, Path] = {}
        by_name = {s["metadata"]["name"]: s for s in secrets}
        for volume in spec:
            name = volume["name"]
            kinds = set(volume) - {"name"}
            if kinds == {"persistentVolumeClaim"}:
                self.paths[name] = claims[volume["persistentVolumeClaim"]["claimName"]]
            elif kinds == {"emptyDir"}:
                self.paths[name] = self._empty_dir(scratch / f"empty-{name}", fs_group)
            elif kinds == {"secret"}:
                self.paths[name] = self._secret(scratch / f"secret-{name}", volume["secret"], by_name)
            else:
                raise Unmapped(f"volume {name} of kind {sorted(kinds)}")

    @staticmethod
    def _empty_dir(path: Path, fs_group: int | None) -> Path:
        path.mkdir(parents=True)
        path.chmod(0o777)
        if fs_group is not None:
            shutil.chown(path, group=fs_group)
            path.chmod(0o2777)
        return path

    @staticmethod
    def _secret(path: Path, source: dict[str, Any], secrets: dict[str, dict[str, Any]]) -> Path:
        _only("secret volume", source, {"secretName", "items"})
        data = secrets[source["secretName"]]["data"]
        path.mkdir(parents=True)
        for item in source.get("items") or [{"key": k, "path": k} for k in data]:
            target = path / item["path"]
            target.write_bytes(base64.b64decode(data[item["key"]]))
            target.chmod(0o644)
        return path

    def mounts(self, container: dict[str, Any]) -> list[dict[str, Any]]:
        mounts = []
        for m in container.get("volumeMounts") or []:
            _only("volumeMount", m, MOUNT_FIELDS)
            source = self.paths[m["name"]]
            if m.get("subPath"):
                sub = PurePosixPath(m["subPath"])
                assert not sub.is_absolute() and ".." not in sub.parts, m
                source = source / sub
                source.mkdir(parents=True, exist_ok=True)  # the kubelet creates a missing subPath
            mounts.append({"type": "bind", "source": str(source), "destination": m["mountPath"],
                           "options": ["rbind", "ro" if m.get("readOnly") else "rw"]})
        return mounts


def validate_container(pod_sc: dict[str, Any], container: dict[str, Any]) -> None:
    """Fail on any field of `container` the stand-in does not map."""
    _only(f"container {container.get('name')}", container, CONTAINER_FIELDS)
    security_options(effective_security(pod_sc, container))
    for m in container.get("volumeMounts") or []:
        _only("volumeMount", m, MOUNT_FIELDS)
    for item in container.get("env") or []:
        _only("env", item, {"name", "value"})


def container_spec(engine: Any, container: dict[str, Any], pod_sc: dict[str, Any], volumes: _Volumes,
                   name: str) -> dict[str, Any]:
    """Podman's create request (libpod SpecGenerator) for one container of the pod."""
    _only(f"container {container.get('name')}", container, CONTAINER_FIELDS)
    image = container["image"]
    engine.images.get(image)  # never pulled: it must be there
    sc = effective_security(pod_sc, container)
    env = {}
    for item in container.get("env") or []:
        _only("env", item, {"name", "value"})
        env[item["name"]] = item.get("value", "")
    spec: dict[str, Any] = {
        "image": image, "name": name, "env": env, "mounts": volumes.mounts(container),
        "netns": {"nsmode": "host"}, **security_options(sc)}
    user = _user(engine, image, sc, container["name"])
    if user:
        spec["user"] = user
    if pod_sc.get("fsGroup") is not None:
        spec["groups"] = [str(pod_sc["fsGroup"])]
    if container.get("workingDir"):
        spec["work_dir"] = container["workingDir"]
    if container.get("command") is not None:  # the image's ENTRYPOINT and CMD are both replaced
        spec["entrypoint"] = list(container["command"])
        spec["command"] = list(container.get("args") or [])
    elif container.get("args") is not None:
        spec["command"] = list(container["args"])
    limits = (container.get("resources") or {}).get("limits") or {}
    resources: dict[str, Any] = {}
    if "memory" in limits:
        resources["memory"] = {"limit": int(_quantity(limits["memory"]))}
    if "cpu" in limits:
        resources["cpu"] = {"period": 100_000, "quota": int(_quantity(limits["cpu"]) * 100_000)}
    if resources:
        spec["resource_limits"] = resources
    return spec


def _create(engine: Any, spec: dict[str, Any]) -> Any:
    response = engine.api.post(f"{engine.api.base_url}/v4.0.0/libpod/containers/create", data=json.dumps(spec),
                               headers={"Content-Type": "application/json"})
    if response.status_code >= 300:
        raise AssertionError(f"Podman refused to create {spec['name']}: {response.text}")
    return engine.containers.get(response.json()["Id"])


def _run_container(engine: Any, container: dict[str, Any], pod_sc: dict[str, Any], volumes: _Volumes,
                   timeout: float, pod_id: str) -> ContainerRun:
    created = _create(engine, container_spec(engine, container, pod_sc, volumes, f"{pod_id}-{container['name']}"))
    try:
        started = time.monotonic()
        created.start()
        exit_code = created.wait(timeout=timeout)["StatusCode"]
        seconds = time.monotonic() - started
        created.reload()
        logs = created.logs(stdout=True, stderr=True).decode(errors="replace")
        return ContainerRun(container["name"], exit_code, logs, seconds, created.attrs)
    finally:
        created.remove(force=True)


def run_pod(engine: Any, pod_spec: dict[str, Any], *, claims: dict[str, Path], secrets: list[dict[str, Any]],
            timeout: float = 600) -> PodRun:
    """Run `pod_spec` (``spec.template.spec`` of a Job) to completion; the containers' runs.
    `claims`: a host directory per PersistentVolumeClaim name; `secrets`: the Secret manifests."""
    _only("pod spec", pod_spec, POD_FIELDS)
    if pod_spec.get("restartPolicy") != "Never":
        raise Unmapped(f"restartPolicy {pod_spec.get('restartPolicy')!r} (only Never)")
    if pod_spec.get("automountServiceAccountToken") is not False:
        raise Unmapped("a service-account token (the stand-in mounts none)")
    pod_sc = pod_spec.get("securityContext") or {}
    _only("pod securityContext", pod_sc, SECURITY_FIELDS - {"privileged", "allowPrivilegeEscalation",
                                                             "capabilities", "readOnlyRootFilesystem"})
    containers = pod_spec.get("containers") or []
    if len(containers) != 1:
        raise Unmapped(f"{len(containers)} containers (the stand-in runs one, after the init containers)")
    for container in [*(pod_spec.get("initContainers") or []), *containers]:
        validate_container(pod_sc, container)  # before anything runs
    pod_id = f"standin-{uuid.uuid4().hex[:10]}"
    scratch = Path(tempfile.mkdtemp(prefix=f"{pod_id}-"))
    run = PodRun()
    try:
        volumes = _Volumes(pod_spec.get("volumes") or [], claims, secrets, scratch, pod_sc.get("fsGroup"))
        for container in [*(pod_spec.get("initContainers") or []), *containers]:
            result = _run_container(engine, container, pod_sc, volumes, timeout, pod_id)
            run.containers.append(result)
            if result.exit_code != 0:
                break
        return run
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
