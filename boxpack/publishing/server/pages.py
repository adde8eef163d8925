"""The pages people read: the organisations, an organisation's boxes, a box's versions and how to use it.

Rendered on the server with Jinja2 (templates/, autoescaped), with no script and nothing fetched from the
network, and readable on a phone. A browser's request (Accept naming text/html) gets a page; Vagrant's
(application/json, or curl's */*) always gets JSON. A private box shows only to a token that may read it,
which a browser gives as the password it is asked for at /.login (HTTP Basic); pages only read.
"""

from __future__ import annotations

import datetime
import functools
from typing import Any

import jinja2
from markdown_it import MarkdownIt
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ... import signatures
from ...errors import NotFound
from ...progress import human_size
from .. import layout
from . import api
from .context import Refusal, Server, wants_html

ENV = jinja2.Environment(loader=jinja2.PackageLoader("boxpack.publishing.server", "templates"),
                         autoescape=jinja2.select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True)
MARKDOWN_LIMIT = 64 * 1024  # characters of a description rendered: a longer one is cut there


class _Markdown(MarkdownIt):
    def validateLink(self, url: str) -> bool:  # noqa: N802 (markdown-it's name)
        """Links and images to http(s) only: no javascript:, data: or relative ones."""
        return url.strip().lower().startswith(("http://", "https://"))


_markdown = _Markdown("commonmark", {"html": False})  # raw HTML in a description is shown as text, never as markup


@functools.lru_cache(maxsize=512)
def rendered(text: str | None) -> Markup:
    """A description's Markdown as HTML: CommonMark without raw HTML, links and images to http(s) only."""
    return Markup(_markdown.render(text[:MARKDOWN_LIMIT])) if text else Markup("")


ENV.filters["markdown"] = rendered


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
    """The organisations; with ?q=, the boxes search finds (api.matching, what `vagrant cloud search` gets)."""
    server: Server = request.app.state.server
    orgs: dict[str, int] = {}
    for name, _ in await _visible(server, request, await server.names()):
        orgs[name.split("/")[0]] = orgs.get(name.split("/")[0], 0) + 1
    if not wants_html(request):
        return JSONResponse({"organisations": sorted(orgs)})
    q = request.query_params.get("q")
    found = await api.matching(request, q[:200], None, None) if q is not None else None
    if found is not None:
        found.sort(key=lambda b: (-b["downloads"], b["tag"]))
    return page(request, "index.html", title="Boxes", orgs=sorted(orgs.items()), q=q, found=found)


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
    boxes = [await _listed(server, name, private) for name, private in shown]
    return page(request, "org.html", title=org, org=org, boxes=boxes)


async def _listed(server: Server, name: str, private: bool) -> dict[str, Any]:
    """A box as its organisation's page lists it: its latest version, when, its providers, its downloads."""
    view = await server.view(name)
    latest = next((v for v in (view.versions if view else []) if v.status == "active"), None)
    downloads = await server.downloads(name)
    return {"name": name, "private": private, "short": view.short_description if view else None,
            "latest": latest.version if latest else None,
            "date": (await _version(server, name, latest, downloads))["date"] if latest else "",
            "providers": sorted({f"{p.name} {p.architecture}" for p in latest.providers}) if latest else [],
            "downloads": sum(downloads.values())}


async def box_page(request: Request, name: str) -> Response:
    """A box's page; the request may read it (catalogs.catalog asked). Versions not released, or revoked, show to
    those who may publish the box, marked."""
    server: Server = request.app.state.server
    view = await server.view(name)
    if view is None:
        raise NotFound("not found")
    token = await server.visitor(request)
    publisher = token is not None and token.may(name, write=True)
    downloads = await server.downloads(name)
    versions = [await _version(server, name, v, downloads) for v in view.versions if publisher or v.status == "active"]
    if not versions:
        raise NotFound("not found")
    return page(request, "box.html", title=name, org=name.split("/")[0], name=name, short=view.short_description,
                description=view.description, private=view.private, versions=versions, downloads=sum(downloads.values()))


async def _version(server: Server, name: str, v: Any, downloads: dict[tuple[str, str, str], int]) -> dict[str, Any]:
    providers, dates = [], []
    for p in v.providers:
        key = layout.box_key(name, v.version, p.name, p.architecture)
        there = await server.run(server.store.stat, key) if p.hosted else None
        signed = await server.run(server.store.get, layout.signature_key(key), signatures.LIMIT) if there else None
        if there is not None:
            dates.append(there.modified)
        providers.append({"name": p.name, "architecture": p.architecture, "default": p.default_architecture,
                          "size": human_size(there.size) if there else ("elsewhere" if not p.hosted else "not uploaded"),
                          "checksum_type": p.checksum_type, "checksum": p.checksum, "url": p.url,
                          "signed": signatures.fingerprint(signed[0]) if signed else None,
                          "downloads": downloads.get((v.version, p.name, p.architecture), 0)})
    date = datetime.datetime.fromtimestamp(min(dates), datetime.UTC).strftime("%Y-%m-%d") if dates else v.updated_at[:10]
    return {"version": v.version, "status": v.status, "description": v.description, "date": date, "providers": providers,
            "downloads": sum(n for (version, _, _), n in downloads.items() if version == v.version)}


def missing(request: Request) -> HTMLResponse:
    """A page for what is not there, or not there for this browser: the same for both."""
    return page(request, "missing.html", 404, title="Not found")
