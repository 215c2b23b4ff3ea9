"""The Kubernetes client (backends/kubernetes/client.py) under real `429 Too Many Requests` answers
of the real API server: API Priority and Fairness throttles one dedicated identity, the client
retries, waits what ``Retry-After`` asks, and every create lands; with its retries spent it raises
an ApiError naming 429.

How the 429s are made: a PriorityLevelConfiguration of type Limited with
``nominalConcurrencyShares: 1``, ``lendablePercent: 0``, ``borrowingLimitPercent: 0`` (it can
neither lend nor borrow seats, so its limit stays its nominal one) and ``limitResponse: Reject`` (no
queues: a request beyond the limit is answered 429 at once), and a FlowSchema that sends the requests
of one ServiceAccount (its token from the TokenRequest API, so not the admin's client certificate,
which the built-in ``exempt`` FlowSchema would match) to it. The server's 600 seats (400 read-only
+ 200 mutating in flight) shared by the built-in levels' 245 shares plus our 1 give it
ceil(600 / 246) = 3 seats (read back from ``apiserver_flowcontrol_nominal_limit_seats``). A create
holds its seat beyond its own handling (APF adds the latency of notifying watchers to a mutating
request's work), and 60 creates started together arrive within about 0.2 s: the server rejects
most of the first wave (about 50 of 60 observed), so there are always 429s, without any timing
assert. The creates go out over connections opened beforehand: in one CI run, on a loaded machine,
60 fresh TLS handshakes spread them out so far that not one was rejected; and a wave without a 429
is followed by another (at most five). The server counts each rejection in ``apiserver_flowcontrol_rejected_requests_total`` of
our priority level, a fresh one each test, so that counter must equal the 429s the client saw.

``Retry-After`` is dynamic since Kubernetes 1.28: 1 s, doubled while the level keeps rejecting
(1, 2, 4, 8, 16 observed). Without jitter every rejected request came back at the same instant and
was mostly rejected again (waves at 1.3, 3.3, 7.3, 12.3 s; in one run 13 of 60 creates failed after
6 retries): the client now waits ``Retry-After`` plus up to as much again at random, and all 60 land
in about 5 s.

Needs MLP_TEST_KUBECONFIG (set by `make test`); fails, never skips, without it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubetest import kubeconfig, kubectl

from mlplatform_server.backends.kubernetes.client import ApiError, KubeClient, KubeConfig

FLOWCONTROL = "flowcontrol.apiserver.k8s.io/v1"
SA = "throttled"
N = 60  # concurrent creates: far beyond the level's 3 seats
WAVES = 5  # waves of N creates at most, until the server rejected some (see the module doc)


class Throttled:
    """A fresh namespace, a ServiceAccount allowed to manage ConfigMaps there, and the priority
    level (with its FlowSchema) that throttles that ServiceAccount, named after the namespace."""

    def __init__(self, ns: str, kubeconfig_path: Path) -> None:
        self.ns = ns
        self.level = ns
        self.kubeconfig = kubeconfig_path

    def client(self, **kw: Any) -> KubeClient:
        return KubeClient(KubeConfig.from_file(self.kubeconfig), **kw)

    def metric(self, name: str) -> float:
        """The sum of the API server's metric ``name`` over the series of our priority level."""
        text = kubectl("get", "--raw", "/metrics").stdout
        label = f'priority_level="{self.level}"'
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + "{") and label in line)


def _apf_objects(ns: str) -> list[dict[str, Any]]:
    level = {
        "apiVersion": FLOWCONTROL, "kind": "PriorityLevelConfiguration", "metadata": {"name": ns},
        "spec": {"type": "Limited", "limited": {
            "nominalConcurrencyShares": 1, "lendablePercent": 0, "borrowingLimitPercent": 0,
            "limitResponse": {"type": "Reject"}}},
    }
    schema = {
        "apiVersion": FLOWCONTROL, "kind": "FlowSchema", "metadata": {"name": ns},
        "spec": {
            "priorityLevelConfiguration": {"name": ns},
            "matchingPrecedence": 500,  # before service-accounts (9000); after exempt and probes
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [{
                "subjects": [{"kind": "ServiceAccount", "serviceAccount": {"name": SA, "namespace": ns}}],
                "resourceRules": [{"verbs": ["*"], "apiGroups": [""], "resources": ["configmaps"],
                                   "namespaces": [ns]}],
            }],
        },
    }
    return [level, schema]


@pytest.fixture
def throttled(tmp_path: Path) -> Iterator[Throttled]:
    admin = kubeconfig()
    ns = f"mlp-thr-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", ns)
    try:
        kubectl("-n", ns, "create", "serviceaccount", SA)
        kubectl("-n", ns, "create", "role", "configmaps", "--verb=create,get,list,delete", "--resource=configmaps")
        kubectl("-n", ns, "create", "rolebinding", "configmaps", "--role=configmaps", f"--serviceaccount={ns}:{SA}")
        kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": _apf_objects(ns)}))
        token = kubectl("-n", ns, "create", "token", SA, "--duration=10m").stdout.strip()
        # The admin kubeconfig's cluster (server, CA) with the ServiceAccount's bearer token only.
        config = yaml.safe_load(Path(admin).read_text())
        context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
        cluster = next(c for c in config["clusters"] if c["name"] == context["cluster"])
        ca = cluster["cluster"].get("certificate-authority")
        if ca and not Path(ca).is_absolute():
            cluster["cluster"]["certificate-authority"] = str(Path(admin).parent / ca)
        path = tmp_path / "throttled.kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
            "users": [{"name": SA, "user": {"token": token}}],
            "contexts": [{"name": SA, "context": {"cluster": cluster["name"], "user": SA}}],
            "current-context": SA,
        }))
        yield Throttled(ns, path)
    finally:
        kubectl("delete", "flowschema", ns, "--ignore-not-found", check=False)
        kubectl("delete", "prioritylevelconfiguration", ns, "--ignore-not-found", check=False)
        kubectl("delete", "namespace", ns, "--wait=false", check=False)


class Answers:
    """Records every answer the client gets (status, Retry-After, when, of which request); the
    requests themselves go to the real API server unchanged."""

    def __init__(self, client: KubeClient) -> None:
        self.seen: list[tuple[bytes | None, float, float, int, str | None]] = []  # body, sent, answered, ...
        original = client._send

        async def recorded(method: str, path: str, params: Any, headers: dict[str, str], data: bytes | None) -> Any:
            sent = time.monotonic()
            answer = await original(method, path, params, headers, data)
            self.seen.append((data, sent, time.monotonic(), answer.status, answer.retry_after))
            return answer

        client._send = recorded  # type: ignore[method-assign]

    def statuses(self) -> list[int]:
        return [status for *_, status, _ in self.seen]


async def wait_for_level(throttled: Throttled, client: KubeClient) -> None:
    """Until the API server has loaded our FlowSchema: its answers to the ServiceAccount name the
    priority level's UID (X-Kubernetes-PF-PriorityLevel-UID)."""
    uid = kubectl("get", "prioritylevelconfiguration", throttled.level, "-o", "jsonpath={.metadata.uid}").stdout
    url = f"{client.config.server}/api/v1/namespaces/{throttled.ns}/configmaps"
    deadline = time.monotonic() + 30
    while True:
        async with client.http.get(url, headers=client.config.headers()) as response:
            await response.read()
            if response.status == 200 and response.headers.get("X-Kubernetes-PF-PriorityLevel-UID") == uid:
                break
            got = (response.status, response.headers.get("X-Kubernetes-PF-PriorityLevel-UID"))
        assert time.monotonic() < deadline, f"the API server never put the ServiceAccount in {uid}: {got}"
        await asyncio.sleep(0.2)
    seats = throttled.metric("apiserver_flowcontrol_nominal_limit_seats")
    assert 1 <= seats <= 5, f"{throttled.level} has {seats} seats: too many for {N} creates to be throttled"


def configmap(ns: str, i: int, wave: int = 0) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{wave}-{i:03d}", "namespace": ns},
            "data": {"i": str(i)}}


async def warm_connections(throttled: Throttled, client: KubeClient) -> None:
    """Open ``N`` kept-alive connections (N concurrent reads, their answers ignored), so the creates
    that follow leave at once over them instead of one TLS handshake after another: on a loaded
    machine the handshakes spread the creates out enough that 3 seats never overflow."""
    url = f"{client.config.server}/api/v1/namespaces/{throttled.ns}/configmaps"

    async def read() -> None:
        async with client.http.get(url, params={"limit": "1"}, headers=client.config.headers()) as response:
            await response.read()

    await asyncio.gather(*(read() for _ in range(N)))


async def throttled_waves(throttled: Throttled, client: KubeClient) -> tuple[list[Any], float, int]:
    """Waves of ``N`` concurrent creates (names cm-<wave>-<i>) until the server rejected some, at most
    ``WAVES``: the results (exceptions returned), the seconds the creates took and the 429s the
    server counted for them (its counter read around the creates only: the warm-up reads may be
    rejected too)."""
    results: list[Any] = []
    took, rejected = 0.0, 0
    for wave in range(WAVES):
        await warm_connections(throttled, client)
        before = throttled.metric("apiserver_flowcontrol_rejected_requests_total")
        started = time.monotonic()
        results += await asyncio.gather(*(client.create(configmap(throttled.ns, i, wave)) for i in range(N)),
                                        return_exceptions=True)
        took += time.monotonic() - started
        rejected += int(throttled.metric("apiserver_flowcontrol_rejected_requests_total") - before)
        if rejected:
            break
    return results, took, rejected


async def throttled_creates(throttled: Throttled, client: KubeClient) -> tuple[list[Any], float, int]:
    """Once the server sends ``client``'s requests to our level: :func:`throttled_waves`; the client
    is closed afterwards."""
    try:
        await wait_for_level(throttled, client)
        return await throttled_waves(throttled, client)
    finally:
        await client.close()


async def test_client_retries_real_429s_honouring_retry_after(throttled: Throttled):
    client = throttled.client()  # the platform's defaults: 6 retries, max_backoff 5 s
    answers = Answers(client)
    created, took, counted = await throttled_creates(throttled, client)
    errors = [c for c in created if isinstance(c, BaseException)]
    assert not errors, [repr(e) for e in errors]
    names = sorted(c["metadata"]["name"] for c in created)
    assert len(names) % N == 0 and len(set(names)) == len(names)
    waves = len(names) // N

    # (1) Every create landed: each got its object back, and the admin reads all of them back.
    assert names == sorted(f"cm-{w}-{i:03d}" for w in range(waves) for i in range(N))
    listed = json.loads(kubectl("-n", throttled.ns, "get", "configmaps", "-o", "json").stdout)["items"]
    assert {c["metadata"]["name"]: c["data"]["i"] for c in listed if c["metadata"]["name"].startswith("cm-")} == \
        {f"cm-{w}-{i:03d}": str(i) for w in range(waves) for i in range(N)}
    statuses = answers.statuses()
    assert statuses.count(201) == len(names), statuses  # each created exactly once (a 429 creates nothing)
    assert set(statuses) <= {201, 429}, statuses

    # (2) The API server really throttled: it counted exactly the 429s the client was given.
    rejected = statuses.count(429)
    assert rejected > 0, f"the API server never answered 429 in {waves} waves of {N} creates"
    assert counted == rejected

    # Each 429 said when to come back, and the client waited at least that long (up to its
    # max_backoff) before sending the same create again.
    retry_afters = [ra for *_, status, ra in answers.seen if status == 429]
    assert all(ra is not None and ra.isdigit() and int(ra) >= 1 for ra in retry_afters), retry_afters
    waits = []
    for body in {data for data, *_ in answers.seen}:
        tries = [s for s in answers.seen if s[0] == body]
        for (_, _, answered, status, ra), (_, sent, *_) in zip(tries, tries[1:]):
            assert status == 429
            waits.append((sent - answered, min(float(ra), client.max_backoff)))
    assert len(waits) == rejected
    assert all(waited >= asked - 0.05 for waited, asked in waits), sorted(waits)
    counts = {ra: retry_afters.count(ra) for ra in sorted(set(retry_afters), key=int)}
    print(f"\n{len(names)} creates in {waves} wave(s), {took:.1f}s; {rejected} answered 429 by the API server; "
          f"Retry-After: {counts}")


async def test_client_without_retries_left_raises_api_error_429(throttled: Throttled):
    """A 429 on the last attempt (here the only one: retries=0) raises ApiError 429, not any other
    kind of error; the creates the server let through are there."""
    results, _, counted = await throttled_creates(throttled, throttled.client(retries=0))

    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors, "no create was throttled"
    assert all(isinstance(e, ApiError) for e in errors), [repr(e) for e in errors if not isinstance(e, ApiError)]
    for error in errors:
        # APF answers plain text, not a Status object: the reason is the HTTP reason phrase.
        assert (error.status, error.reason) == (429, "Too Many Requests"), repr(error)
        assert re.match(r"429 Too Many Requests: Too many requests", str(error)), str(error)
    assert counted == len(errors)
    ok = sorted(r["metadata"]["name"] for r in results if not isinstance(r, BaseException))
    listed = json.loads(kubectl("-n", throttled.ns, "get", "configmaps", "-o", "json").stdout)["items"]
    assert sorted(c["metadata"]["name"] for c in listed if c["metadata"]["name"].startswith("cm-")) == ok
    print(f"\nretries=0: {len(errors)} of {len(results)} creates raised {errors[0]!r}")
