"""Which run a pod's token belongs to: a run's pods report metrics with a projected service-account
token of the platform's audience (:data:`.manifests.TOKEN_AUDIENCE`), bound to the pod. A
TokenReview by the API server proves the token is valid, unexpired and bound to a pod that still
exists; that pod must be one of the platform's, in a namespace it manages. Answers are trusted for
:data:`TOKEN_CACHE_SECONDS` so a run's metric posts do not each cost a review.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable

from . import manifests as mf
from .client import ApiError, KubeClient
from .watches import ClusterView

log = logging.getLogger(__name__)

# How long a checked workload token is trusted without asking the API server again (seconds).
TOKEN_CACHE_SECONDS = 60.0
_CACHE_MAX = 10_000


class WorkloadIdentity:
    """``managed``: whether the platform keeps objects in a namespace; ``ref``: the reference of
    an object (namespace, name) as the backend stores it."""

    def __init__(self, client: KubeClient, view: ClusterView, managed: Callable[[str], bool],
                 ref: Callable[[str, str], str]) -> None:
        self.client = client
        self.view = view
        self.managed = managed
        self.ref = ref
        self._trusted: dict[str, tuple[str, float]] = {}  # sha256(token) → (the run's Job ref, until)

    async def job_of(self, token: str) -> str | None:
        """The reference of the Job whose pod presented ``token``; None if it is not such a token."""
        if token.count(".") != 2:  # not a JWT: not a service-account token
            return None
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._trusted.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                  "spec": {"token": token, "audiences": [mf.TOKEN_AUDIENCE]}}
        try:
            answer = await self.client.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", json=review)
        except ApiError as exc:
            log.warning("TokenReview failed: %s", exc.message)
            return None
        status = answer.get("status") or {}
        user = status.get("user") or {}
        extra = user.get("extra") or {}
        pod_name = (extra.get("authentication.kubernetes.io/pod-name") or [None])[0]
        pod_uid = (extra.get("authentication.kubernetes.io/pod-uid") or [None])[0]
        account = str(user.get("username", "")).split(":")  # system:serviceaccount:NAMESPACE:NAME
        namespace = account[2] if len(account) == 4 and account[:2] == ["system", "serviceaccount"] else ""
        if (not status.get("authenticated") or mf.TOKEN_AUDIENCE not in (status.get("audiences") or [])
                or not namespace or not self.managed(namespace) or not pod_name):
            return None
        # (a user namespace is watched once it has runs, not because a token names it)
        watched = namespace in self.view.watches or self.view.namespace
        informer = self.view.informer("Pod", namespace) if watched else None
        pod = informer.get(pod_name) if informer is not None else None
        if pod is None:
            pod = await self.client.get_or_none("v1", "Pod", namespace, pod_name)
        meta = (pod or {}).get("metadata") or {}
        labels = meta.get("labels") or {}
        job = labels.get(mf.JOB_NAME_LABEL)
        if not job or meta.get("uid") != pod_uid or not mf.MANAGED_BY.items() <= labels.items():
            return None
        ref = self.ref(namespace, job)
        if len(self._trusted) > _CACHE_MAX:
            self._trusted = {k: v for k, v in self._trusted.items() if v[1] > now}
        self._trusted[key] = (ref, now + TOKEN_CACHE_SECONDS)
        return ref
