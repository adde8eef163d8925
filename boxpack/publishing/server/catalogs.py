"""What Vagrant asks `boxpack serve` for: catalogs by name and the boxes they name.

Vagrant asks for a catalog at `<server>/ORG/NAME` (2.3) and `<server>/api/v2/vagrant/ORG/NAME` first (2.4;
lib/vagrant/action/builtin/box_add.rb, BoxAdd#call), with HEAD before GET, and takes it for a catalog only
when it answers Content-Type application/json (BoxAdd#metadata_url?). With a token (VAGRANT_CLOUD_TOKEN, or
`vagrant cloud auth login`) it sends `Authorization: Bearer TOKEN` on every request to the host of
VAGRANT_SERVER_URL, and only there (plugins/commands/cloud/auth/middleware/add_downloader_authentication.rb,
AddDownloaderAuthentication#call). So the catalog it gets names boxes on this server (a box given at a URL
elsewhere, HCP's hosted: false, keeps that URL); how a box's bytes go is the store's word (Store.deliver): a
redirect presigned for minutes, which curl follows without the token (it sends Authorization to the host it
was given only), so the bytes never pass through here; or a file of this machine, sent with HEAD, Range and
ETag.

A box the catalog names is read as the catalog is (context.Server.reader). One it does not name (not
released yet, or revoked) goes only to a token that may publish the box; to anyone else it is not there.
"""

from __future__ import annotations

import hashlib
import re

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.types import Scope, Send

from ...catalog import UNKNOWN_ARCH
from ...errors import BadInput, NotFound
from .. import layout
from ..stores.base import Delivery, Redirect
from .context import Server, box_name, wants_html

FILE_CHUNK = 1024 * 1024  # a box file is sent in reads this large: 64 KiB (Starlette's) gave a fifth of nginx's rate


async def catalog(request: Request) -> Response:
    server: Server = request.app.state.server
    name = box_name(request.path_params["org"], request.path_params["name"])
    await server.reader(request, name)
    if wants_html(request):
        from . import pages  # only a browser's request needs the pages

        return await pages.box_page(request, name)
    found = await server.catalog(name)
    if found is None:
        raise NotFound("not found")  # a box the API made, not released yet
    private = await server.private(name)
    headers = {"ETag": found.etag, "Cache-Control": "private, no-cache" if private else "public, max-age=60"}
    if found.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(found.data, 200, headers, media_type="application/json")


CATALOG_PATH = re.compile(r"/(?:api/v2/vagrant/)?([^/]+)/([^/]+)")


async def answered(server: Server, scope: Scope, send: Send) -> bool:
    """What Vagrant asks most, a catalog, answered from what this worker read moments ago (the box's catalog and
    visibility, the token), before any routing: whether it was. Anything else, or anything not at hand (a miss, a
    token not seen yet, a browser, a Basic password), goes on to the routes, which decide the same way from the
    store. Half the catalogs a second a worker answers came from the routing and request objects this skips."""
    if scope["method"] not in ("GET", "HEAD") or not (m := CATALOG_PATH.fullmatch(scope["path"])):
        return False
    name = f"{m[1]}/{m[2]}"
    found, private = server.fresh.peek(("catalog", name)), server.fresh.peek(("private", name))
    if found is None or private is None:
        return False
    headers = dict(scope["headers"])
    if b"text/html" in headers.get(b"accept", b""):
        return False
    if private:
        kind, _, given = headers.get(b"authorization", b"").decode(errors="replace").partition(" ")
        token = server.fresh.peek(("token", hashlib.sha256(given.strip().encode()).hexdigest())) if kind.lower() == "bearer" else None
        if token is None or not token.may(name):
            return False
        scope["state"]["token"] = token.id
    cache = b"private, no-cache" if private else b"public, max-age=60"
    etag = found.etag.encode()
    fresh = etag in headers.get(b"if-none-match", b"")
    answer = [(b"etag", etag), (b"cache-control", cache)]
    if not fresh:
        answer += [(b"content-type", b"application/json"), (b"content-length", str(len(found.data)).encode())]
    await send({"type": "http.response.start", "status": 304 if fresh else 200, "headers": answer})
    await send({"type": "http.response.body", "body": b"" if fresh else found.data})
    return True


async def box(request: Request) -> Response:
    p = request.path_params
    return await _box(request, box_name(p["org"], p["name"]), p["version"], p["provider"], p["arch"])


async def signature(request: Request) -> Response:
    """A box's signature (signatures.py), at its URL + .sig: to whoever may have the box, as the box is."""
    p = request.path_params
    return await _box(request, box_name(p["org"], p["name"]), p["version"], p["provider"], p["arch"], signed=True)


async def hcp_box(request: Request) -> Response:
    """HCP's download paths, which Vagrantfiles and scripts name (`<host>/ORG/boxes/NAME/versions/V/providers/P/ARCH/
    vagrant.box`, and the older `.../providers/P.box`: the default architecture's): the same box, by the same rules,
    once the host name points here."""
    p = request.path_params
    name = box_name(p["org"], p["name"])
    arch = p.get("arch")
    if arch is None:  # the provider's default architecture, as the catalog says
        server: Server = request.app.state.server
        served = await server.catalog(name)
        entries = [e for v in (served.doc["versions"] if served else []) if v["version"] == p["version"]
                   for e in v["providers"] if e["name"] == p["provider"] and e["default_architecture"]]
        arch = entries[0]["architecture"] if entries else UNKNOWN_ARCH
    return await _box(request, name, p["version"], p["provider"], arch)


async def _box(request: Request, name: str, version: str, provider: str, arch: str, signed: bool = False) -> Response:
    server: Server = request.app.state.server
    try:
        key = layout.box_key(name, version, provider, arch)
    except BadInput:
        raise NotFound("not found") from None
    served = await server.catalog(name)
    if served is not None and key in served.hosted:
        await server.reader(request, name)
    else:
        await server.publisher(request, name)  # an unreleased or revoked box: its publisher's
    delivery = await server.run(server.store.deliver, layout.signature_key(key) if signed else key, server.config.presign_seconds)
    if delivery is None:
        raise NotFound("not found")
    if not signed and request.method == "GET" and _from_the_start(request.headers.get("range")):
        server.counter.add(name, (version, provider, arch))  # a download: not a HEAD, nor curl resuming one
    cache = "private, no-store" if await server.private(name) else "public, no-cache"  # revalidated: it may turn private
    return deliver(request, delivery, cache)


def _from_the_start(span: str | None) -> bool:
    """Whether a request asks for a box from its first byte: no Range, or one from 0 (a resumed download does not
    count again)."""
    return span is None or span.replace(" ", "").startswith("bytes=0-")


def deliver(request: Request, delivery: Delivery, cache: str) -> Response:
    """The one way a box's bytes are answered: a redirect to them, or the file."""
    if isinstance(delivery, Redirect):
        return RedirectResponse(delivery.url, 302, {"Cache-Control": "private, no-store"})
    st = delivery.stat
    etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
    headers = {"ETag": etag, "Cache-Control": cache}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    response = FileResponse(delivery.path, media_type="application/octet-stream", headers=headers, stat_result=st)
    response.chunk_size = FILE_CHUNK
    return response
