"""The pages people read: the organisations, an organisation's boxes, a box's versions and how to use it.

Rendered on the server with Jinja2 (templates/, autoescaped), with no script and nothing fetched from the
network, and readable on a phone. A browser's request (Accept naming text/html) gets a page; Vagrant's
(application/json, or curl's */*) always gets JSON. A private box shows only to a token that may read it,
which a browser gives as the password it is asked for (HTTP Basic).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from typing import Any, Protocol

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response

from ...progress import human_size
from .. import access, layout
from ..stores.base import Stat, Store


class Denied(Exception):
    """A refusal whose answer is ready: a page, a status in one line."""

    def __init__(self, response: Response) -> None:
        self.response = response


class Server(Protocol):
    """What the pages ask of the server (app.py): what the store says, as fresh as it keeps it, and who asks."""

    public_url: str

    async def names(self) -> list[str]: ...

    async def private(self, name: str) -> bool: ...

    async def catalog(self, name: str) -> tuple[bytes, str] | None: ...

    async def stat(self, key: str) -> Stat | None: ...

    async def token(self, request: Request) -> access.Token | None: ...

ENV = jinja2.Environment(loader=jinja2.PackageLoader("boxpack.publishing.server", "templates"),
                         autoescape=jinja2.select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True)


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def catalog_names(store: Store) -> Iterator[str]:
    """Every ORG/NAME the store holds a catalog of: the api/v2 copies where keys nest, else the catalog files."""
    if store.nested:
        prefix = layout.API_PREFIX + "/"
        yield from (key.removeprefix(prefix) for key in store.list(prefix) if key.count("/") == 4)
        return
    for key in store.list(""):
        parts = key.split("/")
        if len(parts) == 3 and parts[2] == layout.CATALOG_FILE and not key.startswith(layout.PRIVATE_PREFIX):
            yield "/".join(parts[:2])


async def _visible(server: Server, request: Request, names: list[str]) -> tuple[list[tuple[str, bool]], bool]:
    """(name, private) of the boxes the request may see, and whether some are hidden from it."""
    token = await server.token(request)
    shown, hidden = [], False
    for name in names:
        private = await server.private(name)
        if not private or (token and token.may(name)):
            shown.append((name, private))
        else:
            hidden = True
    return shown, hidden


def _page(request: Request, template: str, **values: Any) -> HTMLResponse:
    server = request.app.state.server
    html = ENV.get_template(template).render(root=server.public_url, token=getattr(request.state, "token", None), **values)
    return HTMLResponse(html, headers={"Cache-Control": "private, no-cache", "Vary": "Accept, Authorization"})


async def login_page(server: Server, request: Request) -> Response:
    """Where a browser is asked for a token (as a password); with a valid one, back to the organisations."""
    if await server.token(request) is None:
        return unauthorized(request, "give a token as the password")
    return RedirectResponse(f"{server.public_url}/", 303)


def unauthorized(request: Request, why: str) -> Response:
    """401: a token is needed (Bearer for Vagrant and curl; a browser also gets Basic, and asks for it)."""
    response = PlainTextResponse(why + "\n", 401)
    response.raw_headers.append((b"www-authenticate", b'Bearer realm="boxpack"'))
    if wants_html(request):
        response.raw_headers.append((b"www-authenticate", b'Basic realm="boxpack: your token as the password", charset="UTF-8"'))
    return response


async def index_page(server: Server, request: Request) -> Response:
    shown, _ = await _visible(server, request, await server.names())
    orgs: dict[str, int] = {}
    for name, _ in shown:
        orgs[name.split("/")[0]] = orgs.get(name.split("/")[0], 0) + 1
    if not wants_html(request):
        return JSONResponse({"organisations": sorted(orgs)})
    return _page(request, "index.html", title="Boxes", orgs=sorted(orgs.items()))


async def org_page(server: Server, request: Request, org: str) -> Response:
    names = [n for n in await server.names() if n.split("/")[0] == org]
    shown, hidden = await _visible(server, request, names)
    if not shown and hidden and getattr(request.state, "token", None) is None:
        return unauthorized(request, "these boxes need a token")
    if not shown:
        return PlainTextResponse("not found\n", 404)
    if not wants_html(request):
        return JSONResponse({"organisation": org, "boxes": [name for name, _ in shown]})
    boxes = []
    for name, private in shown:
        found = await server.catalog(name)
        doc = json.loads(found[0]) if found else {"versions": []}
        latest = doc["versions"][-1]["version"] if doc["versions"] else None
        boxes.append({"name": name, "private": private, "description": doc.get("description"), "latest": latest})
    return _page(request, "org.html", title=org, org=org, boxes=boxes)


async def box_page(server: Server, request: Request, name: str) -> Response:
    found = await server.catalog(name)
    if found is None:
        return PlainTextResponse("not found\n", 404)
    doc = json.loads(found[0])
    versions = []
    for v in reversed(doc["versions"]):  # the newest first
        providers, dates = [], []
        for p in v["providers"]:
            key = layout.box_key(name, v["version"], p["name"], p["architecture"])
            there = await server.stat(key)
            if there is not None:
                dates.append(there.modified)
            providers.append({"name": p["name"], "architecture": p["architecture"], "default": p["default_architecture"],
                              "size": human_size(there.size) if there else "missing", "checksum_type": p["checksum_type"],
                              "checksum": p["checksum"]})
        date = datetime.datetime.fromtimestamp(min(dates), datetime.UTC).strftime("%Y-%m-%d") if dates else ""
        versions.append({"version": v["version"], "description": v.get("description"), "date": date,
                         "providers": providers})
    return _page(request, "box.html", title=name, org=name.split("/")[0], name=name, description=doc.get("description"),
                 private=await server.private(name), versions=versions)
