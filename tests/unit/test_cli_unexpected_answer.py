"""`mlp` against a server whose JSON lacks what the CLI reads (another version of the platform, or
something else answering at MLP_URL): one `error:` line naming the address and exit 1, never a
traceback. The server here is a stand-in on purpose — a real platform never answers like this."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

MLP = Path(sys.executable).with_name("mlp")


class EmptyJSON(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        body = json.dumps({}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture
def empty_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), EmptyJSON)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def mlp(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MLP), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MLP_URL": url, "MLP_TOKEN": "t", **env})


@pytest.mark.parametrize("args", [("build", "iris", "--json"), ("runs", "list")])
def test_an_answer_without_the_expected_fields_is_one_clear_error(empty_server, args):
    proc = mlp(empty_server, *args)
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: unexpected answer from the platform API at {empty_server}"), line
    assert "MLP_DEBUG=1" in line


def test_mlp_debug_shows_the_traceback(empty_server):
    proc = mlp(empty_server, "build", "iris", MLP_DEBUG="1")
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "KeyError" in proc.stderr
