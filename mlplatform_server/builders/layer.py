"""The `layer` builder: append one code layer and a new config onto the environment image, directly
in the registry. No daemon, no privileges: the base layers are mounted across repositories (no
bytes move), and only the code layer, the new config and the manifest are sent.
"""

from __future__ import annotations

import copy
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from .context import BASE_DIGEST_LABEL, BASE_NAME_LABEL, CODE_DIR, BuildContext, sha256_digest
from .registry import DOCKER_MANIFEST, OCI_MANIFEST, ImageRef, RegistryClient, RegistryError

BASE_ANNOTATIONS = (BASE_NAME_LABEL, BASE_DIGEST_LABEL)
HistoryMode = Literal["compact", "full"]  # config.py's builders.layer.history
HISTORY_MODES: tuple[str, ...] = get_args(HistoryMode)
LAYER_TYPES = {
    OCI_MANIFEST: ("application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.config.v1+json"),
    DOCKER_MANIFEST: ("application/vnd.docker.image.rootfs.diff.tar.gzip",
                      "application/vnd.docker.container.image.v1+json"),
}


@dataclass
class BuildResult:
    image: str  # registry/repository@sha256:...
    builder: str
    bytes_uploaded: int | None  # None: the engine builder cannot tell
    layer_size: int | None  # the compressed code layer
    seconds: float
    base_digest: str | None = None
    blobs_mounted: int = 0
    blobs_copied: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "builder": self.builder,
            "bytes_uploaded": self.bytes_uploaded,
            "layer_size": self.layer_size,
            "seconds": round(self.seconds, 3),
            "base_digest": self.base_digest,
            "blobs_mounted": self.blobs_mounted,
            "blobs_copied": self.blobs_copied,
        }


_FRACTION = re.compile(r"\.\d+(?=Z$|[+-]\d\d:\d\d$)")


def _history(base_history: list[dict[str, Any]], ctx: BuildContext, base_ref: str, mode: HistoryMode) -> list[dict[str, Any]]:
    """The model image's history. Each layer needs its entry (Podman refuses to build FROM an image
    whose history lists fewer layers than it has, and cannot show one without dates).

    ``full``: the base's history as it is, plus an entry for the code layer. ``compact``: per base
    layer only the date it was made (to the second), and no entries for empty layers (ENV, LABEL,
    …); the commands stay on the base image, which the model image names by digest (manifest
    annotations or labels ``org.opencontainers.image.base.*``). On the python environment the
    base's history is ≈ 2.4 KB of a 3.8 KB config: for a small code layer it was most of what a
    build uploaded besides the code."""
    if mode == "full":
        return list(base_history) + [{
            "created": ctx.created,
            "created_by": f"mlplatform layer builder: COPY code/ {CODE_DIR}/ ({len(ctx.files)} files)",
            "comment": f"{ctx.model}:{ctx.version} on {base_ref}",
        }]
    dated = [{"created": _FRACTION.sub("", entry.get("created") or ctx.created)}
             for entry in base_history if not entry.get("empty_layer")]
    return dated + [{"created": ctx.created, "created_by": f"COPY code/ {CODE_DIR}/"}]


def derive_config(base: dict[str, Any], ctx: BuildContext, diff_id: str, base_ref: str, base_digest: str,
                  history: HistoryMode = "compact", labels_in_annotations: bool = False) -> dict[str, Any]:
    """The base image's config plus the code layer, its env and labels (deterministic).

    ``history``: see _history; a base without one gives a model image without one (one entry for
    N layers would be wrong; the labels say what the code layer is either way).

    ``labels_in_annotations``: the manifest carries the base's name and digest (OCI manifests, as
    buildah writes them), so the config does not repeat them; a Docker manifest has no annotations,
    so there they are labels."""
    if history not in HISTORY_MODES:
        raise ValueError(f"history must be one of {', '.join(HISTORY_MODES)}, not {history!r}")
    config = copy.deepcopy(base)
    inner = config.setdefault("config", {})
    env = [e for e in (inner.get("Env") or []) if e.split("=", 1)[0] not in ctx.env]
    env += [f"{k}={v}" for k, v in sorted(ctx.env.items())]
    inner["Env"] = env
    labels = dict(inner.get("Labels") or {})
    labels.update(ctx.labels)
    if labels_in_annotations:
        for key in BASE_ANNOTATIONS:
            labels.pop(key, None)
    else:
        labels[BASE_DIGEST_LABEL] = base_digest
    inner["Labels"] = dict(sorted(labels.items()))
    config["created"] = ctx.created
    config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    config["rootfs"]["diff_ids"] = list(config["rootfs"].get("diff_ids") or []) + [diff_id]
    if config.get("history"):
        config["history"] = _history(config["history"], ctx, base_ref, history)
    return config


def build_layer(ctx: BuildContext, target: ImageRef, registry_url: str, auth_file: Path | str | None = None,
                history: HistoryMode = "compact") -> BuildResult:
    """Push `ctx` as `target` (a tag in the registry at `registry_url`) on top of ctx.env_image,
    which must be in the same registry. ``history``: see derive_config."""
    started = time.monotonic()
    base = ImageRef.parse(ctx.env_image)
    client = RegistryClient(registry_url, auth_file,
                            scopes=[f"repository:{target.repository}:pull,push", f"repository:{base.repository}:pull"])
    with client:
        if base.registry != client.registry:
            raise RegistryError(
                f"The layer builder appends onto the environment image inside one registry, but the image "
                f"{ctx.env_image} is in {base.registry}, not in {client.registry}: push the environment "
                f"image there, or use the engine builder", image=ctx.env_image)
        client.ping()
        manifest, media_type, base_digest = client.get_manifest(base.repository, base.reference)
        base_config = json.loads(client.get_blob(base.repository, manifest["config"]["digest"]))
        layer = ctx.code_layer()
        config = derive_config(base_config, ctx, layer.diff_id, str(base), base_digest, history,
                               labels_in_annotations=media_type == OCI_MANIFEST)
        config_bytes = json.dumps(config, separators=(",", ":")).encode()
        config_digest = sha256_digest(config_bytes)
        layer_type, config_type = LAYER_TYPES[media_type]

        for entry in manifest["layers"]:
            client.mount_blob(target.repository, entry["digest"], from_repository=base.repository)
        client.upload_blob(target.repository, layer.data, layer.digest)
        client.upload_blob(target.repository, config_bytes, config_digest)

        new = copy.deepcopy(manifest)
        new["config"] = {"mediaType": config_type, "digest": config_digest, "size": len(config_bytes)}
        new["layers"] = list(manifest["layers"]) + [
            {"mediaType": layer_type, "digest": layer.digest, "size": len(layer.data)}]
        if media_type == OCI_MANIFEST:
            annotations = dict(new.get("annotations") or {})
            annotations[BASE_NAME_LABEL] = str(base)
            annotations[BASE_DIGEST_LABEL] = base_digest
            new["annotations"] = annotations
        body = json.dumps(new, separators=(",", ":")).encode()
        digest = client.put_manifest(target.repository, target.tag or "latest", body, media_type)
        return BuildResult(
            image=f"{client.registry}/{target.repository}@{digest}",
            builder="layer",
            bytes_uploaded=client.bytes_uploaded,
            layer_size=len(layer.data),
            seconds=time.monotonic() - started,
            base_digest=base_digest,
            blobs_mounted=client.blobs_mounted,
            blobs_copied=client.blobs_copied,
        )
