"""Scheduled batch prediction on `mlp server --backend kubernetes` against the real control plane
(scripts/kube-up.sh; kwok completes Job pods, it runs no code): the schedule is a CronJob the API
server accepts (schedule, time zone, labels, a restricted pod that gets no API token and learns its
run id from its Job's name); a Job made from it is recorded as a run of the schedule, under the Job's
name, and reaches a final state; suspend / resume patch the CronJob; delete removes it and its Jobs
while the run stays on record.

Needs MLP_TEST_KUBECONFIG (set by `make test`); fails, never skips, without it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubetest import PVC, get_json, kubeconfig, kubectl, namespace_with_claim
from support import wait_until
from notebooks import IRIS_ROWS, realistic_notebook


@pytest.fixture
def namespace() -> Any:
    with namespace_with_claim("mlp-cron") as ns:
        yield ns


def test_schedule_is_a_cronjob_whose_jobs_are_recorded_runs(mlp_server_factory, namespace, tmp_path):
    server = mlp_server_factory(backend="kubernetes",
                                extra_args=["--namespace", namespace, "--kubeconfig", kubeconfig(), "--pvc", PVC])
    data = server.data_dir.resolve()  # the claim's root
    nb = tmp_path / "iris.ipynb"
    nb.write_text(realistic_notebook())
    server.mlp_json("models", "save", str(nb), "--name", "iris")
    trained = server.mlp_json("train", "iris", "--wait")
    assert trained["status"] == "succeeded", trained
    inputs = data / "inputs" / "rows.jsonl"
    inputs.parent.mkdir(parents=True)
    inputs.write_text("".join(json.dumps(row) + "\n" for row in IRIS_ROWS))
    pattern = str(data / "predictions" / "{run_id}.jsonl")
    args = ["--model", "iris", "--source-run", trained["id"], "--inputs", str(inputs)]

    # refused before anything is created: {date} (a pod cannot know it), inputs off the shared volume
    dated = server.mlp("schedules", "create", "nightly", *args, "--outputs",
                       str(data / "predictions" / "{date}" / "{run_id}.jsonl"), "--cron", "0 3 * * *", check=False)
    assert dated.returncode == 1 and "{date} is not available on the kubernetes backend" in dated.stderr
    outside = tmp_path / "rows.jsonl"
    outside.write_text(inputs.read_text())
    off_volume = server.mlp("schedules", "create", "nightly", "--model", "iris", "--source-run", trained["id"],
                            "--inputs", str(outside), "--outputs", pattern, "--cron", "0 3 * * *", check=False)
    assert off_volume.returncode == 1 and "is not on the shared artifact volume" in off_volume.stderr
    assert server.mlp_json("schedules", "list")["items"] == []
    assert get_json(namespace, "cronjobs")["items"] == []

    created = server.mlp_json("schedules", "create", "nightly", *args, "--outputs", pattern,
                              "--cron", "0 3 * * *", "--timezone", "Europe/Paris")
    name = created["backend_ref"]
    assert name == f"mlps-{created['id']}" and created["backend"] == "kubernetes"

    # accepted by the API server as built
    cronjob = get_json(namespace, "cronjob", name)
    spec = cronjob["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["suspend"]) == ("0 3 * * *", "Europe/Paris", False)
    assert spec["concurrencyPolicy"] == "Forbid" and spec["startingDeadlineSeconds"] == 300
    assert spec["successfulJobsHistoryLimit"] == 3 and spec["failedJobsHistoryLimit"] == 3
    for labels in (cronjob["metadata"]["labels"], spec["jobTemplate"]["metadata"]["labels"],
                   spec["jobTemplate"]["spec"]["template"]["metadata"]["labels"]):
        assert labels["mlplatform.io/schedule-id"] == created["id"]
        assert labels["app.kubernetes.io/managed-by"] == "mlplatform"
        assert labels["mlplatform.io/schedule"] == "nightly"
    pod_spec = spec["jobTemplate"]["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    assert container["command"][-1] == "batch-predict"
    assert pod_spec["automountServiceAccountToken"] is False
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["env"][0] == {"name": "MLP_RUN_ID", "valueFrom": {"fieldRef": {
        "apiVersion": "v1", "fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}}}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLP_OUTPUTS"] == "/mlp/output/$(MLP_RUN_ID).jsonl"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/mlp/run"]["subPathExpr"] == "runs/$(MLP_RUN_ID)"
    assert not any("TOKEN" in e["name"] and "value" in e and "FILE" not in e["name"] for e in container["env"])
    assert server.token not in json.dumps(cronjob)

    # a Job made from the CronJob (as the controller makes them): recorded under its name
    job_name = f"{name}-manual01"
    kubectl("-n", namespace, "create", "job", f"--from=cronjob/{name}", job_name)
    owners = get_json(namespace, "job", job_name)["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"]) for o in owners] == [("CronJob", name)]  # deleted with it
    shown = wait_until("the firing recorded", lambda: server.mlp_json("schedules", "show", "nightly")["runs"])
    assert [r["id"] for r in shown] == [job_name]
    run = server.wait_run(job_name)
    assert run["status"] == "succeeded", run  # kwok completed the Job's pod
    assert run["kind"] == "batch-predict" and run["schedule"] == "nightly" and run["schedule_id"] == created["id"]
    assert run["source_run_id"] == trained["id"] and run["launched_by"] == "admin"
    assert run["outputs"] == str(data / "predictions" / f"{job_name}.jsonl")
    pods = get_json(namespace, "pods", "-l", f"batch.kubernetes.io/job-name={job_name}")["items"]
    assert pods and pods[-1]["metadata"]["labels"]["batch.kubernetes.io/job-name"] == run["id"]
    assert pods[-1]["spec"]["automountServiceAccountToken"] is False
    listed = {r["id"]: r["schedule"] for r in server.mlp_json("runs", "list")["items"]}
    assert listed[job_name] == "nightly"
    assert server.mlp_json("schedules", "show", "nightly")["last_run_id"] == job_name

    # suspend / resume: the CronJob's spec.suspend
    assert server.mlp_json("schedules", "suspend", "nightly")["suspended"] is True
    assert get_json(namespace, "cronjob", name)["spec"]["suspend"] is True
    assert server.mlp_json("schedules", "resume", "nightly")["suspended"] is False
    assert get_json(namespace, "cronjob", name)["spec"]["suspend"] is False

    # delete: the CronJob goes, and its Job with it; the run stays on record
    server.mlp("schedules", "delete", "nightly")
    for what in (f"cronjob/{name}", f"job/{job_name}"):
        wait_until(f"{what} deleted", lambda w=what: "NotFound" in kubectl("-n", namespace, "get", w,
                                                                               check=False).stderr)
    kept = server.mlp_json("runs", "show", job_name)
    assert kept["status"] == "succeeded" and kept["schedule_id"] == created["id"]
    assert server.mlp_json("schedules", "list")["items"] == []
