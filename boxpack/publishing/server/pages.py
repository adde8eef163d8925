"""The pages people read: the organisations, an organisation's boxes, a box's versions and how to use it.

Rendered on the server with Jinja2 (templates/, autoescaped), with no script and nothing fetched from the
network, and readable on a phone. A browser's request (Accept naming text/html) gets a page; Vagrant's
(application/json, or curl's */*) always gets JSON. A private box shows only to a token that may read it,
which a browser gives as the password it is asked for at /.login (HTTP Basic); pages only read.
"""

from __future__ import annotations

import datetime
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ...errors import NotFound
from ...progress import human_size
from .. import layout
from .context import Refusal, Server, wants_html

ENV = jinja2.Environment(loader=jinja2.PackageLoader("boxpack.publishing.server", "templates"),
                         autoescape=jinja2.select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True)


def page(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    server: Server = request.app.state.server
    html = ENV.get_template(template).render(root=server.public_url, token=getattr(request.state, "token", None), **values)
    return HTMLResponse(html, status, headers={"Cache-Control": "private, no-cache", "Vary": "Accept, Authorization"})


async def _visible(server: Server, request: Request, names: list[str]) -> list[tuple[str, bool]]:
    """(name, private) of the boxes the request may see."""
    token = await server.visitor(request)
    shown = []
    for name in names:
        private = await server.private(name)
        if not private or (token and token.may(name)):
            shown.append((name, private))
    return shown


async def login(request: Request) -> Response:
    """Where a browser is asked for a token (as a password); with a valid one, on to ?next= (a path on this server),
    else to the organisations. A browser sends the token by itself from then on, to read only."""
    server: Server = request.app.state.server
    if await server.token(request) is None:
        raise Refusal(401, "give a token as the password")
    then = request.query_params.get("next", "/")
    if not then.startswith("/") or then.startswith("//") or "\\" in then:
        then = "/"
    return RedirectResponse(server.public_url + then, 303)


async def index(request: Request) -> Response:
    server: Server = request.app.state.server
    orgs: dict[str, int] = {}
    for name, _ in await _visible(server, request, await server.names()):
        orgs[name.split("/")[0]] = orgs.get(name.split("/")[0], 0) + 1
    if not wants_html(request):
        return JSONResponse({"organisations": sorted(orgs)})
    return page(request, "index.html", title="Boxes", orgs=sorted(orgs.items()))


async def organisation(request: Request) -> Response:
    server: Server = request.app.state.server
    org = request.path_params["org"]
    if not layout.NAME_PART.fullmatch(org):
        raise NotFound("not found")
    shown = await _visible(server, request, [n for n in await server.names() if n.split("/")[0] == org])
    if not shown:
        raise NotFound("not found")  # none, or none this request may see: alike
    if not wants_html(request):
        return JSONResponse({"organisation": org, "boxes": [name for name, _ in shown]})
    boxes = []
    for name, private in shown:
        found = await server.catalog(name)
        versions = found.doc["versions"] if found else []
        boxes.append({"name": name, "private": private, "description": found.doc.get("description") if found else None,
                      "latest": versions[-1]["version"] if versions else None})
    return page(request, "org.html", title=org, org=org, boxes=boxes)


async def box_page(request: Request, name: str) -> Response:
    """A box's page; the request may read it (catalogs.catalog asked)."""
    server: Server = request.app.state.server
    found = await server.catalog(name)
    if found is None:
        raise NotFound("not found")
    versions = []
    for v in reversed(found.doc["versions"]):  # the newest first
        providers, dates = [], []
        for p in v["providers"]:
            there = await server.run(server.store.stat, layout.box_key(name, v["version"], p["name"], p["architecture"]))
            if there is not None:
                dates.append(there.modified)
            providers.append({"name": p["name"], "architecture": p["architecture"], "default": p["default_architecture"],
                              "size": human_size(there.size) if there else "elsewhere",
                              "checksum_type": p.get("checksum_type"), "checksum": p.get("checksum")})
        date = datetime.datetime.fromtimestamp(min(dates), datetime.UTC).strftime("%Y-%m-%d") if dates else ""
        versions.append({"version": v["version"], "description": v.get("description"), "date": date, "providers": providers})
    return page(request, "box.html", title=name, org=name.split("/")[0], name=name, description=found.doc.get("description"),
                private=await server.private(name), versions=versions)


def missing(request: Request) -> HTMLResponse:
    """A page for what is not there, or not there for this browser: the same for both."""
    return page(request, "missing.html", 404, title="Not found")
