"""The part of the Vagrant Cloud API that `vagrant cloud publish` (Vagrant 2.3.4 with the vagrant_cloud gem 3.0.5,
2.4.9 with 3.1.3) and Packer 1.6.6's vagrant-cloud post-processor call, over boxes.py: so a pipeline moves off
HCP by pointing VAGRANT_SERVER_URL (or Packer's vagrant_cloud_url, `<server>/api/v1`) at boxpack serve.

Every route answers under /api/v1 and /api/v2 (app.py mounts ROUTES twice): gem 3.0.5 asks /api/v1
(plugins/commands/cloud/util.rb, api_server_url); gem 3.1.3 asks /api/v2 for all but token creation
(lib/vagrant_cloud/client.rb, request's api_version), and a provider's architecture is the path segment after
its name (box_version_provider_*). Bodies and answers are JSON; errors are `{"errors": [...], "success":
false}` (website v2.mdx, made in app.py), which the gem prints after "Vagrant Cloud request failed - "
(lib/vagrant_cloud/error.rb, RequestError) and Packer after its step's words (post-processor/vagrant-cloud/
client.go, VagrantCloudErrors.FormatErrors). Packer takes only 200 as success (step_create_version.go,
step_create_provider.go), so every success is 200.

Routes, each with where its client calls it:
- GET authenticate: the token's validity, {"user": {"username"}} (client.rb authentication_token_validate;
  Account#setup!; Packer client.go ValidateAuthentication)
- GET user/ORG: the organisation and the boxes the request may see, with their versions (organization_get;
  Account#organization, which `vagrant cloud publish` loads the box from: publish.rb load_box)
- POST boxes: create a box; 3.0.5 sends its fields bare, 3.1.3 under "box" (box_create); creating one that is
  there updates it, since several runs may publish one box at once
- GET, PUT, DELETE box/ORG/NAME (box_get, box_update, box_delete; Packer step_verify_box.go reads "tag")
- POST box/ORG/NAME/versions {"version": {"version", "description"}} (box_version_create; Packer
  step_create_version.go); GET, PUT, DELETE box/ORG/NAME/version/V
- PUT .../version/V/release, .../revoke (box_version_release, box_version_revoke; Packer
  step_release_version.go, which takes "already been released" as done; here a second release is done too)
- POST .../version/V/providers {"provider": {"name", "url", "checksum", "checksum_type", "architecture",
  "default_architecture"}} (box_version_provider_create; Packer step_create_provider.go sends name and url)
- GET, PUT, DELETE .../provider/P and .../provider/P/ARCH (box_version_provider_get, _update, _delete)
- GET .../provider/P[/ARCH]/upload and .../upload/direct: {"upload_path", "callback"} (Provider#upload;
  Packer step_prepare_upload.go). The upload path is this server's, with a secret that lets its holder PUT
  that one box (Vagrant's uploader and Packer's direct upload send no token to it) while the token that asked
  for it is valid; the callback is PUT with the token (Provider#upload's callback proc; Packer
  step_confirm_upload.go). A "direct" upload goes through this server too: every byte is checked on its way
  to the store before the box can be released.

What a client sends is bounded before it is read: the token is checked first, a JSON body must say so
(Content-Type, which a cross-site form cannot send without the browser asking first) and arrive within
BODY_SECONDS, in at most BODY_LIMIT bytes; an upload takes one of the worker's upload slots (none free: 503),
its own thread pool apart from the catalogs', and Config.upload_seconds in all.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import anyio.from_thread
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...errors import Conflict, Invalid, NotFound
from .. import access, boxes
from ..boxes import Box
from ..records import BoxView, ProviderView, VersionView
from .context import Refusal, Server

BODY_LIMIT = 1024 * 1024  # a JSON request body
BODY_SECONDS = 30.0  # to send it
FORM_LIMIT = 16 * 1024  # the token endpoint's form
BATCH = 1024 * 1024  # bytes of an upload handed to the store's thread at once
CHUNK_SECONDS = 60.0  # an upload that sends nothing for this long is given up


def _server(request: Request) -> Server:
    return request.app.state.server


def _box(request: Request) -> Box:
    p = request.path_params
    return Box(_server(request).store, f"{p['org']}/{p['name']}", _server(request).public_url)


# --- the JSON the clients read ----------------------------------------------------------------------------------

Downloads = dict[tuple[str, str, str], int]  # (version, provider, architecture) -> downloads (counts.totals)


def provider_json(p: ProviderView, version: str = "", downloads: Downloads | None = None) -> dict[str, Any]:
    return {"name": p.name, "architecture": p.architecture, "default_architecture": p.default_architecture,
            "downloads": (downloads or {}).get((version, p.name, p.architecture), 0),
            "hosted": p.hosted, "checksum": p.checksum, "checksum_type": p.checksum_type, "url": p.url,
            "original_url": None if p.hosted else p.url, "download_url": p.url, "hosted_token": None,
            "created_at": p.created_at, "updated_at": p.updated_at}


def version_json(request: Request, name: str, v: VersionView, downloads: Downloads | None = None) -> dict[str, Any]:
    base = f"{_server(request).public_url}/api/v1/box/{name}/version/{v.version}"
    return {"version": v.version, "number": v.version, "status": v.status, "description": v.description,
            "description_markdown": v.description, "description_html": None, "created_at": v.created_at,
            "updated_at": v.updated_at, "release_url": f"{base}/release", "revoke_url": f"{base}/revoke",
            "downloads": sum(n for (version, _, _), n in (downloads or {}).items() if version == v.version),
            "providers": [provider_json(p, v.version, downloads) for p in v.providers]}


def box_json(request: Request, view: BoxView, versions: bool = True, downloads: Downloads | None = None) -> dict[str, Any]:
    """A box as the API shows it; in an organisation's list (versions False) with its current version only, as HCP
    listed them: the gems load a box's versions from GET box and add them to what the list gave (vagrant_cloud
    box.rb, versions_on_demand), so versions there were shown twice by `vagrant cloud box show`."""
    org, name = view.name.split("/")
    current = next((version_json(request, view.name, v, downloads) for v in view.versions if v.status == "active"), None)
    shown = {"tag": view.name, "username": org, "name": name, "private": view.private,
             "short_description": view.short_description, "description": view.description,
             "description_markdown": view.description, "description_html": None, "created_at": view.created_at,
             "updated_at": view.updated_at, "downloads": sum((downloads or {}).values()), "current_version": current}
    return {**shown, "versions": [version_json(request, view.name, v, downloads) for v in view.versions]} if versions else shown


# --- tokens and organisations -------------------------------------------------------------------------------------

async def authenticate(request: Request) -> Response:
    token = await _server(request).token(request)
    if token is None:
        raise Refusal(401, "a token is needed (Authorization: Bearer TOKEN)")
    return JSONResponse({"user": {"username": token.scope.split("/")[0]}, "token": {"id": token.id}})


NO_ACCOUNTS = ("boxpack serve has no user accounts, passwords or two-factor codes: make a token with `boxpack serve "
               "token create ORG --write` and log in with `vagrant cloud auth login --token TOKEN`")


async def password_login(request: Request) -> Response:
    """`vagrant cloud auth login` with a username and password (POST authenticate, two-factor/request-code): answered
    in the one line both gems print (Vagrant 2.3.4 prints it above its own backtrace)."""
    raise Refusal(401, NO_ACCOUNTS)


async def log_out(request: Request) -> Response:
    """DELETE authenticate (`vagrant cloud auth logout`): the token presented is revoked, on every replica within
    Config.fresh seconds."""
    server = _server(request)
    token = await server.token(request)
    if token is None:
        raise Refusal(401, "a token is needed (Authorization: Bearer TOKEN)")
    if token.client:
        raise Invalid(f"a service principal's token ends by itself within the hour; `boxpack serve token revoke {token.id}` "
                      "revokes the client and every token it was given")
    await server.run(access.revoke_token, server.store, token.id)
    return JSONResponse({})


async def oauth_token(request: Request) -> Response:
    """OAuth2's client credentials grant (RFC 6749, 4.4), where vagrant_cloud >= 3.1.2 (Vagrant 2.4) asks HCP for a
    token when HCP_CLIENT_ID and HCP_CLIENT_SECRET are set (lib/vagrant_cloud/auth.rb, refresh_token!: ruby-oauth2
    posts client_id, client_secret and grant_type as a form to HCP_AUTH_URL + HCP_TOKEN_PATH). The client and its
    secret come from `boxpack serve token create ... --client`; errors are RFC 6749's (5.2)."""
    form = await _form(request)
    kind, _, value = request.headers.get("authorization", "").partition(" ")
    if kind.lower() == "basic":  # client_secret_basic
        try:
            client_id, _, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            client_id = secret = ""
    else:
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    if form.get("grant_type") != "client_credentials":
        return JSONResponse({"error": "unsupported_grant_type", "error_description": "only client_credentials"}, 400)
    server = _server(request)
    client = request.client.host if request.client else "?"
    if server.failures.wait(client):
        return JSONResponse({"error": "invalid_client", "error_description": "too many tries; wait"}, 429)
    issued = await server.run(access.issue, server.store, client_id, secret) if client_id and secret else None
    if issued is None:
        server.failures.add(client)
        return JSONResponse({"error": "invalid_client", "error_description": "not a valid client id and secret"}, 401)
    request.state.token = client_id
    return JSONResponse({"access_token": issued[0], "token_type": "bearer", "expires_in": issued[1]},
                        headers={"Cache-Control": "no-store"})


SORTS = ("downloads", "created", "updated")


async def search(request: Request) -> Response:
    """GET search (v1 and v2): the boxes with a released version the request may see whose organisation, name or
    short description holds q, with a provider (and on v2 an architecture) if asked, sorted by downloads, created or
    updated, a page of at most 100 (v2.mdx, "Search for boxes"; `vagrant cloud search` sends every one of them). A
    private box appears to no one but a token that may read it."""
    server = _server(request)
    q = request.query_params
    sort, order = q.get("sort") or "downloads", q.get("order") or "desc"
    limit, page = q.get("limit") or "10", q.get("page") or "1"
    if sort not in SORTS or order not in ("asc", "desc") or not limit.isdigit() or not page.isdigit() or int(page) < 1:
        raise Invalid(f"sort is one of {', '.join(SORTS)}, order asc or desc, limit and page numbers")
    found = await matching(request, q.get("q") or "", q.get("provider"), q.get("architecture"))
    keys = {"downloads": lambda b: b["downloads"], "created": lambda b: b["created_at"], "updated": lambda b: b["updated_at"]}
    found.sort(key=lambda b: (keys[sort](b), b["tag"]), reverse=order == "desc")
    size = max(1, min(int(limit), 100))
    return JSONResponse({"boxes": found[(int(page) - 1) * size:int(page) * size]})


async def matching(request: Request, text: str, provider: str | None, architecture: str | None) -> list[dict[str, Any]]:
    """The boxes search finds (and the pages' search field): as the organisation listing shows them."""
    server = _server(request)
    token = await server.visitor(request)
    found = []
    for name in await server.names():
        if await server.private(name) and not (token and token.may(name)):
            continue
        view = await server.view(name)
        if view is not None and _matches(view, text.lower(), provider, architecture):
            found.append(box_json(request, view, versions=False, downloads=await server.downloads(name)))
    return found


def _matches(view: BoxView, text: str, provider: str | None, architecture: str | None) -> bool:
    """A box with a released version, text in its organisation, name or short description, and a provider (and an
    architecture) as asked."""
    shown = [p for v in view.versions if v.status == "active" for p in v.providers]
    named = not text or any(text in (s or "").lower() for s in (*view.name.split("/"), view.short_description))
    return bool(shown) and named and any(provider in (None, p.name) and architecture in (None, p.architecture) for p in shown)


async def organization(request: Request) -> Response:
    """The boxes of ORG the request may see: none for an organisation that is not there, or all private. To a token
    that may publish there, as the store holds them now (`vagrant cloud publish` reads this twice, and stops on a box
    it did not see the first time but does the second); to others, as fresh as Config.fresh."""
    server = _server(request)
    org = request.path_params["org"]
    token = await server.visitor(request)
    now = token is not None and token.may(f"{org}/x", write=True) and token.scope == org
    names = await server.run(boxes.names, server.store) if now else await server.names()
    found = []
    for name in sorted(n for n in names if n.split("/")[0] == org):
        if await server.private(name) and not (token and token.may(name)):
            continue
        view = await (server.run(Box(server.store, name, server.public_url).view) if now else server.view(name))
        if view is not None:
            found.append(box_json(request, view, versions=False, downloads=await server.downloads(name)))
    return JSONResponse({"username": org, "avatar_url": None, "profile_html": None, "profile_markdown": None,
                         "boxes": found})


# --- boxes ----------------------------------------------------------------------------------------------------

async def create_box(request: Request) -> Response:
    server = _server(request)
    if await server.token(request) is None:
        raise Refusal(401, "a token is needed (Authorization: Bearer TOKEN)")
    fields = _fields(await _body(request), "box", bare=True)
    org, name = fields.get("username"), fields.get("name")
    if not isinstance(org, str) or not isinstance(name, str):
        raise Invalid("give the box's username (its organisation) and name")
    await server.writer(request, f"{org}/{name}")
    box = Box(server.store, f"{org}/{name}", server.public_url)
    await server.run(box.create, fields.get("short_description"), fields.get("description"), fields.get("is_private"))
    return await _shown(request, box)


async def show_box(request: Request) -> Response:
    box = _box(request)
    await _server(request).reader(request, box.name)
    return await _shown(request, box)


async def update_box(request: Request) -> Response:
    box = _box(request)
    await _server(request).writer(request, box.name)
    fields = _fields(await _body(request), "box", bare=True)
    await _server(request).run(box.update, fields.get("short_description"), fields.get("description"), fields.get("is_private"))
    return await _shown(request, box)


async def delete_box(request: Request) -> Response:
    box = _box(request)
    await _server(request).writer(request, box.name)
    return JSONResponse(box_json(request, await _server(request).run(box.delete)))


async def _shown(request: Request, box: Box) -> Response:
    view = await _server(request).run(box.view)
    if view is None:
        raise NotFound(f"{box.name}: no such box")
    return JSONResponse(box_json(request, view, downloads=await _server(request).downloads(box.name)))


# --- versions ------------------------------------------------------------------------------------------------

async def _version(request: Request, act: Callable[[Box, str], VersionView], write: bool = True) -> Response:
    """act(box, version) for a request that may write the box (or read it), answered with the version."""
    box = _box(request)
    await (_server(request).writer if write else _server(request).reader)(request, box.name)
    v = await _server(request).run(act, box, request.path_params["version"])
    return JSONResponse(version_json(request, box.name, v, await _server(request).downloads(box.name)))


async def create_version(request: Request) -> Response:
    box = _box(request)
    await _server(request).writer(request, box.name)
    fields = _fields(await _body(request), "version")
    v = await _server(request).run(box.add_version, fields.get("version"), fields.get("description"))
    return JSONResponse(version_json(request, box.name, v))


async def show_version(request: Request) -> Response:
    return await _version(request, Box.version, write=False)


async def update_version(request: Request) -> Response:
    box = _box(request)
    await _server(request).writer(request, box.name)
    described = _fields(await _body(request), "version").get("description")
    return await _version(request, lambda b, number: b.add_version(number, described))


async def delete_version(request: Request) -> Response:
    return await _version(request, Box.delete_version)


async def release(request: Request) -> Response:
    return await _version(request, Box.release)


async def revoke(request: Request) -> Response:
    return await _version(request, Box.revoke)


# --- providers -------------------------------------------------------------------------------------------------

def _where(request: Request) -> tuple[str, str, str | None]:
    p = request.path_params
    return p["version"], p["provider"], p.get("arch")


async def create_provider(request: Request) -> Response:
    box = _box(request)
    await _server(request).writer(request, box.name)
    fields = _fields(await _body(request), "provider")
    version = request.path_params["version"]
    p = await _server(request).run(box.set_provider, version, fields.get("name"), fields.get("architecture"), fields, True)
    return JSONResponse(provider_json(p))


async def _provider(request: Request, act: Callable[[Box, str, str, str | None], ProviderView], write: bool = True) -> Response:
    """act(box, version, provider, architecture) for a request that may write the box (or read it)."""
    box = _box(request)
    await (_server(request).writer if write else _server(request).reader)(request, box.name)
    p = await _server(request).run(act, box, *_where(request))
    return JSONResponse(provider_json(p, request.path_params["version"], await _server(request).downloads(box.name)))


async def show_provider(request: Request) -> Response:
    return await _provider(request, Box.provider, write=False)


async def update_provider(request: Request) -> Response:
    await _server(request).writer(request, _box(request).name)
    fields = {k: v for k, v in _fields(await _body(request), "provider").items() if k != "name"}
    return await _provider(request, lambda box, v, p, a: box.set_provider(v, p, a, fields, False))


async def delete_provider(request: Request) -> Response:
    return await _provider(request, Box.delete_provider)


# --- uploads --------------------------------------------------------------------------------------------------------

async def upload_url(request: Request) -> Response:
    box = _box(request)
    token = await _server(request).writer(request, box.name)
    secret = await _server(request).run(box.ticket, *_where(request), token.id)
    root = _server(request).public_url
    return JSONResponse({"upload_path": f"{root}/.upload/{secret}", "callback": f"{root}/api/v1/uploads/{secret}/complete"})


async def upload(request: Request) -> Response:
    """PUT the box's bytes to the upload path: streamed into a new upload of its key, checked on the way, placed."""
    server = _server(request)
    secret = request.path_params["ticket"]
    ticket = await server.run(boxes.ticket, server.store, secret)
    if ticket is None:
        raise NotFound("no such upload (or it expired): ask for another upload URL")
    token = await server.run(access.token_record, server.store, ticket.token)
    if token is None or not token.may(ticket.name, write=True):
        raise Refusal(403, "the token that asked for this upload URL is revoked or expired: ask for another upload URL")
    uploading: set[str] = request.app.state.uploading
    if secret in uploading:
        raise Conflict("this upload URL is in use by another upload; wait for it to end")
    if server.uploads.available_tokens < 1:
        raise Refusal(503, "too many uploads at once here; try again", {"Retry-After": "30"})
    expected = request.headers.get("content-length")
    box = Box(server.store, ticket.name, server.public_url)
    received = {"bytes": 0}
    uploading.add(secret)
    try:
        chunks = _chunks(request, received, time.monotonic() + server.config.upload_seconds)
        result = await anyio.to_thread.run_sync(box.receive, ticket, chunks, limiter=server.uploads)
    except _Gone as e:
        raise Refusal(400, f"the upload was not received whole: {e}") from None
    except (Invalid, Conflict) as e:
        # Received, and not taken. Both Vagrants upload with `curl --fail`, which prints a status and no body, and so
        # does Packer: as on HCP, whose direct uploads go to storage, the callback (or the release) says why.
        await server.run(box.refused, secret, ticket, str(e))
        request.state.why = " ".join(str(e).replace('"', "'").split())
        return JSONResponse({"success": False, "errors": [str(e)]}, headers={"Connection": "close"})
    finally:
        uploading.discard(secret)
    if ticket.refused:  # an earlier upload to it was refused; this one was taken
        await server.run(box.refused, secret, ticket, None)
    if expected is not None and int(expected) != received["bytes"]:
        raise Invalid(f"the upload is {received['bytes']} bytes, its Content-Length {expected}")
    return JSONResponse({"success": True, "uploaded": {"checksum_type": result.checksum_type, "checksum": result.checksum,
                                                       "size": result.size, "architecture": result.architecture}})


async def complete(request: Request) -> Response:
    """The direct upload's callback: the box is there and checked (upload() did that), or it is refused."""
    server = _server(request)
    ticket = await server.run(boxes.ticket, server.store, request.path_params["ticket"])
    if ticket is None:
        raise NotFound("no such upload (or it expired)")
    await server.writer(request, ticket.name)
    if ticket.refused:
        raise Invalid(f"the box uploaded was refused: {ticket.refused}")
    box = Box(server.store, ticket.name, server.public_url)
    provider = await server.run(box.provider, ticket.version, ticket.provider, ticket.architecture)
    if not provider.uploaded:
        raise Invalid("the upload did not complete: no box was received for it")
    return JSONResponse({"success": True})


class _Gone(Exception):
    pass


def _chunks(request: Request, received: dict, deadline: float) -> Iterator[bytes]:
    """The request body as a blocking iterator, for the thread that writes it to the store: a MiB at a time
    fetched from the event loop (one crossing per 64 KiB read cost a third of the rate), given up when the
    client disconnects, sends nothing for CHUNK_SECONDS, or is not done by deadline."""
    stream = request.stream()
    ended = False

    async def next_batch() -> bytes:
        nonlocal ended
        parts: list[bytes] = []
        size = 0
        while size < BATCH and not ended:
            left = deadline - time.monotonic()
            try:
                with anyio.fail_after(min(CHUNK_SECONDS, max(left, 0.0))):
                    part = await stream.__anext__()
            except StopAsyncIteration:
                ended = True
                break
            except ClientDisconnect:
                raise _Gone("the client went away") from None
            except TimeoutError:
                raise _Gone("too slow" if left < CHUNK_SECONDS else f"nothing came for {CHUNK_SECONDS:.0f} s") from None
            parts.append(part)
            size += len(part)
        return b"".join(parts)

    while not ended:
        batch = anyio.from_thread.run(next_batch)
        received["bytes"] += len(batch)
        if batch:
            yield batch


async def _form(request: Request) -> dict[str, str]:
    """A small form body (application/x-www-form-urlencoded): its fields, bounded as a JSON body is."""
    length = request.headers.get("content-length", "")
    if not length.isdigit() or int(length) > FORM_LIMIT:
        raise Refusal(413, "give the form with its Content-Length, at most 16 KiB")
    data = await _read(request, FORM_LIMIT)
    return {k: v[0] for k, v in urllib.parse.parse_qs(data.decode(errors="replace")).items()}


async def _read(request: Request, limit: int) -> bytes:
    """A request's body, at most limit bytes, within BODY_SECONDS."""
    data = bytearray()
    try:
        with anyio.fail_after(BODY_SECONDS):
            async for chunk in request.stream():
                data += chunk
                if len(data) > limit:
                    raise Refusal(413, "the request body is too large")
    except TimeoutError:
        raise Refusal(408, "the request body did not arrive in time") from None
    return bytes(data)


def _fields(body: dict, key: str, bare: bool = False) -> dict:
    """The object a body wraps under key ({"version": {...}}); with bare, the body itself when it does not (the
    vagrant_cloud gem 3.0.5 creates a box with its fields bare, 3.1.3 under "box")."""
    inner = body.get(key)
    return inner if isinstance(inner, dict) else body if bare else {}


async def _body(request: Request) -> dict:
    """The JSON object a request sends (after its token was checked): said to be JSON, at most BODY_LIMIT bytes,
    within BODY_SECONDS."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    length = request.headers.get("content-length")
    if length == "0" or (length is None and "transfer-encoding" not in request.headers):
        return {}
    if kind != "application/json":
        raise Refusal(415, "a request body must be JSON (Content-Type: application/json)")
    if length is not None and (not length.isdigit() or int(length) > BODY_LIMIT):
        raise Refusal(413, "the request body is too large")
    data = await _read(request, BODY_LIMIT)
    if not data:
        return {}
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise Invalid("the request body is not JSON") from None
    if not isinstance(doc, dict):
        raise Invalid("the request body is not a JSON object")
    return doc


BOX = "/box/{org}/{name}"
VERSION = BOX + "/version/{version}"
PROVIDER = VERSION + "/provider/{provider}"
ROUTES: list[BaseRoute] = [
    Route("/search", search, methods=["GET"]),
    Route("/authenticate", authenticate, methods=["GET"]),
    Route("/authenticate", password_login, methods=["POST"]),
    Route("/authenticate", log_out, methods=["DELETE"]),
    Route("/two-factor/request-code", password_login, methods=["POST"]),
    Route("/user/{org}", organization, methods=["GET"]),
    Route("/boxes", create_box, methods=["POST"]),
    Route(BOX, show_box, methods=["GET"]),
    Route(BOX, update_box, methods=["PUT"]),
    Route(BOX, delete_box, methods=["DELETE"]),
    Route(BOX + "/versions", create_version, methods=["POST"]),
    Route(VERSION, show_version, methods=["GET"]),
    Route(VERSION, update_version, methods=["PUT"]),
    Route(VERSION, delete_version, methods=["DELETE"]),
    Route(VERSION + "/release", release, methods=["PUT"]),
    Route(VERSION + "/revoke", revoke, methods=["PUT"]),
    Route(VERSION + "/providers", create_provider, methods=["POST"]),
    *(Route(PROVIDER + arch + tail, upload_url, methods=["GET"]) for arch in ("", "/{arch}") for tail in ("/upload", "/upload/direct")),
    *(r for arch in ("", "/{arch}") for r in (Route(PROVIDER + arch, show_provider, methods=["GET"]),
                                              Route(PROVIDER + arch, update_provider, methods=["PUT"]),
                                              Route(PROVIDER + arch, delete_provider, methods=["DELETE"]))),
    Route("/uploads/{ticket}/complete", complete, methods=["PUT"]),
]
UPLOAD = Route("/.upload/{ticket}", upload, methods=["PUT"])
TOKEN = Route("/oauth2/token", oauth_token, methods=["POST"])  # HCP_TOKEN_PATH's default, under HCP_AUTH_URL
