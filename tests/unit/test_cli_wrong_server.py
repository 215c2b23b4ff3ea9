"""`mlp` pointed at something that is not what it expects — `MLP_URL` at a web page instead of the
platform API, `mlp tensorboard` at something that is not a Jupyter server with the mlplatform
extension: one `error:` line and exit 1, never a traceback (happy paths: tests/e2e, tests/api)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest


class _OtherSite(BaseHTTPRequestHandler):
    """A web server that answers 200 to everything, as a login page or another service would."""

    def do_GET(self) -> None:  # noqa: N802
        self.do_POST()

    def do_POST(self) -> None:  # noqa: N802
        body = b"<html>sign in</html>" if self.path.startswith("/html/") else b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if self.path.startswith("/html/") else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def other_site() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _OtherSite)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def _mlp(*args: str, url: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLP_URL": url, "MLP_TOKEN": "t"} if url else None
    return subprocess.run([sys.executable, "-m", "mlplatform_server.cli", *args], capture_output=True, text=True,
                          timeout=60, env=env)


@pytest.mark.parametrize("args", [("models", "list"), ("schedules", "list"), ("credentials", "list")])
def test_mlp_url_at_a_web_page_is_one_error_line(other_site: str, args: tuple[str, ...]) -> None:
    proc = _mlp(*args, url=other_site + "/html/")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    assert "text/html, not the platform API's JSON: is MLP_URL the platform API?" in proc.stderr


@pytest.mark.parametrize("prefix", ["/html/", "/json/"])
def test_not_a_jupyter_server_is_one_error_line(other_site: str, prefix: str) -> None:
    proc = _mlp("tensorboard", "r1", "--jupyter-url", other_site + prefix)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert "did not answer as a Jupyter server" in proc.stderr and "--jupyter-url" in proc.stderr


def test_unreachable_and_bad_url() -> None:
    down = _mlp("tensorboard", "r1", "--jupyter-url", "http://127.0.0.1:1/")
    assert down.returncode == 1 and down.stderr.startswith("error: Cannot reach the Jupyter server")
    bad = _mlp("tensorboard", "r1", "--jupyter-url", "ftp://x")
    assert bad.returncode == 2 and "expected an http(s) URL" in bad.stderr and "Traceback" not in bad.stderr
