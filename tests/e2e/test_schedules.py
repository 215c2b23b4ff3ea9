"""Scheduled batch prediction on the process backend, through the `mlp` CLI and the REST API: a
"* * * * *" schedule of the spine's notebook, the platform's own scheduler firing it (after a
`kill -9` and restart: the missed firing starts once), suspend stops it, resume starts the firing
missed meanwhile, delete; bad input is refused with the field named; other users see nothing."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

from notebooks import IRIS_ROWS, realistic_notebook
from support import wait_until


def schedule_runs(server, name: str) -> list[dict[str, Any]]:
    return server.mlp_json("schedules", "show", name)["runs"]


def sleep_past_next_minute(margin: float = 3.0) -> dt.datetime:
    """Sleep until `margin` seconds after the next minute starts; that minute (UTC)."""
    now = time.time()
    boundary = (int(now) // 60 + 1) * 60
    time.sleep(boundary + margin - now)
    return dt.datetime.fromtimestamp(boundary, dt.timezone.utc)


def test_schedule_fires_survives_restart_suspends_resumes_and_deletes(mlp_server, tmp_path):
    server = mlp_server
    nb = tmp_path / "iris.ipynb"
    nb.write_text(realistic_notebook())
    server.mlp_json("models", "save", str(nb), "--name", "iris")
    trained = server.mlp_json("train", "iris", "--wait")
    assert trained["status"] == "succeeded", trained
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps(row) + "\n" for row in IRIS_ROWS))
    pattern = str(tmp_path / "predictions" / "{date}" / "{run_id}.jsonl")

    if time.time() % 60 > 50:  # create, kill and restart within one minute
        sleep_past_next_minute(0.5)
    created = server.mlp_json("schedules", "create", "iris-every-minute", "--model", "iris",
                              "--source-run", trained["id"], "--inputs", str(inputs), "--outputs", pattern,
                              "--cron", "* * * * *")
    assert created["schedule"] == "* * * * *" and created["outputs"] == pattern
    assert created["version"] == "1" and created["suspended"] is False and created["backend"] == "process"
    assert created["runs"] == [] and created["next_fire_at"]

    # kill -9 before the first due time; restarted after it: that firing starts once, late.
    server.kill()
    due = sleep_past_next_minute()
    server.start()
    first = wait_until("the missed firing", lambda: schedule_runs(server, "iris-every-minute"), timeout=30)
    assert len(first) == 1, first
    # suspended at once (the next minute must pass without a firing, checked below)
    suspended = server.mlp_json("schedules", "suspend", "iris-every-minute")
    assert suspended["suspended"] is True and suspended["next_fire_at"] is None
    run = server.wait_run(first[0]["id"])
    assert run["status"] == "succeeded", run
    assert run["kind"] == "batch-predict" and run["schedule"] == "iris-every-minute"
    assert run["schedule_id"] == created["id"] and run["source_run_id"] == trained["id"]
    assert run["launched_by"] == "admin"
    expected = pattern.replace("{date}", due.date().isoformat()).replace("{run_id}", run["id"])
    assert run["outputs"] == expected
    predictions = [json.loads(line) for line in Path(expected).read_text().splitlines()]
    assert [p["species"] for p in predictions] == ["setosa", "virginica", "versicolor"]
    listed = server.mlp_json("runs", "list")["items"]
    assert {r["id"]: r["schedule"] for r in listed}[run["id"]] == "iris-every-minute"
    assert "iris-every-minute" in server.mlp("runs", "list").stdout  # the table's schedule column
    shown = server.mlp_json("schedules", "show", "iris-every-minute")
    assert shown["last_run_id"] == run["id"] and shown["last_error"] is None
    assert dt.datetime.fromisoformat(shown["last_fired_at"]) == due

    # suspended: the next minute passes without a firing.
    missed = sleep_past_next_minute()
    time.sleep(1.0)  # two reconcile passes
    assert [r["id"] for r in schedule_runs(server, "iris-every-minute")] == [run["id"]]

    # resumed: the firing missed while suspended is within the starting deadline, so it starts now.
    resumed = server.mlp_json("schedules", "resume", "iris-every-minute")
    assert resumed["suspended"] is False
    runs = wait_until("the resumed firing", lambda: (lambda r: r if len(r) == 2 else None)(
        schedule_runs(server, "iris-every-minute")), timeout=30)
    second = server.wait_run(runs[0]["id"])
    assert second["status"] == "succeeded", second
    assert second["outputs"] == pattern.replace("{date}", missed.date().isoformat()).replace("{run_id}", second["id"])
    assert Path(second["outputs"]).exists() and Path(expected).exists()  # nothing overwritten

    # a firing is replicated like any run.
    again = server.mlp_json("runs", "replicate", second["id"], "--wait")
    assert again["status"] == "succeeded" and again["replicated_from"] == second["id"]

    listed = server.mlp_json("schedules", "list")
    assert [d["name"] for d in listed["items"]] == ["iris-every-minute"] and listed["total"] == 1
    assert server.mlp_json("schedules", "delete", "iris-every-minute") == {"deleted": "iris-every-minute"}
    gone = server.mlp("schedules", "show", "iris-every-minute", check=False)
    assert gone.returncode == 1 and gone.stderr.strip() == "error: No schedule named 'iris-every-minute'"
    kept = server.mlp_json("runs", "show", run["id"])
    assert kept["schedule_id"] == created["id"] and kept["schedule"] is None  # the record stays
    assert server.mlp_json("schedules", "list")["items"] == []


def test_schedule_input_errors_and_authorization(mlp_server, tmp_path):
    server = mlp_server
    nb = tmp_path / "iris.ipynb"
    nb.write_text(realistic_notebook())
    server.mlp_json("models", "save", str(nb), "--name", "iris")
    trained = server.mlp_json("train", "iris", "--wait")
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(json.dumps(IRIS_ROWS[0]) + "\n")
    outputs = str(tmp_path / "out" / "{run_id}.jsonl")
    base = {"name": "nightly", "model": "iris", "source_run_id": trained["id"], "inputs": str(inputs),
            "outputs": outputs, "schedule": "0 3 * * *"}
    cases = [
        ({"schedule": "61 * * * *"}, "schedule", "not a valid cron expression"),
        ({"schedule": "* * * *"}, "schedule", "it has 4 fields"),
        ({"schedule": "0 0 L * *"}, "schedule", "'L'"),
        ({"schedule": "@often"}, "schedule", "unknown macro"),
        ({"timezone": "Mars/Olympus"}, "timezone", "unknown time zone 'Mars/Olympus'"),
        ({"timezone": "a" * 5000}, "timezone", "unknown time zone 'aaaa"),  # too long for a file name
        ({"outputs": str(tmp_path / "out.jsonl")}, "outputs", "has no {run_id}"),
        ({"outputs": str(tmp_path / "{run}.jsonl")}, "outputs", "unknown placeholder(s) {run}"),
        ({"inputs": "in.jsonl"}, "inputs", "expected an absolute path"),
        ({"name": "Nightly_1"}, "name", "invalid schedule name"),
        ({"starting_deadline_seconds": 1}, "starting_deadline_seconds", "from 10 to"),
        ({"source_run_id": "nope"}, None, "No run with id 'nope'"),
        ({"hardware": "huge"}, None, "huge"),
        ({"cron": "* * * * *"}, None, "Unknown field(s) cron"),
    ]
    with server.api() as api:
        for change, field, message in cases:
            answer = api.post("/schedules", json={**base, **change})
            assert answer.status_code in (400, 404), (change, answer.text)
            body = answer.json()
            assert message in body["message"], (change, body)
            if field:
                assert body["details"]["field"] == field and body["message"].startswith(field), body
        assert api.get("/schedules").json()["total"] == 0  # nothing half-written

    # the CLI: one line, exit 1
    bad = server.mlp("schedules", "create", "nightly", "--model", "iris", "--source-run", trained["id"],
                     "--inputs", str(inputs), "--outputs", outputs, "--cron", "0 25 * * *", check=False)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1
    assert bad.stderr.startswith("error: schedule: '0 25 * * *' is not a valid cron expression")

    made = server.mlp_json("schedules", "create", "nightly", "--model", "iris:1", "--source-run", trained["id"],
                           "--inputs", str(inputs), "--outputs", outputs, "--cron", "0 3 * * *",
                           "--timezone", "Europe/Paris", "--hardware", "cpu-small")
    assert made["timezone"] == "Europe/Paris" and made["hardware"]["name"] == "cpu-small"
    next_fire = dt.datetime.fromisoformat(made["next_fire_at"])
    assert next_fire.astimezone(dt.timezone(dt.timedelta(hours=1))).hour in (2, 3)  # 03:00 Paris (CET/CEST)
    dup = server.mlp("schedules", "create", "nightly", "--model", "iris", "--source-run", trained["id"],
                     "--inputs", str(inputs), "--outputs", outputs, "--cron", "@daily", check=False)
    assert dup.returncode == 1 and "already exists" in dup.stderr

    # bob sees and touches none of the admin's schedules, and cannot use the admin's run.
    server.mlp("users", "create", "bob")
    bob = server.mlp_json("users", "token", "bob")["token"]
    assert server.mlp_json("schedules", "list", token=bob)["items"] == []
    for args in (["show", "nightly"], ["suspend", "nightly"], ["resume", "nightly"], ["delete", "nightly"]):
        proc = server.mlp("schedules", *args, token=bob, check=False)
        assert proc.returncode == 1 and "No schedule named 'nightly'" in proc.stderr, (args, proc.stderr)
    with server.api(bob) as api:
        answer = api.post("/schedules", json={**base, "name": "bobs"})
        assert answer.status_code == 404, answer.text  # the model (and run) are the admin's
    assert server.mlp_json("schedules", "show", "nightly")["suspended"] is False
    server.mlp("schedules", "delete", "nightly")
