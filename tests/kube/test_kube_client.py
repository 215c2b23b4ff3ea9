"""The platform's Kubernetes client against the real API server: what ``create`` answers."""

from __future__ import annotations

from kubebackend import namespace  # noqa: F401 (fixture)
from kubetest import kubeconfig

from mlplatform_server.backends.kubernetes.client import KubeClient, KubeConfig


async def test_create_metadata_only_and_a_repeated_create_answer_the_same_object(namespace):
    """``metadata_only``: the API server answers a PartialObjectMetadata (no data, no spec); a create
    of a name that exists (a retried create) reads the existing object back, also metadata only."""
    client = KubeClient(KubeConfig.load(kubeconfig()))
    obj = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "meta-only", "namespace": namespace, "labels": {"a": "b"}},
           "data": {"value": "x" * 1000}}
    try:
        first = await client.create(obj, metadata_only=True)
        again = await client.create(obj, metadata_only=True)
        full = await client.create(obj)
    finally:
        await client.close()
    assert set(first) == {"apiVersion", "kind", "metadata"}
    assert (first["apiVersion"], first["kind"], first["metadata"]["name"]) == ("v1", "ConfigMap", "meta-only")
    assert first["metadata"]["labels"] == {"a": "b"} and first["metadata"]["uid"]
    assert set(again) == set(first) and again["metadata"]["uid"] == first["metadata"]["uid"]
    assert full["data"] == {"value": "x" * 1000} and full["metadata"]["uid"] == first["metadata"]["uid"]
