"""``POST {base}mlplatform/invoke/<deployment>``: the Lab's "try it" box.

The browser cannot post JSON to a deployment's URL itself (another origin, no CORS, and on
Kubernetes a cluster-internal address), so the Jupyter server looks the deployment up as the
user (the platform answers 404 for someone else's) and posts the body to its ``/invocations``.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

from jupyter_server.auth.decorator import authorized
from tornado import httpclient, web
from tornado.iostream import StreamClosedError

from .extension import BaseHandler, ExtensionError

INVOKE_TIMEOUT = 60.0


class InvokeHandler(BaseHandler):
    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        found = await self.call("GET", f"deployments/{quote(name, safe='')}")
        if found.code != 200:
            return self.relay_response(found)
        deployment = json.loads(found.body)
        url, status = deployment.get("url"), deployment.get("status")
        if status != "ready" or not url:
            raise ExtensionError(
                409, "not_ready", f"Deployment {name!r} is {status}, not ready: wait until its status is 'ready'"
            )
        body = self.request.body or b"{}"
        try:
            json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ExtensionError(400, "invalid_input", f"Request body is not valid JSON: {exc}") from None
        request = httpclient.HTTPRequest(
            f"{url.rstrip('/')}/invocations",
            method="POST",
            body=body,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            request_timeout=INVOKE_TIMEOUT,
            connect_timeout=10,
            follow_redirects=False,
        )
        try:
            response = await self.ext.http.fetch(request, raise_error=False)
        except (OSError, StreamClosedError, asyncio.TimeoutError, httpclient.HTTPClientError) as exc:
            raise ExtensionError(502, "deployment_unreachable", f"Cannot reach deployment {name!r} at {url}: {exc}") from None
        if response.code == 599:
            raise ExtensionError(
                502, "deployment_unreachable", f"Cannot reach deployment {name!r} at {url}: {response.error}"
            )
        self.relay_response(response)
