"""An OCI Distribution API client: catalog and tags with Link pagination, verified manifests and configs, auth."""

from __future__ import annotations

import asyncio
import base64
import re
import sys
import urllib.parse
from collections.abc import AsyncIterator, Generator
from typing import Any

import httpx
import msgspec

from dockyard.schemas.events import ImagePlatform
from dockyard.services.registry_indexer.content import (
    ACCEPT,
    INDEXES,
    MAX_MANIFEST_BYTES,
    Descriptor,
    Garbage,
    check_digest,
    decode_json,
    image_manifest,
    index_entries,
    media_type_of,
    platform_of,
)

try:
    import sniffio  # noqa: F401 - only whether it is there
except ImportError:
    # httpcore tries `import sniffio` on every request; a failed import walks sys.path each time
    # (a third of a crawl's CPU). Recording the absence once makes every later attempt fail at once.
    sys.modules["sniffio"] = None  # type: ignore[assignment]

PAGE = 1000
_LINK = re.compile(r"<([^>]+)>\s*;\s*rel=\"?next\"?")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class Unreachable(Exception):
    """The registry did not answer (refused, timed out, 5xx): the registry's problem, not a tag's."""


class Resolved(msgspec.Struct, frozen=True):
    """What a tag names, checked: the top manifest's digest and its runnable platforms."""

    digest: str
    media_type: str
    size: int
    platforms: tuple[ImagePlatform, ...]


def _scope_of(path: str) -> str:
    if path.startswith("/v2/_catalog"):
        return "registry:catalog:*"
    match = re.match(r"/v2/(.+)/(manifests|blobs|tags)/", path)
    return f"repository:{match.group(1)}:pull" if match else ""


class RegistryAuth(httpx.Auth):
    """Basic credentials, or the bearer-token flow a `WWW-Authenticate: Bearer realm=...` challenge asks for."""

    requires_response_body = True

    def __init__(self, username: str = "", password: str = ""):
        self.basic = ("Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()) if username else ""
        self.tokens: dict[str, str] = {}  # scope -> bearer token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        scope = _scope_of(request.url.path)
        if scope in self.tokens:
            request.headers["Authorization"] = f"Bearer {self.tokens[scope]}"
        elif self.basic:
            request.headers["Authorization"] = self.basic
        response = yield request
        challenge = response.headers.get("www-authenticate", "")
        if response.status_code != 401 or not challenge.lower().startswith("bearer"):
            return
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        query = {k: v for k, v in (("service", params.get("service", "")), ("scope", params.get("scope", scope))) if v}
        token_request = httpx.Request("GET", params.get("realm", ""), params=query)
        if self.basic:
            token_request.headers["Authorization"] = self.basic
        token_response = yield token_request
        if token_response.status_code != 200:
            return
        try:
            body = msgspec.json.decode(token_response.content)
            token = body.get("token") or body.get("access_token") or ""
        except (msgspec.DecodeError, AttributeError):
            return
        if token:
            self.tokens[scope] = token
            request.headers["Authorization"] = f"Bearer {token}"
            yield request


class Registry:
    """One registry, its requests bounded to `concurrency` in flight."""

    def __init__(self, url: str, *, username: str = "", password: str = "", insecure: bool = False,
                 concurrency: int = 32, timeout: float = 10.0):
        self.url = url.rstrip("/")
        if "://" not in self.url:
            self.url = ("http://" if insecure else "https://") + self.url
        self.name = urllib.parse.urlsplit(self.url).netloc
        self._slots = asyncio.Semaphore(concurrency)
        self._http = httpx.AsyncClient(
            base_url=self.url, auth=RegistryAuth(username, password), verify=not insecure, timeout=timeout,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self._manifests: dict[str, tuple[str, bytes]] = {}  # digest -> (media type, body): content never changes
        self._platforms: dict[str, ImagePlatform] = {}
        # digest -> the config's fetch, shared by every tag that names it (one image in many repositories)
        self._configs: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def close(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str, *, headers: dict[str, str] | None = None,
                   params: dict[str, Any] | None = None) -> httpx.Response:
        async with self._slots:
            try:
                response = await self._http.get(path, headers=headers, params=params)
            except httpx.HTTPError as exc:
                raise Unreachable(f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__) from None
        if response.status_code >= 500 or response.status_code in (401, 403, 429):
            raise Unreachable(f"GET {path}: HTTP {response.status_code}")
        return response

    async def ping(self) -> None:
        await self._get("/v2/")

    async def _pages(self, path: str, key: str) -> AsyncIterator[str]:
        url, params = path, {"n": PAGE}
        while url:
            response = await self._get(url, params=params)
            if response.status_code == 404:
                return
            if response.status_code != 200:
                raise Garbage(f"GET {url}: HTTP {response.status_code}")
            names = decode_json(response.content, url).get(key) or []
            if not isinstance(names, list):
                raise Garbage(f"GET {url}: {key} is not a list")
            for name in names:
                yield str(name)
            match = _LINK.search(response.headers.get("link", ""))
            url, params = (match.group(1), None) if match else ("", None)

    async def repositories(self) -> list[str]:
        return [name async for name in self._pages("/v2/_catalog", "repositories")]

    async def tags(self, repository: str) -> list[str]:
        return [tag async for tag in self._pages(f"/v2/{repository}/tags/list", "tags")]

    async def manifest(self, repository: str, reference: str) -> tuple[str, str, bytes] | None:
        """(digest, media type, body) of a manifest, its digest checked; None if the registry has none."""
        if reference in self._manifests:
            media_type, body = self._manifests[reference]
            return reference, media_type, body
        response = await self._get(f"/v2/{repository}/manifests/{reference}", headers={"Accept": ACCEPT})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise Garbage(f"manifest {reference}: HTTP {response.status_code}")
        body = response.content
        if len(body) > MAX_MANIFEST_BYTES:
            raise Garbage(f"manifest {reference}: {len(body)} bytes is larger than any manifest")
        claimed = reference if reference.startswith("sha") else response.headers.get("docker-content-digest", "")
        digest = check_digest(body, claimed)
        document = decode_json(body, f"manifest {reference}")
        media_type = media_type_of(document, response.headers.get("content-type", ""))
        self._manifests[digest] = (media_type, body)
        return digest, media_type, body

    async def _fetch_config(self, repository: str, digest: str) -> dict[str, Any]:
        response = await self._get(f"/v2/{repository}/blobs/{digest}")
        if response.status_code != 200:
            raise Garbage(f"config {digest}: HTTP {response.status_code}")
        check_digest(response.content, digest)
        return decode_json(response.content, f"config {digest}")

    async def config(self, repository: str, digest: str) -> dict[str, Any]:
        if digest not in self._configs:
            self._configs[digest] = asyncio.ensure_future(self._fetch_config(repository, digest))
        fetch = self._configs[digest]
        try:
            return await asyncio.shield(fetch)
        except (Garbage, Unreachable):
            self._configs.pop(digest, None)  # another repository, or a later try, may fare better
            raise

    async def platform(self, repository: str, digest: str, media_type: str, body: bytes,
                       hint: Descriptor | None = None) -> ImagePlatform:
        if digest not in self._platforms:
            manifest = image_manifest(decode_json(body, f"manifest {digest}"))
            config = await self.config(repository, manifest.config.digest)
            self._platforms[digest] = platform_of(digest, media_type, manifest, config, hint)
        return self._platforms[digest]

    async def resolve(self, repository: str, tag: str, digest: str = "", known: str = "") -> Resolved | None:
        """What `repository:tag` names now (or, from a push notification, `digest`), every digest checked.

        None if the tag is gone. A notification names the digest because Distribution sends it
        before the tag is linked: reading the tag then can still answer 404 or the old manifest.
        A tag still naming `known` (checked when it was indexed) is answered without its platforms.
        """
        found = await self.manifest(repository, digest or tag)
        if found is None:
            return None
        digest, media_type, body = found
        if digest == known:
            return Resolved(digest, media_type, len(body), ())
        if media_type not in INDEXES:
            platform = await self.platform(repository, digest, media_type, body)
            return Resolved(digest, media_type, len(body), (platform,))
        entries = index_entries(decode_json(body, f"index {digest}"), digest)

        async def child(entry: Descriptor) -> ImagePlatform:
            got = await self.manifest(repository, entry.digest)
            if got is None:
                raise Garbage(f"index {digest} lists {entry.digest}, which the registry does not have")
            if got[1] in INDEXES:
                raise Garbage(f"nested index {entry.digest} is not supported")
            return await self.platform(repository, got[0], got[1], got[2], entry)

        platforms = await asyncio.gather(*(child(e) for e in entries))
        return Resolved(digest, media_type, len(body), tuple(platforms))
