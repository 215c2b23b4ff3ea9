"""``mlp tensorboard RUN``: a run's logs in TensorBoard, through the user's Jupyter server.

The Jupyter server's mlplatform extension checks with the platform that the user may see the run,
then serves one TensorBoard per run at ``{base}mlplatform/tensorboard/<run>/`` (jupyter-server-proxy
starts and proxies it; see tensorboard.py). This command asks for it, starts it (the first request
does) and prints the URL.

Inside a hub notebook server everything is already in the environment (``JUPYTERHUB_SERVICE_URL``,
``JUPYTERHUB_API_TOKEN``); elsewhere pass ``--jupyter-url`` / ``--jupyter-token`` or set
``MLP_JUPYTER_URL`` / ``MLP_JUPYTER_TOKEN``. ``MLP_PUBLIC_URL`` (set by the hub's spawners) is the
origin printed for a browser when it differs from the one this command reaches.
"""

from __future__ import annotations

import json
import os
from urllib.parse import urljoin, urlsplit

import click
import httpx

from .errors import PlatformError

# Nothing from cli.py: it imports this module at its end (and may run as __main__).


class TensorBoardError(PlatformError):
    status = 502
    code = "tensorboard"


def _jupyter_url(given: str | None) -> str:
    url = given or os.environ.get("MLP_JUPYTER_URL") or os.environ.get("JUPYTERHUB_SERVICE_URL")
    if not url:
        raise click.UsageError("no Jupyter server: pass --jupyter-url URL (the server's base URL, e.g. "
                               "http://127.0.0.1:8888/) or set MLP_JUPYTER_URL; inside a hub notebook "
                               "server JUPYTERHUB_SERVICE_URL is used")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(f"expected an http(s) URL, got {url!r}", param_hint="--jupyter-url")
    return url if url.endswith("/") else url + "/"


def _message(resp: httpx.Response) -> str:
    try:
        return str(resp.json()["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {resp.status_code}"


@click.command("tensorboard")
@click.argument("run")
@click.option("--jupyter-url", default=None, help="Base URL of your Jupyter server (default: $MLP_JUPYTER_URL, "
              "or $JUPYTERHUB_SERVICE_URL in a hub notebook server).")
@click.option("--jupyter-token", default=None, help="Its token (default: $MLP_JUPYTER_TOKEN, or "
              "$JUPYTERHUB_API_TOKEN in a hub notebook server).")
@click.option("--no-start", is_flag=True, help="Print the URL without starting TensorBoard (the first visit does).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def tensorboard(run: str, jupyter_url: str | None, jupyter_token: str | None, no_start: bool,
                as_json: bool) -> None:
    """Open RUN's logs (its artifacts/logs folder, else its artifacts) in TensorBoard; print the URL."""
    base = _jupyter_url(jupyter_url)
    token = jupyter_token or os.environ.get("MLP_JUPYTER_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN") or ""
    headers = {"Authorization": f"token {token}"} if token else {}
    with httpx.Client(headers=headers, timeout=httpx.Timeout(180, connect=10)) as http:
        try:
            resp = http.post(urljoin(base, "mlplatform/tensorboards"), json={"run": run})
        except httpx.HTTPError as exc:
            raise TensorBoardError(f"Cannot reach the Jupyter server at {base}: {type(exc).__name__}") from None
        if resp.status_code in (401, 403):
            raise TensorBoardError(f"The Jupyter server at {base} refused the token (HTTP {resp.status_code}): "
                                   "pass --jupyter-token or set MLP_JUPYTER_TOKEN")
        if resp.status_code != 200:
            raise TensorBoardError(f"TensorBoard for run {run}: {_message(resp)}")
        answer = resp.json()
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(base))
        reached = origin + answer["url"]
        if not no_start:
            try:
                page = http.get(reached, follow_redirects=True)
            except httpx.HTTPError as exc:
                raise TensorBoardError(f"TensorBoard for run {run} did not answer: {type(exc).__name__}") from None
            if page.status_code != 200:
                raise TensorBoardError(f"TensorBoard for run {run} did not start (HTTP {page.status_code})")
    public = os.environ.get("MLP_PUBLIC_URL", "").rstrip("/") or origin
    data = {"run": run, "url": public + answer["url"], "logdir": answer.get("logdir"), "started": not no_start}
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else data["url"])
