"""Users' credentials on Kubernetes: one Opaque Secret per user.

The Secret is :func:`manifests.credentials_secret_name` (``mlp-cred-<user>``), labelled
``app.kubernetes.io/managed-by=mlplatform``, ``mlplatform.io/component=credentials`` and
``mlplatform.io/user``; the exact user name is in the ``mlplatform.io/user`` annotation. Each
key's last write time is in the annotation ``credentials.mlplatform.io/updated-<hash of the key>``
(``{"key": ..., "updated": ...}``: env var names are not all valid annotation names).

Every write touches one key only: a JSON merge patch of ``data[KEY]`` and its annotation (the
Secret is created when it does not exist yet), so concurrent writes of different keys never lose
one, and deleting a key is a merge patch with ``null``. Runs and deployments reference the Secret
through ``envFrom`` (manifests.py), so no value is ever written into a pod spec. Values are never
logged; the platform reads the Secret only for its key names.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from typing import Any

from . import manifests as mf
from .client import ApiError, KubeClient, resource_path
from .names import sanitize_label_value

ANNOTATION_PREFIX = "credentials.mlplatform.io/updated-"
COMPONENT = {"mlplatform.io/component": "credentials"}


def updated_annotation(key: str) -> str:
    return ANNOTATION_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:20]


def secret_labels(user: str) -> dict[str, str]:
    return {**mf.MANAGED_BY, **COMPONENT, "mlplatform.io/user": sanitize_label_value(user)}


def _metadata(user: str, key: str, updated: dt.datetime) -> dict[str, Any]:
    stamp = json.dumps({"key": key, "updated": updated.isoformat()})
    return {"labels": secret_labels(user), "annotations": {"mlplatform.io/user": user, updated_annotation(key): stamp}}


def set_patch(user: str, key: str, value: str, updated: dt.datetime) -> dict[str, Any]:
    """A JSON merge patch that sets one key (and its write time), leaving every other key alone."""
    return {"metadata": _metadata(user, key, updated), "data": {key: base64.b64encode(value.encode()).decode()}}


def delete_patch(key: str) -> dict[str, Any]:
    return {"metadata": {"annotations": {updated_annotation(key): None}}, "data": {key: None}}


def make_credentials_secret(namespace: str, user: str, key: str, value: str, updated: dt.datetime) -> dict[str, Any]:
    """The user's Secret holding its first key."""
    body = set_patch(user, key, value, updated)
    body["metadata"].update(name=mf.credentials_secret_name(user), namespace=namespace)
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", **body}


def keys_of(secret: dict[str, Any] | None) -> dict[str, dt.datetime | None]:
    """Key names of a credentials Secret → their last write time (None when unknown)."""
    if not secret:
        return {}
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    out: dict[str, dt.datetime | None] = {}
    for key in sorted(secret.get("data") or {}):
        when = None
        try:
            stamp = json.loads(annotations.get(updated_annotation(key), ""))
            if stamp.get("key") == key:
                when = dt.datetime.fromisoformat(stamp["updated"])
        except (ValueError, TypeError, KeyError, AttributeError):
            pass
        out[key] = when
    return out


async def put(client: KubeClient, namespace: str, user: str, key: str, value: str) -> dt.datetime:
    name = mf.credentials_secret_name(user)
    updated = dt.datetime.now(dt.timezone.utc)
    for _ in range(3):
        try:
            await client.patch("v1", "Secret", namespace, name, set_patch(user, key, value, updated))
            return updated
        except ApiError as exc:
            if not exc.not_found:
                raise
        try:
            await client.request("POST", resource_path("v1", "Secret", namespace),
                                 json=make_credentials_secret(namespace, user, key, value, updated))
            return updated
        except ApiError as exc:
            if not exc.conflict:  # created meanwhile by a concurrent write: patch it
                raise
    raise ApiError(409, "Conflict", f"the Secret {name} was created and deleted concurrently; try again")


async def delete(client: KubeClient, namespace: str, user: str, key: str) -> bool:
    name = mf.credentials_secret_name(user)
    if key not in keys_of(await client.get_or_none("v1", "Secret", namespace, name)):
        return False
    try:
        await client.patch("v1", "Secret", namespace, name, delete_patch(key))
    except ApiError as exc:
        if exc.not_found:
            return False
        raise
    return True


async def keys(client: KubeClient, namespace: str, user: str) -> dict[str, dt.datetime | None]:
    return keys_of(await client.get_or_none("v1", "Secret", namespace, mf.credentials_secret_name(user)))
