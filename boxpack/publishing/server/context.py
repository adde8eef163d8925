"""What every part of `boxpack serve` shares: its configuration, what it read from the store (as fresh as
Config.fresh), and who asks: tokens, and who may read or write which box.

Who may read a box answers alike for a private box and a missing one, so private names do not leak: without a
token, 404 for both; with a token that is not valid, 401 for both; with a valid one that may not read it,
404. A public box needs no token, and one sent is not looked at, nor counted (a user's old HCP token must not
break public boxes). A token comes as `Authorization: Bearer`, `X-Atlas-Token` or the `access_token` query
parameter (Vagrant Cloud's three), and, to read only (GET, HEAD), as a browser's Basic password: a browser
sends that by itself, so it opens nothing that changes state.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from starlette.requests import Request

from ... import catalog
from ...catalog import Catalog
from ...errors import NotFound
from .. import access, boxes, counts, layout
from ..records import BoxView
from ..stores.base import Store
from .limits import Failures

T = TypeVar("T")
CACHE_BYTES = 64 * 1024 * 1024  # what one worker keeps of what it read, at most (a catalog counts its size thrice)
READ_THREADS = 16  # store reads at once per worker: catalogs, pages, the API (uploads have their own)


@dataclass(frozen=True)
class Config:
    store: str  # s3://BUCKET/PREFIX or a directory, as publish's --to
    public_url: str  # the address clients use: the catalogs' box URLs are made from it
    endpoint_url: str | None = None
    presign_seconds: int = 300  # how long a box's redirect to S3 works
    fresh: float = 2.0  # seconds a worker reuses what it read from the store: a new version shows within them
    failures_per_minute: int = 10  # invalid tokens one client may try in a minute, over all workers
    failures_file: str | None = None  # the table the workers count them in (limits.shared_table), and its key
    failures_key: str = ""
    uploads_per_worker: int = 16  # uploads at once; one more is told to come back (503)
    upload_seconds: float = 6 * 3600.0  # an upload's whole body must arrive within this


class Refusal(Exception):
    """The server's answer about who asks (401, 403, 429, 503 with its headers), raised wherever a request is
    handled; the domain's refusals are errors.py's (NotFound, Invalid, Conflict), mapped in app.py."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers or {}


@dataclass(frozen=True)
class ServedCatalog:
    """A catalog as this server hands it out: its hosted boxes' URLs on this server, the rest as given."""

    data: bytes
    etag: str
    doc: Catalog
    hosted: frozenset[str]  # the keys of the boxes it names in the store


class Fresh:
    """What a worker read from the store, reused for at most `seconds`, in at most CACHE_BYTES. Requests that
    miss one key at once wait for one read (30 requests for one 4 MB catalog parse it once)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.entries: dict[Any, tuple[float, int, Any]] = {}  # key -> (when, cost, value), oldest first
        self.cost = 0
        self.loading: dict[Any, asyncio.Future] = {}

    def peek(self, key: Any) -> Any:
        """What is kept for key while it is fresh, else None."""
        hit = self.entries.get(key)
        return hit[2] if hit and asyncio.get_running_loop().time() - hit[0] < self.seconds else None

    async def get(self, key: Any, load: Callable[[], Awaitable[T]], cost: Callable[[T], int] = lambda _: 1024) -> T:
        now = asyncio.get_running_loop().time()
        hit = self.entries.get(key)
        if hit and now - hit[0] < self.seconds:
            return hit[2]
        if key in self.loading:
            return await asyncio.shield(self.loading[key])
        future = self.loading[key] = asyncio.get_running_loop().create_future()
        try:
            value = await load()
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved: no waiter is needed for it not to be reported
            raise
        finally:
            del self.loading[key]
        future.set_result(value)
        self._keep(key, now, cost(value), value)
        return value

    def _keep(self, key: Any, when: float, cost: int, value: Any) -> None:
        old = self.entries.pop(key, None)
        self.cost += cost - (old[1] if old else 0)
        self.entries[key] = (when, cost, value)
        while self.cost > CACHE_BYTES and len(self.entries) > 1:
            first = next(iter(self.entries))
            self.cost -= self.entries.pop(first)[1]


class Server:
    """One worker's view of the store, and its decisions about who asks."""

    def __init__(self, config: Config, store: Store) -> None:
        self.config, self.store = config, store
        self.public_url = config.public_url.rstrip("/")
        self.fresh = Fresh(config.fresh)
        self.failures = Failures(config.failures_per_minute, config.failures_file, bytes.fromhex(config.failures_key))
        self.reads = anyio.CapacityLimiter(READ_THREADS)
        self.uploads = anyio.CapacityLimiter(config.uploads_per_worker)
        self.counter = counts.Counter(store)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) in a thread of the readers' pool: the store's clients block."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.reads)

    # --- what the store says -------------------------------------------------------------------------------

    async def catalog(self, name: str) -> ServedCatalog | None:
        def load() -> ServedCatalog | None:
            key, *_ = layout.catalog_keys(name, self.store.nested)
            got = self.store.get(key, layout.CATALOG_LIMIT)
            return self._served(name, catalog.parse(got[0], f"{self.store.where}/{key}")) if got else None

        return await self.fresh.get(("catalog", name), lambda: self.run(load), lambda c: 3 * len(c.data) if c else 1024)

    def _served(self, name: str, doc: Catalog) -> ServedCatalog:
        hosted = set()
        for v in doc["versions"]:
            for p in v["providers"]:
                key = layout.box_key(name, v["version"], p["name"], p["architecture"])
                if layout.hosted(p["url"], key):
                    p["url"] = layout.url(self.public_url, key)
                    hosted.add(key)
        data = json.dumps(doc, indent=2, ensure_ascii=False).encode() + b"\n"
        return ServedCatalog(data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"', doc, frozenset(hosted))

    async def view(self, name: str) -> BoxView | None:
        """The box as the API shows it (records and catalog read together), as fresh as Config.fresh."""
        box = boxes.Box(self.store, name, self.public_url)
        return await self.fresh.get(("view", name), lambda: self.run(box.view))

    async def downloads(self, name: str) -> dict[counts.Key, int]:
        """A box's downloads by version, provider and architecture, every replica's (as they last wrote them)."""
        return await self.fresh.get(("downloads", name), lambda: self.run(counts.totals, self.store, name))

    async def private(self, name: str) -> bool:
        return await self.fresh.get(("private", name), lambda: self.run(access.is_private, self.store, name))

    async def exists(self, name: str) -> bool:
        """Whether the box has a catalog or a record (the API's, before its first release)."""
        if await self.catalog(name) is not None:
            return True
        return await self.fresh.get(("record", name), lambda: self.run(self._recorded, name))

    def _recorded(self, name: str) -> bool:
        return self.store.stat(layout.record_key(name)) is not None

    async def names(self) -> list[str]:
        """Every ORG/NAME the store holds a catalog or a record of."""
        return await self.fresh.get("names", lambda: self.run(lambda: sorted(boxes.names(self.store))),
                                    lambda names: 100 * len(names))

    # --- who asks ------------------------------------------------------------------------------------------

    async def token(self, request: Request) -> access.Token | None:
        """The valid token the request carries; None when it carries none; Refusal 401 for one that is not
        valid, 429 for a client that tried too many (a valid one still passes: others behind its address)."""
        given = presented(request)
        if given is None:
            return None
        key = ("token", hashlib.sha256(given.encode()).hexdigest())
        record = self.fresh.peek(key)  # a valid token read moments ago: no count to look at
        if record is not None:
            request.state.token = record.id
            return record
        client = request.client.host if request.client else "?"
        limited = self.failures.wait(client)
        if limited and access.token_id(given) not in await self.token_ids():
            raise Refusal(429, "too many invalid tokens; wait", {"Retry-After": str(limited)})
        record = await self.fresh.get(key, lambda: self.run(access.check_token, self.store, given))
        if record is None:
            self.failures.add(client)
            request.state.token = f"invalid:{access.token_id(given) or '?'}"
            if limited:
                raise Refusal(429, "too many invalid tokens; wait", {"Retry-After": str(limited)})
            raise Refusal(401, "the token is not valid (revoked, expired, or mistyped)")
        request.state.token = record.id
        return record

    async def token_ids(self) -> frozenset[str]:
        return await self.fresh.get("token ids", lambda: self.run(lambda: frozenset(access.token_ids(self.store))))

    async def reader(self, request: Request, name: str) -> access.Token | None:
        """The request may read the box ORG/NAME (it is public, or its token may), else NotFound or Refusal 401
        alike for a private box and a missing one."""
        if await self.exists(name) and not await self.private(name):
            return None
        token = await self.token(request)
        if token is None or not token.may(name) or not await self.exists(name):
            raise NotFound("not found")
        return token

    async def writer(self, request: Request, name: str) -> access.Token:
        """The request's token may publish ORG/NAME; else Refusal 401 (no token, or not a valid one), 403 (a
        token that may read it only), or NotFound (one that may not even read it)."""
        token = await self.token(request)
        if token is None:
            raise Refusal(401, "a token is needed (Authorization: Bearer TOKEN)")
        if not token.may(name, write=True):
            if token.may(name):
                raise Refusal(403, f"the token may read {name}, not publish it")
            raise NotFound("not found")
        return token

    async def publisher(self, request: Request, name: str) -> access.Token:
        """The request's token may publish ORG/NAME, else NotFound (Refusal 401 for a token that is not valid), as
        for a box that is not there: what only its publishers may see is missing to everyone else."""
        token = await self.token(request)
        if token is None or not token.may(name, write=True):
            raise NotFound("not found")
        return token

    async def visitor(self, request: Request) -> access.Token | None:
        """The token a listing is shown to: a valid one, else none (an old or wrong token sees what anyone sees)."""
        try:
            return await self.token(request)
        except Refusal:
            return None


def presented(request: Request) -> str | None:
    """The token a request carries: Bearer (Vagrant, curl), X-Atlas-Token or ?access_token= (Vagrant Cloud's older
    ways, v2.mdx), or, to read only, a browser's Basic password."""
    kind, _, value = request.headers.get("authorization", "").partition(" ")
    if kind.lower() == "bearer" and value.strip():
        return value.strip()
    if request.headers.get("x-atlas-token"):
        return request.headers["x-atlas-token"].strip()
    if request.query_params.get("access_token"):
        return request.query_params["access_token"].strip()
    if kind.lower() == "basic" and request.method in ("GET", "HEAD"):
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or user or None
    return None


def wants_html(request: Request) -> bool:
    """A browser's request (Accept naming text/html) gets a page; Vagrant's (application/json) and curl's (*/*) JSON."""
    return "text/html" in request.headers.get("accept", "")


def box_name(org: str, name: str) -> str:
    """ORG/NAME from a path's parts, NotFound when they cannot be a name."""
    if not (layout.NAME_PART.fullmatch(org) and layout.NAME_PART.fullmatch(name)):
        raise NotFound("not found")
    return f"{org}/{name}"
