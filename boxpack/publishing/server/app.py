"""The ASGI application of `boxpack serve`: Vagrant's paths (catalogs.py), the publish API (api.py) and pages for
people (pages.py), over a store, and the one place where every refusal becomes a status and a body.

Routes are plain Starlette: the API's list mounted at /api/v1 and /api/v2, one handler per method. Refusals
are exceptions, mapped here (exception_handlers): NotFound 404, Invalid 422, Conflict 409, the server's own
Refusal its status, a store that fails 503; the API answers them as `{"errors": [...], "success": false}`
(what the vagrant_cloud gem and Packer print), Vagrant's paths and the pages in one line (a page to a
browser). Before any route, Checked refuses what no route takes (oversized URLs, encoded slashes or NUL, dot
segments) and any request that would change state from another site (a browser's form, whatever it carries),
and writes one log line per request, even one that failed, that names a token by its id only and no secret
at all (an upload's path is logged without it, a query string not at all).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from urllib.parse import quote, urlsplit

import anyio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...errors import BoxpackError, Conflict, Invalid, NotFound
from .. import counts
from ..stores import open_target
from ..stores.base import Store
from . import api, catalogs, pages
from .context import Config, Refusal, Server, wants_html

log = logging.getLogger("boxpack.serve")
MAX_URL = 4096  # bytes of a request's path and query
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
STATUSES: tuple[tuple[type[Exception], int], ...] = ((NotFound, 404), (Invalid, 422), (Conflict, 409))


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(("/api/v1/", "/api/v2/", "/.upload/")) and not request.url.path.startswith("/api/v2/vagrant/")


def refused(request: Request, error: Exception) -> Response:
    """Every refusal's answer: its status, in the shape the asker reads."""
    status = error.status if isinstance(error, Refusal) else next((s for kind, s in STATUSES if isinstance(error, kind)), 503)
    headers = dict(error.headers) if isinstance(error, Refusal) else {}
    message = str(error)
    if status == 503 and not isinstance(error, Refusal):
        log.error("the store failed: %s", message)
        message, headers = f"the store cannot be read: {message}", {"Retry-After": "5"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="boxpack"'
    if request.method not in SAFE_METHODS:
        headers["Connection"] = "close"  # a body left unread is not read on: the connection goes
    request.state.why = " ".join(message.replace('"', "'").split())  # one log line, whatever it quotes
    if _is_api(request):
        return JSONResponse({"errors": [message], "success": False}, status, headers)
    if status == 404 and wants_html(request):
        return pages.missing(request)
    response = PlainTextResponse(message + "\n", status, headers)
    if status == 401 and wants_html(request):  # a browser is also offered Basic, and asks for the token
        response.raw_headers.append((b"www-authenticate", b'Basic realm="boxpack: your token as the password", charset="UTF-8"'))
    return response


def crashed(request: Request, error: Exception) -> Response:
    """A bug: one line to the client, the traceback to the server's log."""
    log.error("internal error in %s %s", request.method, _logged_path(request.url.path), exc_info=error)
    request.state.why = f"internal error: {type(error).__name__}"
    body = {"errors": ["internal error"], "success": False}
    return JSONResponse(body, 500) if _is_api(request) else PlainTextResponse("internal error\n", 500)


class Checked:
    """Refuse what no route takes, before any route sees it; and one log line per request."""

    def __init__(self, app: ASGIApp, server: Server) -> None:
        self.app, self.server = app, server
        self.origin = "{0.scheme}://{0.netloc}".format(urlsplit(server.public_url))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 0}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        problem = _path_problem(scope) or self._cross_site(scope)
        scope.setdefault("state", {})
        try:
            if problem:
                await PlainTextResponse(problem[1] + "\n", problem[0], {"Connection": "close"})(scope, receive, sending)
            elif not await catalogs.answered(self.server, scope, sending):
                await self.app(scope, receive, sending)
        except Exception:  # a bug, answered and logged by crashed(); Starlette raises it again for the server
            if not status["code"]:
                raise
        finally:
            client = scope.get("client") or ("?", 0)
            state = scope.get("state", {})
            why = f' why="{state["why"]}"' if "why" in state else ""  # an API refusal: curl --fail shows the status only
            access_log(f'{client[0]} "{scope["method"]} {_logged_path(scope["path"])}" {status["code"] or 500} '
                       f'token={state.get("token", "-")}{why}')

    def _cross_site(self, scope: Scope) -> tuple[int, str] | None:
        """A request that would change state, sent by a browser from another site (a form on any page can POST
        with the token the browser keeps for this one): refused whatever it carries."""
        if scope["method"] in SAFE_METHODS:
            return None
        headers = {k: v for k, v in scope["headers"] if k in (b"origin", b"sec-fetch-site")}
        site, origin = headers.get(b"sec-fetch-site", b"").decode(errors="replace"), headers.get(b"origin")
        if site in ("cross-site", "same-site") or (origin is not None and origin.decode(errors="replace") != self.origin):
            return 403, "a request from another site's page cannot change anything here"
        return None


@functools.lru_cache(maxsize=4096)  # the same few paths, again and again
def _logged_path(path: str) -> str:
    """The path as logged, percent-encoded: an upload's secret left out."""
    return "/.upload/..." if path.startswith("/.upload/") else quote(path)


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


def _path_problem(scope: Scope) -> tuple[int, str] | None:
    raw, path = scope.get("raw_path") or scope["path"].encode(), scope["path"]
    if len(raw) + len(scope.get("query_string", b"")) > MAX_URL:
        return 414, "the URL is too long"
    lowered = raw.lower()
    if b"%2f" in lowered or b"%5c" in lowered or b"%00" in lowered or "\0" in path or "\\" in path:
        return 400, "encoded slashes, backslashes and NUL are not part of any name here"
    if any(segment in (".", "..") for segment in path.split("/")):
        return 400, "dot segments are not part of any name here"
    return None


def _counting(server: Server) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """The worker's life: its download counts written every FLUSH_SECONDS, and once more when it stops (SIGTERM)."""
    @asynccontextmanager
    async def life(app: Starlette) -> AsyncIterator[None]:
        async def flushing() -> None:
            while True:
                await anyio.sleep(counts.FLUSH_SECONDS)
                await server.run(server.counter.flush)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(flushing)
            try:
                yield
            finally:
                tasks.cancel_scope.cancel()
        with anyio.CancelScope(shield=True):
            await server.run(server.counter.flush)

    return life


def create_app(config: Config, store: Store | None = None) -> ASGIApp:
    get = ["GET", "HEAD"]
    routes = [
        Mount("/api/v1", routes=api.ROUTES),
        Mount("/api/v2/vagrant", routes=[Route("/{org}/{name}", catalogs.catalog, methods=get)]),
        Mount("/api/v2", routes=api.ROUTES),
        api.UPLOAD,
        api.TOKEN,
        Route("/", pages.index, methods=get),
        Route("/.login", pages.login, methods=get),  # no organisation starts with a dot
        Route("/{org}", pages.organisation, methods=get),
        Route("/{org}/{name}", catalogs.catalog, methods=get),
        Route("/{org}/{name}/{version}/{provider}/{arch}/vagrant.box", catalogs.box, methods=get),
        Route("/{org}/{name}/{version}/{provider}/{arch}/vagrant.box.sig", catalogs.signature, methods=get),
        Route("/{org}/boxes/{name}/versions/{version}/providers/{provider}/{arch}/vagrant.box", catalogs.hcp_box, methods=get),
        Route("/{org}/boxes/{name}/versions/{version}/providers/{provider}.box", catalogs.hcp_box, methods=get),
    ]
    handlers = {kind: refused for kind in (BoxpackError, Refusal)}
    server = Server(config, store or open_target(config.store, config.endpoint_url))
    app = Starlette(routes=routes, exception_handlers={**handlers, Exception: crashed}, lifespan=_counting(server))
    app.router.redirect_slashes = False  # Starlette's redirect builds its Location from the Host header
    app.state.server = server
    app.state.uploading = set()  # the upload URLs in use in this worker: one upload each at a time
    return Checked(app, server)
