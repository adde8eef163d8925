"""The ASGI application of `boxpack serve`: Vagrant's paths and pages for people, over a store.

Vagrant asks for a catalog at `<server>/ORG/NAME` (2.3) and `<server>/api/v2/vagrant/ORG/NAME` first (2.4;
lib/vagrant/action/builtin/box_add.rb, BoxAdd#call), with HEAD before GET, and takes it for a catalog only
when it answers Content-Type application/json (BoxAdd#metadata_url?). With a token (VAGRANT_CLOUD_TOKEN, or
`vagrant cloud auth login`) it sends `Authorization: Bearer TOKEN` on every request to the host of
VAGRANT_SERVER_URL, and only there (plugins/commands/cloud/auth/middleware/add_downloader_authentication.rb,
AddDownloaderAuthentication#call). So the catalog it gets names boxes on this server; a box on S3 is
answered with a redirect to a URL presigned for minutes, which curl follows without the token (it sends
Authorization to the host it was given only), and the bytes never pass through here; a box in a directory
is sent as a file (HEAD, Range, ETag).

A private box (access.py) needs a token that may read it: without a token, or with one that is not
valid, 401 and `WWW-Authenticate: Bearer`; with a valid one that may not, 404, as for a box that does not
exist, so private names do not leak. A public box needs no token, and one sent is not looked at (a user's
old HCP token must not break public boxes). Every replica reads the same store: what a worker read is
reused for at most Config.fresh seconds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ... import catalog
from ...errors import BoxpackError
from .. import access, layout
from ..stores import open_target
from ..stores.base import Stat, Store
from . import api, pages
from .pages import Denied

T = TypeVar("T")
log = logging.getLogger("boxpack.serve")
NAME_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
MAX_URL = 4096  # bytes of a request's path and query
CACHE_ENTRIES = 10_000  # what one worker keeps, at most: catalogs, records, listings
FILE_CHUNK = 1024 * 1024  # a box file is sent in reads this large: 64 KiB (Starlette's) gave a fifth of nginx's rate


@dataclass(frozen=True)
class Config:
    store: str  # s3://BUCKET/PREFIX or a directory, as publish's --to
    public_url: str  # the address clients use: the catalogs' box URLs are made from it
    endpoint_url: str | None = None
    presign_seconds: int = 300  # how long a box's redirect to S3 works
    fresh: float = 2.0  # seconds a worker reuses what it read from the store: a new version shows within them
    failures_per_minute: int = 10  # invalid tokens one client may try before it is told to wait


class Fresh:
    """What a worker read from the store, reused for at most `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.entries: dict[Any, tuple[float, Any]] = {}

    async def get(self, key: Any, load: Callable[[], T]) -> T:
        now = time.monotonic()
        hit = self.entries.get(key)
        if hit and now - hit[0] < self.seconds:
            return hit[1]
        value = await run_in_threadpool(load)  # the store's clients block: off the event loop
        if len(self.entries) >= CACHE_ENTRIES:
            self.entries.clear()
        self.entries[key] = (now, value)
        return value


class Failures:
    """Invalid tokens per client, in the last minute of this worker."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: dict[str, deque[float]] = {}

    def wait(self, client: str) -> int:
        """Seconds the client must wait before it may try another token; 0 when it may now."""
        times = self.seen.get(client)
        now = time.monotonic()
        while times and now - times[0] > 60:
            times.popleft()
        return int(61 - (now - times[0])) if times and len(times) >= self.limit else 0

    def add(self, client: str) -> None:
        if len(self.seen) >= CACHE_ENTRIES:
            self.seen.clear()
        self.seen.setdefault(client, deque()).append(time.monotonic())


class Server:
    def __init__(self, config: Config, store: Store | None = None) -> None:
        self.config = config
        self.store = store or open_target(config.store, config.endpoint_url)
        self.public_url = config.public_url.rstrip("/")
        self.fresh = Fresh(config.fresh)
        self.failures = Failures(config.failures_per_minute)

    # --- what the store says, as fresh as Config.fresh -----------------------------------------

    async def catalog(self, name: str) -> tuple[bytes, str] | None:
        """The catalog as this server serves it (box URLs on this server) and its ETag, or None."""
        def load() -> tuple[bytes, str] | None:
            key, *_ = layout.catalog_keys(name, self.store.nested)
            got = self.store.get(key, layout.CATALOG_LIMIT)
            if got is None:
                return None
            doc = catalog.parse(got[0], f"{self.store.where}/{key}")
            for v in doc["versions"]:
                for p in v["providers"]:
                    p["url"] = layout.url(self.public_url, layout.box_key(name, v["version"], p["name"], p["architecture"]))
            data = json.dumps(doc, indent=2).encode() + b"\n"
            return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'

        return await self.fresh.get(("catalog", name), load)

    async def private(self, name: str) -> bool:
        return await self.fresh.get(("private", name), lambda: access.is_private(self.store, name))

    async def stat(self, key: str) -> Stat | None:
        return await self.fresh.get(("stat", key), lambda: self.store.stat(key))

    async def names(self) -> list[str]:
        """Every ORG/NAME the store holds a catalog of."""
        return await self.fresh.get("names", lambda: sorted(pages.catalog_names(self.store)))

    # --- who asks ---------------------------------------------------------------------------------

    async def token(self, request: Request) -> access.Token | None:
        """The valid token the request carries, None when it carries none; Denied for one that is not valid."""
        given = _presented(request)
        if given is None:
            return None
        client = request.client.host if request.client else "?"
        wait = self.failures.wait(client)
        if wait:
            raise Denied(PlainTextResponse("too many invalid tokens; wait\n", 429, {"Retry-After": str(wait)}))
        record = await self.fresh.get(("token", hashlib.sha256(given.encode()).hexdigest()),
                                      lambda: access.check_token(self.store, given))
        if record is None:
            self.failures.add(client)
            request.state.token = f"invalid:{access.token_id(given) or '?'}"
            raise Denied(pages.unauthorized(request, "the token is not valid (revoked, expired, or mistyped)"))
        request.state.token = record.id
        return record

    async def may_read(self, request: Request, name: str) -> None:
        """Denied unless the box ORG/NAME is public or the request's token may read it."""
        if not await self.private(name):
            return
        record = await self.token(request)
        if record is None:
            raise Denied(pages.unauthorized(request, "this box needs a token"))
        if not record.may(name):
            raise Denied(PlainTextResponse("not found\n", 404))

    # --- the routes -----------------------------------------------------------------------------------

    async def catalog_route(self, request: Request) -> Response:
        name = _name(request)
        await self.may_read(request, name)
        if pages.wants_html(request):
            return await pages.box_page(self, request, name)
        found = await self.catalog(name)
        if found is None:
            return PlainTextResponse("not found\n", 404)
        data, etag = found
        private = await self.private(name)
        headers = {"ETag": etag, "Cache-Control": "private, no-cache" if private else "public, max-age=60"}
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(data, 200, headers, media_type="application/json")

    async def box_route(self, request: Request) -> Response:
        p = request.path_params
        name = _name(request)
        try:
            key = layout.box_key(name, p["version"], p["provider"], p["arch"])
        except BoxpackError:
            return PlainTextResponse("not found\n", 404)
        await self.may_read(request, name)
        private = await self.private(name)
        cache = "private, no-store" if private else "public, max-age=31536000, immutable"
        presign = getattr(self.store, "presign", None)
        if presign is not None:  # S3: the bytes go from the store to the client, never through here
            if await self.stat(key) is None:
                return PlainTextResponse("not found\n", 404)
            url = await run_in_threadpool(presign, key, self.config.presign_seconds)
            return RedirectResponse(url, 302, {"Cache-Control": "private, no-store"})
        path = self.store.path(key)  # type: ignore[attr-defined]  # a DirectoryStore: the file as it is
        try:
            st = path.stat()
        except OSError:
            return PlainTextResponse("not found\n", 404)
        etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers={"ETag": etag, "Cache-Control": cache})
        response = FileResponse(path, media_type="application/octet-stream", headers={"ETag": etag, "Cache-Control": cache},
                                stat_result=st)
        response.chunk_size = FILE_CHUNK
        return response

    async def org_route(self, request: Request) -> Response:
        org = request.path_params["org"]
        if not NAME_PART.fullmatch(org):
            return PlainTextResponse("not found\n", 404)
        return await pages.org_page(self, request, org)

    async def index_route(self, request: Request) -> Response:
        return await pages.index_page(self, request)

    async def login_route(self, request: Request) -> Response:
        return await pages.login_page(self, request)


def _presented(request: Request) -> str | None:
    """The token in the Authorization header: Bearer (Vagrant, curl), or Basic's password (a browser)."""
    kind, _, value = request.headers.get("authorization", "").partition(" ")
    if kind.lower() == "bearer" and value.strip():
        return value.strip()
    if kind.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or user or None
    return None


def _name(request: Request) -> str:
    p = request.path_params
    if not (NAME_PART.fullmatch(p["org"]) and NAME_PART.fullmatch(p["name"])):
        raise Denied(PlainTextResponse("not found\n", 404))
    return f"{p['org']}/{p['name']}"


def _guarded(route: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """A route whose refusals (Denied) are its answers, and whose store failing is a 503 in one line."""
    async def guarded(request: Request) -> Response:
        try:
            return await route(request)
        except Denied as e:
            return e.response
        except BoxpackError as e:
            log.error("the store failed: %s", e)
            return PlainTextResponse(f"the store cannot be read: {e}\n", 503, {"Retry-After": "5"})

    return guarded


class Checked:
    """Refuse what no route takes, before any route sees it: oversized URLs, encoded slashes or NUL, dot
    segments; and one log line per request that names the token by its id, never the token."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = scope.get("raw_path") or scope["path"].encode()
        problem = _path_problem(raw, scope.get("query_string", b""), scope["path"])
        status = {"code": 0}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        if problem:
            await PlainTextResponse(problem[1] + "\n", problem[0])(scope, receive, sending)
        else:
            scope.setdefault("state", {})
            await self.app(scope, receive, sending)
        client = scope.get("client") or ("?", 0)
        state = scope.get("state", {})
        why = f' why="{state["why"]}"' if "why" in state else ""  # an API refusal: curl --fail shows the status only
        access_log(f'{client[0]} "{scope["method"]} {quote(scope["path"])}" {status["code"]} token={state.get("token", "-")}{why}')


class _AccessLog:
    """One line per request on stderr, written straight (the logging module's records and time formatting
    took a fifth of the catalogs served a second)."""

    def __init__(self) -> None:
        self.second = -1
        self.stamp = ""

    def __call__(self, line: str) -> None:
        now = int(time.time())
        if now != self.second:
            self.second, self.stamp = now, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now))
        try:
            os.write(2, f"{self.stamp} boxpack serve[{os.getpid()}]: {line}\n".encode(errors="replace"))
        except OSError:
            pass  # a closed stderr: nothing to log to


access_log = _AccessLog()


def _path_problem(raw: bytes, query: bytes, path: str) -> tuple[int, str] | None:
    if len(raw) + len(query) > MAX_URL:
        return 414, "the URL is too long"
    lowered = raw.lower()
    if b"%2f" in lowered or b"%5c" in lowered or b"%00" in lowered or "\0" in path or "\\" in path:
        return 400, "encoded slashes, backslashes and NUL are not part of any name here"
    if any(segment in (".", "..") for segment in path.split("/")):
        return 400, "dot segments are not part of any name here"
    return None


def create_app(config: Config, store: Store | None = None) -> ASGIApp:
    server = Server(config, store)
    get = ["GET", "HEAD"]
    routes = [*api.routes(api.Api(server), _guarded),  # before /{org}/{name}, which /api/v1 would match
        Route("/", _guarded(server.index_route), methods=get),
        Route("/.login", _guarded(server.login_route), methods=get),  # no organisation starts with a dot
        Route("/api/v2/vagrant/{org}/{name}", _guarded(server.catalog_route), methods=get),
        Route("/{org}", _guarded(server.org_route), methods=get),
        Route("/{org}/{name}", _guarded(server.catalog_route), methods=get),
        Route("/{org}/{name}/{version}/{provider}/{arch}/vagrant.box", _guarded(server.box_route), methods=get),
    ]
    app = Starlette(routes=routes)
    app.state.server = server
    return Checked(app)
