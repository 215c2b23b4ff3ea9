"""The runtime (`python -m mlplatform_server.runtime`) as real subprocesses, configured by MLP_* variables.

Models are small modules written to tmp_path; metrics go to a real HTTP receiver started here.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mlplatform_server.runtime.metrics import MetricReporter

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "run-token-" + "s3cr3t" * 4


# -- helpers --------------------------------------------------------------------
def write_module(directory: Path, source: str, name: str = "model.py") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return path


def runtime_env(tmp_path: Path, module: Path, **extra: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MLP_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update({
        "MLP_MODULE_PATH": str(module),
        "MLP_ARTIFACTS": str(tmp_path / "artifacts"),
        "MLP_RESULT_PATH": str(tmp_path / "run" / "result.json"),
        "MLP_RUN_ID": "run-123",
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_runtime(action: str, env: dict[str, str], *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlplatform_server.runtime", action, *args],
                          env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def result_of(env: dict[str, str]) -> dict[str, Any]:
    path = Path(env["MLP_RESULT_PATH"])
    leftovers = [p.name for p in path.parent.iterdir() if p.name != path.name]
    assert not leftovers, f"temporary files left next to the result: {leftovers}"
    return json.loads(path.read_text())


def metric_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line[len("MLP_METRIC "):]) for line in stdout.splitlines() if line.startswith("MLP_METRIC ")]


class Receiver:
    """A tiny platform stand-in that records metric POSTs; answers 503 to the first `fail_first`."""

    def __init__(self, fail_first: int = 0, status: int = 201) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_first = fail_first
        self.status = status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if len(receiver.requests) <= receiver.fail_first:
                    code, answer = 503, {"error": "unavailable", "message": "try later"}
                elif receiver.status >= 400:
                    code, answer = receiver.status, {"error": "invalid_input", "message": "nope"}
                else:
                    code, answer = receiver.status, {"recorded": len(json.loads(body)["metrics"])}
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def metrics(self) -> list[dict[str, Any]]:
        return [m for r in self.requests if r["headers"].get("Authorization") for m in json.loads(r["body"])["metrics"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(**kwargs: Any) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for r in made:
        r.close()


def wait_for(predicate, timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# -- train ----------------------------------------------------------------------
TRAIN_MODEL = """
    import json
    from helper import scale            # a sibling file of the module

    class Model:
        hyperparameters = {"C": 1.0, "epochs": 3}

        def __init__(self):
            self.mine = "kept"

        def train(self):
            for epoch in range(self.hyperparameters["epochs"]):
                self.log_metric("loss", scale(1.0 / (epoch + 1)), step=epoch)
            self.log_metric("accuracy", 0.9)
            (self.artifacts / "model.json").write_text(json.dumps({
                "hp": self.hyperparameters, "mine": self.mine, "run_id": self.run_id,
                "artifacts_type": type(self.artifacts).__name__, "inputs": self.inputs,
            }))
"""


def test_train_writes_artifacts_result_and_metric_lines(tmp_path, receiver):
    module = write_module(tmp_path / "code", TRAIN_MODEL)
    write_module(tmp_path / "code", "def scale(x):\n    return 2 * x\n", "helper.py")
    platform = receiver(fail_first=1)  # the first POST is answered 503: retried
    env = runtime_env(tmp_path, module, MLP_HYPERPARAMETERS=json.dumps({"C": 0.5, "epochs": 2}),
                      MLP_URL=platform.url, MLP_RUN_TOKEN=TOKEN)
    proc = run_runtime("train", env)
    assert proc.returncode == 0, proc.stderr

    saved = json.loads((tmp_path / "artifacts" / "model.json").read_text())
    assert saved == {"hp": {"C": 0.5, "epochs": 2}, "mine": "kept", "run_id": "run-123",
                     "artifacts_type": "PosixPath", "inputs": None}
    result = result_of(env)
    assert result["status"] == "succeeded" and result["reason"] is None and result["finished_at"]

    lines = proc.stdout.splitlines()
    assert lines[0].startswith("MLP_START action=train run_id=run-123")
    assert lines[-1].startswith("MLP_END status=succeeded exit_code=0")
    printed = metric_lines(proc.stdout)
    assert [(m["name"], m["value"], m["step"]) for m in printed] == [("loss", 2.0, 0), ("loss", 1.0, 1),
                                                                      ("accuracy", 0.9, None)]
    assert all(m["time"].endswith("+00:00") for m in printed)

    # delivered to the platform, with the run token, after one retry
    assert len(platform.requests) >= 2
    assert all(r["path"] == "/api/v1/runs/run-123/metrics" for r in platform.requests)
    assert all(r["headers"]["Authorization"] == f"Bearer {TOKEN}" for r in platform.requests)
    assert all(r["headers"]["Content-Type"] == "application/json" for r in platform.requests)
    # what was printed is what was delivered (the 503-answered batch was sent again)
    delivered = platform.metrics()[len(json.loads(platform.requests[0]["body"])["metrics"]):]
    assert delivered == printed
    assert TOKEN not in proc.stdout + proc.stderr


def test_init_with_hyperparameters_and_class_defaults(tmp_path):
    module = write_module(tmp_path / "code", """
        class Model:
            hyperparameters = {"lr": 0.1, "layers": [8, 8]}

            def __init__(self, hyperparameters):
                self.seen_in_init = dict(hyperparameters)

            def train(self):
                import json
                (self.artifacts / "seen.json").write_text(json.dumps(
                    {"init": self.seen_in_init, "attr": self.hyperparameters}))
    """)
    env = runtime_env(tmp_path, module, MLP_HYPERPARAMETERS=json.dumps({"lr": 0.01, "layers": [4]}))
    proc = run_runtime("train", env)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads((tmp_path / "artifacts" / "seen.json").read_text())
    assert seen == {"init": {"lr": 0.01, "layers": [4]}, "attr": {"lr": 0.01, "layers": [4]}}

    # without MLP_HYPERPARAMETERS: the class defaults; a flag overrides the variable
    del env["MLP_HYPERPARAMETERS"]
    assert run_runtime("train", env).returncode == 0
    assert json.loads((tmp_path / "artifacts" / "seen.json").read_text())["init"] == {"lr": 0.1, "layers": [8, 8]}
    proc = run_runtime("train", env, "--hyperparameters", '{"lr": 0.5}')
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "artifacts" / "seen.json").read_text())["attr"] == {"lr": 0.5}


def test_user_exception_fails_with_one_line_reason(tmp_path):
    module = write_module(tmp_path / "code", """
        class Model:
            def train(self):
                self.log_metric("loss", 1.0)
                raise ValueError("bad data in column x\\nsecond line " + "y" * 1000)
    """)
    env = runtime_env(tmp_path, module)
    proc = run_runtime("train", env)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr and "raise ValueError" in proc.stderr
    result = result_of(env)
    assert result["status"] == "failed"
    assert result["reason"].startswith("ValueError: bad data in column x second line yyy")
    assert "\n" not in result["reason"] and len(result["reason"]) <= 500
    assert proc.stdout.splitlines()[-1].startswith("MLP_END status=failed exit_code=1 reason=")
    assert len(metric_lines(proc.stdout)) == 1


@pytest.mark.parametrize("source, action, reason", [
    ("class Model:\n    def train(self):\n        pass\n", "batch-predict", "Model has no batch_predict method"),
    ("class Model:\n    pass\n", "train", "Model has no train method"),
    ("def train():\n    pass\n", "train", "The model module defines no class Model"),
    ("import no_such_package_xyz\n", "train",
     "Could not load the model module: ModuleNotFoundError: No module named 'no_such_package_xyz'"),
])
def test_contract_and_load_errors_exit_2(tmp_path, source, action, reason):
    module = write_module(tmp_path / "code", source)
    (tmp_path / "artifacts").mkdir()
    env = runtime_env(tmp_path, module)
    proc = run_runtime(action, env)
    assert proc.returncode == 2, proc.stderr
    assert result_of(env) == {"status": "failed", "reason": reason, "finished_at": result_of(env)["finished_at"]}
    assert reason in proc.stderr
    if "Could not load" in reason:
        assert "Traceback" in proc.stderr


def test_configuration_errors_exit_2_with_result(tmp_path):
    module = write_module(tmp_path / "code", "class Model:\n    def batch_predict(self):\n        pass\n")
    env = runtime_env(tmp_path, module)  # artifacts of a training run that does not exist
    proc = run_runtime("batch-predict", env)
    assert proc.returncode == 2
    assert "does not exist" in result_of(env)["reason"] and "MLP_ARTIFACTS" in result_of(env)["reason"]

    env = runtime_env(tmp_path, module, MLP_HYPERPARAMETERS="[1, 2]")
    (tmp_path / "artifacts").mkdir()
    proc = run_runtime("batch-predict", env)
    assert proc.returncode == 2
    assert "MLP_HYPERPARAMETERS" in result_of(env)["reason"] and "JSON object" in result_of(env)["reason"]


def test_batch_predict_reads_inputs_and_writes_outputs(tmp_path):
    module = write_module(tmp_path / "code", """
        import json

        class Model:
            def batch_predict(self):
                factor = json.loads((self.artifacts / "weights.json").read_text())["factor"]
                rows = [json.loads(line) for line in self.inputs.read_text().splitlines()]
                with open(self.outputs, "w") as fh:
                    for row in rows:
                        fh.write(json.dumps({"y": row["x"] * factor}) + "\\n")
                self.log_metric("rows", len(rows))
    """)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "weights.json").write_text('{"factor": 3}')
    inputs = tmp_path / "data" / "in.jsonl"
    inputs.parent.mkdir()
    inputs.write_text('{"x": 1}\n{"x": 2}\n')
    outputs = tmp_path / "out" / "nested" / "predictions.jsonl"
    env = runtime_env(tmp_path, module, MLP_INPUTS=inputs, MLP_OUTPUTS=outputs)
    proc = run_runtime("batch-predict", env)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(x) for x in outputs.read_text().splitlines()] == [{"y": 3}, {"y": 6}]
    assert result_of(env)["status"] == "succeeded"
    assert proc.stdout.startswith("MLP_START action=batch-predict")
    assert [m["value"] for m in metric_lines(proc.stdout)] == [2.0]


def test_sigterm_during_train_writes_failed_result(tmp_path):
    module = write_module(tmp_path / "code", """
        import time

        class Model:
            def train(self):
                (self.artifacts / "started").write_text("yes")
                try:
                    time.sleep(60)
                except Exception:
                    pass  # a broad except in user code must not swallow the stop
    """)
    env = runtime_env(tmp_path, module)
    proc = subprocess.Popen([sys.executable, "-m", "mlplatform_server.runtime", "train"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (tmp_path / "artifacts" / "started").exists(), what="train to start")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    result = result_of(env)
    assert result["status"] == "failed" and result["reason"] == "terminated by signal SIGTERM"
    assert "MLP_END status=failed exit_code=143" in out


def test_sigterm_result_is_written_while_user_code_is_stuck_in_c(tmp_path):
    # pbkdf2 runs in C with the GIL released and does not look at signals for a minute or so:
    # the Python-level handler cannot run, the result must be written anyway before the SIGKILL.
    module = write_module(tmp_path / "code", """
        import hashlib

        class Model:
            def train(self):
                (self.artifacts / "started").write_text("yes")
                hashlib.pbkdf2_hmac("sha256", b"password", b"salt", 10**9)
    """)
    env = runtime_env(tmp_path, module)
    proc = subprocess.Popen([sys.executable, "-m", "mlplatform_server.runtime", "train"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (tmp_path / "artifacts" / "started").exists(), what="train to start")
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: Path(env["MLP_RESULT_PATH"]).exists(), timeout=5, what="the result file")
        assert proc.poll() is None  # still inside the C call
        assert result_of(env)["reason"] == "terminated by signal SIGTERM"
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_undeliverable_metrics_are_a_warning_not_a_failure(tmp_path, receiver):
    module = write_module(tmp_path / "code", """
        class Model:
            def train(self):
                self.log_metric("loss", 0.5, step=1)
                self.log_metric("loss", float("nan"), step=2)   # printed, not sent
    """)
    refusing = receiver(status=400)
    env = runtime_env(tmp_path, module, MLP_URL=refusing.url, MLP_RUN_TOKEN=TOKEN)
    proc = run_runtime("train", env)
    assert proc.returncode == 0, proc.stderr
    assert "refused 1 metric(s): HTTP 400 (nope)" in proc.stderr
    assert "non-finite" in proc.stderr
    assert [m["step"] for m in metric_lines(proc.stdout)] == [1, 2]
    assert math.isnan(metric_lines(proc.stdout)[1]["value"])

    # nobody listening: retried briefly, then a warning; the run still succeeds
    closed = receiver()
    url = closed.url
    closed.close()
    env = runtime_env(tmp_path, module, MLP_URL=url, MLP_RUN_TOKEN=TOKEN, MLP_METRICS_RETRY_SECONDS="0.5")
    started = time.monotonic()
    proc = run_runtime("train", env)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 10
    assert "could not deliver 1 metric(s)" in proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr
    assert result_of(env)["status"] == "succeeded"


def test_log_metric_validation(capsys):
    reporter = MetricReporter(run_id=None, url=None, token=None)
    bad = [(("", 1.0), ValueError), (("x", True), TypeError), (("x", "1"), TypeError), ((3, 1.0), TypeError),
           (("x", 1.0, 1.5), TypeError), (("x", 1.0, True), TypeError), (("x" * 129, 1.0), ValueError),
           (("x", None), TypeError), (("x", [1.0]), TypeError)]
    for args, error in bad:
        with pytest.raises(error, match="log_metric"):
            reporter.log_metric(*args)
    reporter.log_metric("ok", 3, 7)
    reporter.log_metric("inf", float("inf"))
    reporter.close()
    printed = metric_lines(capsys.readouterr().out)
    assert [(m["name"], m["value"], m["step"]) for m in printed] == [("ok", 3.0, 7), ("inf", math.inf, None)]


# -- serve ----------------------------------------------------------------------
SERVE_MODEL = """
    import os, time

    class Model:
        def init_predict(self):
            marker = self.artifacts / "markers" / f"init-{os.getpid()}"
            marker.parent.mkdir(exist_ok=True)
            with open(marker, "a") as fh:
                fh.write("init\\n")
            self.factor = int((self.artifacts / "factor.txt").read_text())

        def predict(self, features):
            if features.get("fail"):
                raise RuntimeError("secret internal detail")
            if features.get("unjsonable"):
                return {"s": {1, 2}}
            if features.get("sleep"):
                (self.artifacts / "slow-started").write_text("1")
                time.sleep(features["sleep"])
            return {"y": features["x"] * self.factor, "pid": os.getpid()}
"""


class Served:
    def __init__(self, tmp_path: Path, source: str = SERVE_MODEL, workers: int = 1, **extra_env: Any) -> None:
        self.artifacts = tmp_path / "artifacts"
        self.artifacts.mkdir(exist_ok=True)
        (self.artifacts / "factor.txt").write_text("2")
        module = write_module(tmp_path / "code", source)
        env = runtime_env(tmp_path, module, MLP_PORT=0, MLP_HOST="127.0.0.1", MLP_WORKERS=workers, **extra_env)
        self.stderr_path = tmp_path / f"serve-{time.monotonic_ns()}.err"
        self.lines: list[str] = []
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "mlplatform_server.runtime", "serve"], env=env,
                                         cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True,
                                         start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        line = wait_for(lambda: next((x for x in self.lines if x.startswith("MLP_SERVING")), None),
                        what="MLP_SERVING")
        self.port = int(line.split("port=")[1].split()[0])
        assert f"workers={workers}" in line

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def ready(self, count: int = 1) -> None:
        wait_for(lambda: sum(x.startswith("MLP_READY") for x in self.lines) >= count, what="MLP_READY")

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    def stop(self, timeout: float = 20) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)


@pytest.fixture
def serve(tmp_path):
    started: list[Served] = []

    def start(**kwargs: Any) -> Served:
        started.append(Served(tmp_path, **kwargs))
        return started[-1]

    yield start
    for served in started:
        served.kill()


def test_serve_ping_invocations_and_errors(serve):
    server = serve()
    server.ready()
    assert server.request("GET", "/ping") == (200, {"status": "ok"})

    status, body = server.request("POST", "/invocations", json.dumps({"x": 21}).encode(),
                                  {"Content-Type": "application/json"})
    assert status == 200 and body["y"] == 42 and body["pid"] == server.proc.pid  # one worker: no fork
    # Content-Type need not be application/json
    assert server.request("POST", "/invocations", b'{"x": 1}', {"Content-Type": "text/plain"})[1]["y"] == 2

    status, body = server.request("POST", "/invocations", b'{"x": ')
    assert status == 400 and body["error"] == "invalid_json"
    assert body["message"].startswith("Request body is not valid JSON: ")
    status, body = server.request("POST", "/invocations", b"")
    assert status == 400 and body["error"] == "invalid_json"

    status, body = server.request("POST", "/invocations", b'{"fail": true}')
    assert status == 500
    assert body["error"] == "prediction_failed"
    assert body["message"] == "predict raised an exception; see the server logs"
    assert len(body["error_id"]) == 32 and int(body["error_id"], 16) >= 0
    assert "secret internal detail" not in json.dumps(body) and "Traceback" not in json.dumps(body)

    status, body = server.request("POST", "/invocations", b'{"unjsonable": true}')
    assert status == 500 and body["error"] == "invalid_prediction" and len(body["error_id"]) == 32

    status, body = server.request("GET", "/nope")
    assert status == 404 and body["error"] == "not_found" and "/nope" in body["message"]
    assert server.request("GET", "/invocations")[0] == 405

    assert server.stop() == 0
    err = server.stderr
    failed_id = [line for line in err.splitlines() if "predict raised an exception [error_id=" in line]
    assert failed_id, err
    assert "RuntimeError: secret internal detail" in err and "Traceback" in err


def test_sigterm_lets_the_in_flight_request_finish(serve, tmp_path):
    server = serve()
    server.ready()
    answer: dict[str, Any] = {}

    def slow() -> None:
        answer["response"] = server.request("POST", "/invocations", b'{"x": 5, "sleep": 1.5}')

    client = threading.Thread(target=slow)
    client.start()
    wait_for(lambda: (server.artifacts / "slow-started").exists(), what="the slow request to start")
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    client.join(timeout=20)
    assert answer["response"][0] == 200 and answer["response"][1]["y"] == 10
    assert server.proc.wait(timeout=20) == 0
    assert time.monotonic() - started < 15
    assert any(x.startswith("MLP_STOPPED") for x in server.lines)


def test_sigterm_does_not_wait_past_the_grace_period(serve):
    server = serve(MLP_STOP_GRACE_SECONDS="0.5")
    server.ready()
    outcome: list[BaseException] = []

    def stuck() -> None:
        try:
            server.request("POST", "/invocations", b'{"x": 1, "sleep": 60}')
        except (OSError, http.client.HTTPException) as exc:
            outcome.append(exc)

    client = threading.Thread(target=stuck, daemon=True)
    client.start()
    wait_for(lambda: (server.artifacts / "slow-started").exists(), what="the slow request to start")
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 10
    assert "still running after" in server.stderr
    client.join(timeout=5)
    assert outcome  # the connection was dropped once the grace period was over


def test_init_predict_once_per_worker(serve):
    server = serve(workers=2)
    server.ready(2)
    assert server.request("GET", "/ping") == (200, {"status": "ok"})
    pids = set()
    for i in range(6):
        status, body = server.request("POST", "/invocations", json.dumps({"x": i}).encode())
        assert status == 200 and body["y"] == 2 * i
        pids.add(body["pid"])
    markers = sorted((server.artifacts / "markers").iterdir())
    assert len(markers) == 2
    worker_pids = {int(m.name.split("-")[1]) for m in markers}
    assert server.proc.pid not in worker_pids and pids <= worker_pids
    assert all(m.read_text() == "init\n" for m in markers)  # once per worker process

    assert server.stop() == 0
    for pid in worker_pids:  # the parent forwarded the stop and waited for its workers
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_ping_503_while_init_predict_runs(serve):
    server = serve(source="""
        import time

        class Model:
            def init_predict(self):
                time.sleep(1.5)

            def predict(self, features):
                return features
    """)
    assert server.request("GET", "/ping") == (503, {"status": "loading"})
    assert server.request("POST", "/invocations", b"{}")[0] == 503
    server.ready()
    assert server.request("GET", "/ping") == (200, {"status": "ok"})
    assert server.request("POST", "/invocations", b'[1, "a"]') == (200, [1, "a"])
    assert server.stop() == 0


def test_sigterm_while_workers_are_loading(serve):
    server = serve(workers=2, source="""
        import time

        class Model:
            def init_predict(self):
                time.sleep(30)

            def predict(self, features):
                return features
    """)
    time.sleep(0.3)
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 10
    assert not any(x.startswith("MLP_READY") for x in server.lines)


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_stops_when_the_model_cannot_start(serve, workers):
    server = serve(workers=workers, source="""
        class Model:
            def init_predict(self):
                raise OSError("weights missing")

            def predict(self, features):
                return 1
    """)
    assert server.proc.wait(timeout=20) == 1  # no restart loop with several workers
    err = server.stderr
    assert "init_predict raised OSError: weights missing" in err
    # each worker that got as far as init_predict reports it (the first failure stops the others)
    assert 1 <= err.count("MLP_ERROR") <= workers
    assert "restarting" not in err


def test_serve_without_predict_exits_2(serve):
    server = serve(source="class Model:\n    pass\n")
    assert server.proc.wait(timeout=20) == 2
    assert "Model has no predict method" in server.stderr


def test_runtime_imports_only_stdlib_tornado_and_errors():
    # The runtime runs in minimal images: nothing of ours but errors.py, no third-party package but tornado.
    code = textwrap.dedent("""
        import sys
        before = set(sys.modules)
        import mlplatform_server.runtime.__main__, mlplatform_server.runtime.serve, mlplatform_server.runtime.jobs
        allowed_ours = {"mlplatform_server", "mlplatform_server.errors"}
        bad = sorted(
            name for name in set(sys.modules) - before
            if name.split(".")[0] not in sys.stdlib_module_names and name.split(".")[0] != "tornado"
            and name != "__mp_main__"  # multiprocessing's alias of __main__
            and name not in allowed_ours and not name.startswith("mlplatform_server.runtime")
        )
        print(",".join(bad))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
