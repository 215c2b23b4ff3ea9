"""A small OCI distribution API client (httpx): what the layer builder needs, nothing more.

Manifests (docker v2 schema 2, OCI, and an index / manifest list: linux/amd64 is picked), blobs
(HEAD, GET, cross-repository mount, monolithic upload), manifest PUT; Basic auth and Bearer tokens
from a docker ``config.json``. Every byte sent in a blob or manifest body is counted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ..errors import BackendError, InvalidInput, NotFound

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST])


class RegistryError(BackendError):
    code = "registry_error"


class RegistryUnreachable(RegistryError):
    code = "registry_unreachable"


class RegistryAuthError(RegistryError):
    code = "registry_auth"


class ImageNotInRegistry(NotFound):
    code = "image_not_found"


_HOST = re.compile(r"^(localhost|[^/]*[.:][^/]*)$")


@dataclass(frozen=True)
class ImageRef:
    registry: str  # host[:port]
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> "ImageRef":
        rest, _, digest = text.partition("@")
        first, slash, remainder = rest.partition("/")
        if not slash or not _HOST.match(first):
            raise InvalidInput(
                f"{text!r} is not an image reference in a registry (expected HOST[:PORT]/REPOSITORY[:TAG])")
        repository, tag = remainder, None
        if ":" in remainder.rsplit("/", 1)[-1]:
            repository, _, tag = remainder.rpartition(":")
        if not repository:
            raise InvalidInput(f"{text!r} names no repository")
        return cls(first, repository, tag or None, digest or None)

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def registry_host(url: str) -> str:
    """'http://127.0.0.1:55000/' or '127.0.0.1:55000' → '127.0.0.1:55000'."""
    return re.sub(r"^[a-z]+://", "", url.strip()).rstrip("/")


def registry_scheme(url: str) -> str:
    match = re.match(r"^([a-z]+)://", url.strip())
    if match:
        return match.group(1)
    host = registry_host(url).rsplit(":", 1)[0]
    return "http" if host in ("localhost", "127.0.0.1", "::1", "[::1]") or host.startswith("127.") else "https"


def load_credentials(auth_file: Path | str | None, registry: str) -> tuple[str, str] | None:
    """(user, password) for `registry` from a docker config.json, or None."""
    if not auth_file:
        return None
    try:
        data = json.loads(Path(auth_file).read_text())
    except OSError as exc:
        raise RegistryAuthError(f"Cannot read the registry credentials file {auth_file}: {exc.strerror}") from None
    except ValueError as exc:
        raise RegistryAuthError(f"The registry credentials file {auth_file} is not valid JSON: {exc}") from None
    auths = data.get("auths") or {}
    for key, entry in auths.items():
        if registry_host(key) != registry or not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, password
        if entry.get("username"):
            return entry["username"], entry.get("password", "")
    return None


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


class RegistryClient:
    def __init__(self, registry_url: str, auth_file: Path | str | None = None, timeout: float = 60.0,
                 scopes: list[str] | None = None) -> None:
        self.registry = registry_host(registry_url)
        self.url = f"{registry_scheme(registry_url)}://{self.registry}"
        self.auth_file = auth_file
        self.credentials = load_credentials(auth_file, self.registry)
        self.scopes = scopes or []
        self.http = httpx.Client(base_url=self.url, timeout=timeout, follow_redirects=True)
        self.auth_header: str | None = None
        self.bytes_uploaded = 0
        self.blobs_mounted = 0
        self.blobs_copied = 0

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------
    def request(self, method: str, url: str, *, headers: dict[str, str] | None = None, content: bytes | None = None,
                params: dict[str, str] | None = None, retry_auth: bool = True) -> httpx.Response:
        headers = dict(headers or {})
        if self.auth_header:
            headers["Authorization"] = self.auth_header
        try:
            response = self.http.request(method, url, headers=headers, content=content, params=params)
        except httpx.TransportError as exc:
            raise RegistryUnreachable(f"Cannot reach the registry at {self.url}: {exc or exc.__class__.__name__}",
                                      registry=self.registry) from None
        if content:
            self.bytes_uploaded += len(content)
        if response.status_code == 401 and retry_auth:
            self._authenticate(response)
            return self.request(method, url, headers=headers, content=content, params=params, retry_auth=False)
        if response.status_code == 401:
            where = f"the credentials for {self.registry} in {self.auth_file}" if self.credentials else "no credentials"
            raise RegistryAuthError(f"The registry at {self.url} refused {where} (401 Unauthorized)",
                                    registry=self.registry)
        if response.status_code == 403:
            raise RegistryAuthError(f"The registry at {self.url} denied {method} {url} (403 Forbidden)",
                                    registry=self.registry)
        return response

    def _authenticate(self, response: httpx.Response) -> None:
        scheme, params = _challenge(response.headers.get("WWW-Authenticate", ""))
        if self.credentials is None and scheme == "basic":
            source = f"in {self.auth_file}" if self.auth_file else "(no --registry-auth file is configured)"
            raise RegistryAuthError(f"The registry at {self.url} needs credentials, and there are none for "
                                    f"{self.registry} {source}", registry=self.registry)
        if scheme == "basic":
            user, password = self.credentials  # type: ignore[misc]
            self.auth_header = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        elif scheme == "bearer" and params.get("realm"):
            scopes = list(self.scopes)
            if params.get("scope") and params["scope"] not in scopes:
                scopes.append(params["scope"])
            query: list[tuple[str, str]] = [("service", params.get("service", ""))] + [("scope", s) for s in scopes]
            try:
                token_response = httpx.get(params["realm"], params=query, timeout=30,
                                           auth=self.credentials if self.credentials else None)
            except httpx.TransportError as exc:
                raise RegistryUnreachable(f"Cannot reach the registry's token service {params['realm']}: {exc}") from None
            if token_response.status_code != 200:
                raise RegistryAuthError(f"The token service {params['realm']} of {self.registry} refused "
                                        f"the credentials ({token_response.status_code})", registry=self.registry)
            body = token_response.json()
            self.auth_header = "Bearer " + (body.get("token") or body.get("access_token") or "")
        else:
            raise RegistryAuthError(f"The registry at {self.url} asks for an unsupported authentication: "
                                    f"{response.headers.get('WWW-Authenticate')!r}", registry=self.registry)

    def _fail(self, response: httpx.Response, what: str) -> RegistryError:
        detail = response.text[:300].strip()
        return RegistryError(f"{what}: the registry at {self.url} answered {response.status_code} {detail}",
                             registry=self.registry)

    def ping(self) -> None:
        response = self.request("GET", "/v2/")
        if response.status_code != 200:
            raise self._fail(response, "Registry API check failed")

    # -- manifests -------------------------------------------------------------
    def get_manifest(self, repository: str, reference: str, platform: tuple[str, str] = ("linux", "amd64")
                     ) -> tuple[dict[str, Any], str, str]:
        """(manifest, media type, digest); an index is resolved to its `platform` entry."""
        response = self.request("GET", f"/v2/{repository}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT})
        if response.status_code == 404:
            raise ImageNotInRegistry(f"The image {self.registry}/{repository}:{reference} is not in the registry",
                                     image=f"{self.registry}/{repository}:{reference}")
        if response.status_code != 200:
            raise self._fail(response, f"Reading the manifest of {repository}:{reference} failed")
        body = response.content
        manifest = json.loads(body)
        media_type = manifest.get("mediaType") or response.headers.get("Content-Type", "").split(";")[0]
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if media_type in (OCI_INDEX, DOCKER_LIST):
            want_os, want_arch = platform
            for entry in manifest.get("manifests", []):
                p = entry.get("platform") or {}
                if p.get("os") == want_os and p.get("architecture") == want_arch:
                    return self.get_manifest(repository, entry["digest"], platform)
            raise RegistryError(f"The image {repository}:{reference} has no {want_os}/{want_arch} manifest")
        if media_type not in (OCI_MANIFEST, DOCKER_MANIFEST):
            raise RegistryError(f"The image {repository}:{reference} has an unsupported manifest type {media_type!r}")
        return manifest, media_type, digest

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        response = self.request("PUT", f"/v2/{repository}/manifests/{reference}", content=body,
                                headers={"Content-Type": media_type})
        if response.status_code not in (200, 201):
            raise self._fail(response, f"Pushing the manifest of {repository}:{reference} failed")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        answered = response.headers.get("Docker-Content-Digest")
        if answered and answered != digest:
            raise RegistryError(f"The registry stored the manifest as {answered}, expected {digest}")
        return digest

    # -- blobs -----------------------------------------------------------------
    def has_blob(self, repository: str, digest: str) -> bool:
        response = self.request("HEAD", f"/v2/{repository}/blobs/{digest}")
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise self._fail(response, f"Checking blob {digest} in {repository} failed")

    def get_blob(self, repository: str, digest: str) -> bytes:
        response = self.request("GET", f"/v2/{repository}/blobs/{digest}")
        if response.status_code != 200:
            raise self._fail(response, f"Reading blob {digest} of {repository} failed")
        data = response.content
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise RegistryError(f"Blob {digest} of {repository} does not match its digest")
        return data

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> None:
        """Make `digest` of `from_repository` part of `repository` without moving bytes (or, if the
        registry declines the mount, by copying it through this client)."""
        if self.has_blob(repository, digest):
            return
        response = self.request("POST", f"/v2/{repository}/blobs/uploads/",
                                params={"mount": digest, "from": from_repository})
        if response.status_code == 201:
            self.blobs_mounted += 1
            return
        if response.status_code == 202:  # mount declined: an ordinary upload was opened instead
            self._finish_upload(response, repository, self.get_blob(from_repository, digest), digest)
            self.blobs_copied += 1
            return
        raise self._fail(response, f"Mounting blob {digest} from {from_repository} into {repository} failed")

    def upload_blob(self, repository: str, data: bytes, digest: str) -> bool:
        """Upload `data` (monolithic: POST then one PUT); False when the registry has it already."""
        if self.has_blob(repository, digest):
            return False
        response = self.request("POST", f"/v2/{repository}/blobs/uploads/")
        if response.status_code != 202:
            raise self._fail(response, f"Starting an upload to {repository} failed")
        self._finish_upload(response, repository, data, digest)
        return True

    def _finish_upload(self, started: httpx.Response, repository: str, data: bytes, digest: str) -> None:
        location = started.headers.get("Location")
        if not location:
            raise RegistryError(f"The registry at {self.url} opened an upload without a Location")
        # the Location carries the upload's state in its query: add the digest to it, never replace it
        url = str(httpx.URL(location).copy_merge_params({"digest": digest}))
        response = self.request("PUT", url, content=data,
                                headers={"Content-Type": "application/octet-stream"})
        if response.status_code != 201:
            raise self._fail(response, f"Uploading blob {digest} to {repository} failed")
