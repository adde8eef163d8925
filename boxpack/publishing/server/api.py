"""The part of the Vagrant Cloud API that `vagrant cloud publish` (Vagrant 2.3.4 with the vagrant_cloud gem 3.0.5,
2.4.9 with 3.1.3) and Packer 1.6.6's vagrant-cloud post-processor call, over boxes.py: so a pipeline moves off
HCP by pointing VAGRANT_SERVER_URL (or Packer's vagrant_cloud_url, `<server>/api/v1`) at boxpack serve.

Every route answers under /api/v1 and /api/v2: gem 3.0.5 asks /api/v1 (plugins/commands/cloud/util.rb,
api_server_url); gem 3.1.3 asks /api/v2 for all but token creation (lib/vagrant_cloud/client.rb, request's
api_version), and a provider's architecture is the path segment after its name (box_version_provider_*).
Bodies and answers are JSON; errors are `{"errors": [...], "success": false}` (website v2.mdx), which the gem
prints after "Vagrant Cloud request failed - " (lib/vagrant_cloud/error.rb, RequestError) and Packer after
its step's words (post-processor/vagrant-cloud/client.go, VagrantCloudErrors.FormatErrors). Packer takes only
200 as success (step_create_version.go, step_create_provider.go), so every success is 200.

Routes, each with where its client calls it:
- GET authenticate: the token's validity, {"user": {"username"}} (client.rb authentication_token_validate;
  Account#setup!; Packer client.go ValidateAuthentication)
- GET user/ORG: the organisation and its boxes with their versions (organization_get; Account#organization,
  which `vagrant cloud publish` loads the box from: publish.rb load_box)
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
  that one box (Vagrant's uploader and Packer's direct upload send no token to it); the callback is
  PUT with the token (Provider#upload's callback proc; Packer step_confirm_upload.go). A "direct" upload goes
  through this server too: every byte is checked on its way to the store before the box can be released.
Not answered (404): search, token creation with a password and two-factor codes, and HCP's own registry API
(tokens are made with `boxpack serve token create`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.from_thread
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ...errors import BoxpackError
from .. import access, layout
from ..boxes import Box, Refused, ticket_record
from .pages import Denied

BODY_LIMIT = 1024 * 1024  # a JSON request body
BATCH = 1024 * 1024  # bytes of an upload handed to the store's thread at once
CHUNK_SECONDS = 60.0  # an upload that sends nothing for this long is given up


def _error(status: int, *messages: str) -> JSONResponse:
    return JSONResponse({"errors": list(messages), "success": False}, status)


class Api:
    def __init__(self, server: Any) -> None:
        self.server = server  # app.Server: the store, the public URL, tokens

    @property
    def store(self) -> Any:
        return self.server.store

    def box(self, org: str, name: str) -> Box:
        try:
            return Box(self.store, f"{org}/{name}", self.server.public_url)
        except BoxpackError:
            raise Refused(404, f"{org}/{name}: not a box name") from None

    async def who(self, request: Request) -> access.Token:
        """The request's valid token, or Refused 401."""
        try:
            token = await self.server.token(request)
        except Denied as e:
            raise Refused(e.response.status_code, "the token is not valid") from None
        if token is None:
            raise Refused(401, "a token is needed (Authorization: Bearer TOKEN)")
        return token

    async def may(self, request: Request, name: str, write: bool) -> access.Token | None:
        """Refused unless the request may read (the box is public, or its token may) or write ORG/NAME."""
        if not write and not await self.server.private(name):
            return None
        token = await self.who(request)
        if not token.may(name, write):
            if token.may(name):
                raise Refused(403, f"the token may read {name}, not publish it")
            raise Refused(404, f"{name}: no such box")  # private names do not leak
        return token

    # --- the JSON the clients read -------------------------------------------------------------------

    def box_json(self, org: str, name: str, view: dict) -> dict:
        versions = [self.version_json(org, name, v) for v in view["versions"]]
        current = next((v for v in versions if v["status"] == "active"), None)
        return {"tag": f"{org}/{name}", "username": org, "name": name, "private": view["private"],
                "short_description": view["short_description"], "description": view["description"],
                "description_markdown": view["description"], "description_html": None,
                "created_at": view["created_at"], "updated_at": view["updated_at"], "downloads": 0,
                "current_version": current, "versions": versions}

    def version_json(self, org: str, name: str, v: dict) -> dict:
        base = f"{self.server.public_url}/api/v1/box/{org}/{name}/version/{v['version']}"
        return {"version": v["version"], "number": v["version"], "status": v["status"],
                "description": v["description"], "description_markdown": v["description"], "description_html": None,
                "created_at": v["created_at"], "updated_at": v["updated_at"], "release_url": f"{base}/release",
                "revoke_url": f"{base}/revoke", "providers": [dict(p, hosted_token=None) for p in v["providers"]]}

    # --- routes ----------------------------------------------------------------------------------------

    async def authenticate(self, request: Request) -> Response:
        token = await self.who(request)
        return JSONResponse({"user": {"username": token.scope.split("/")[0]}, "token": {"id": token.id}})

    async def organization(self, request: Request) -> Response:
        org = request.path_params["org"]
        names = [n for n in await self.server.names() if n.split("/")[0] == org]
        names += [n for n in await run_in_threadpool(self._recorded, org) if n not in names]
        boxes = []
        for n in sorted(names):
            try:
                await self.may(request, n, write=False)
            except Refused:
                continue
            view = await run_in_threadpool(Box(self.store, n, self.server.public_url).view)
            if view:
                boxes.append(self.box_json(org, n.split("/")[1], view))
        return JSONResponse({"username": org, "avatar_url": None, "profile_html": None, "profile_markdown": None,
                             "boxes": boxes})

    def _recorded(self, org: str) -> list[str]:
        prefix = f"{layout.PRIVATE_PREFIX}boxes/{org}/"
        return [k.removeprefix(f"{layout.PRIVATE_PREFIX}boxes/").removesuffix(".json") for k in self.store.list(prefix)]

    async def create_box(self, request: Request) -> Response:
        body = await _body(request)
        fields = _fields(body, "box", bare=True)
        org, name = str(fields.get("username") or ""), str(fields.get("name") or "")
        await self.may(request, f"{org}/{name}", write=True)
        box = self.box(org, name)
        await run_in_threadpool(box.save, fields.get("short_description"), fields.get("description"),
                                fields.get("is_private"), True)
        return await self.show_box(request, org, name)

    async def box_route(self, request: Request) -> Response:
        org, name = request.path_params["org"], request.path_params["name"]
        await self.may(request, f"{org}/{name}", write=request.method != "GET")
        box = self.box(org, name)
        if request.method == "PUT":
            body = await _body(request)
            fields = _fields(body, "box", bare=True)
            await run_in_threadpool(box.save, fields.get("short_description"), fields.get("description"),
                                    fields.get("is_private"))
        elif request.method == "DELETE":
            view = await run_in_threadpool(box.view)
            await run_in_threadpool(box.delete)
            return JSONResponse(self.box_json(org, name, view or {}))
        return await self.show_box(request, org, name)

    async def show_box(self, request: Request, org: str, name: str) -> Response:
        view = await run_in_threadpool(self.box(org, name).view)
        if view is None:
            raise Refused(404, f"{org}/{name}: no such box")
        return JSONResponse(self.box_json(org, name, view))

    async def create_version(self, request: Request) -> Response:
        org, name = request.path_params["org"], request.path_params["name"]
        await self.may(request, f"{org}/{name}", write=True)
        body = await _body(request)
        fields = _fields(body, "version")
        box = self.box(org, name)
        number = str(fields.get("version") or "")
        await run_in_threadpool(box.add_version, number, fields.get("description"))
        return JSONResponse(self.version_json(org, name, await run_in_threadpool(box.version, number)))

    async def release(self, request: Request) -> Response:
        return await self._status(request, "release")

    async def revoke(self, request: Request) -> Response:
        return await self._status(request, "revoke")

    async def _status(self, request: Request, change: str) -> Response:
        org, name, number = request.path_params["org"], request.path_params["name"], request.path_params["version"]
        await self.may(request, f"{org}/{name}", write=True)
        box = self.box(org, name)
        v = await run_in_threadpool(box.release if change == "release" else box.revoke, number)
        return JSONResponse(self.version_json(org, name, v))

    async def version_route(self, request: Request) -> Response:
        org, name, number = request.path_params["org"], request.path_params["name"], request.path_params["version"]
        await self.may(request, f"{org}/{name}", write=request.method != "GET")
        box = self.box(org, name)
        if request.method == "PUT":
            body = await _body(request)
            fields = _fields(body, "version")
            await run_in_threadpool(box.add_version, number, fields.get("description"))
            v = await run_in_threadpool(box.version, number)
        elif request.method == "DELETE":
            v = await run_in_threadpool(box.version, number)
            await run_in_threadpool(box.delete_version, number)
        else:
            v = await run_in_threadpool(box.version, number)
        return JSONResponse(self.version_json(org, name, v))

    async def create_provider(self, request: Request) -> Response:
        org, name, number = request.path_params["org"], request.path_params["name"], request.path_params["version"]
        await self.may(request, f"{org}/{name}", write=True)
        body = await _body(request)
        fields = _fields(body, "provider")
        provider = str(fields.get("name") or "")
        box = self.box(org, name)
        result = await run_in_threadpool(box.set_provider, number, provider, fields.get("architecture"), fields, True)
        return JSONResponse(dict(result, hosted_token=None))

    async def provider_route(self, request: Request) -> Response:
        p = request.path_params
        org, name, number, provider, arch = p["org"], p["name"], p["version"], p["provider"], p.get("arch")
        await self.may(request, f"{org}/{name}", write=request.method != "GET")
        box = self.box(org, name)
        if request.method == "PUT":
            body = await _body(request)
            fields = dict(_fields(body, "provider"))
            fields.pop("name", None)
            result = await run_in_threadpool(box.set_provider, number, provider, arch, fields, False)
        elif request.method == "DELETE":
            result = await run_in_threadpool(box.provider, number, provider, arch)
            await run_in_threadpool(box.delete_provider, number, provider, arch)
        else:
            result = await run_in_threadpool(box.provider, number, provider, arch)
        return JSONResponse(dict(result, hosted_token=None))

    async def upload_url(self, request: Request) -> Response:
        p = request.path_params
        org, name, number, provider, arch = p["org"], p["name"], p["version"], p["provider"], p.get("arch")
        token = await self.may(request, f"{org}/{name}", write=True)
        ticket = await run_in_threadpool(self.box(org, name).ticket, number, provider, arch, token.id if token else "-")
        root = self.server.public_url
        return JSONResponse({"upload_path": f"{root}/.upload/{ticket}", "callback": f"{root}/api/v1/uploads/{ticket}/complete"})

    async def upload(self, request: Request) -> Response:
        """PUT the box's bytes to the upload path: streamed into its key, checked on the way."""
        ticket = request.path_params["ticket"]
        record = await run_in_threadpool(ticket_record, self.store, ticket)
        if record is None:
            raise Refused(404, "no such upload (or it expired): ask for another upload URL")
        expected = request.headers.get("content-length")
        box = self.box(*record["name"].split("/"))
        received = {"bytes": 0}
        chunks = _chunks(request, received)
        try:
            result = await anyio.to_thread.run_sync(box.receive, record["version"], record["provider"],
                                                    record["architecture"], chunks)
        except _Gone:
            return Response(status_code=400)  # the client went away (or stalled): nothing of its box stays
        if expected is not None and int(expected) != received["bytes"]:
            raise Refused(422, f"the upload is {received['bytes']} bytes, its Content-Length {expected}")
        return JSONResponse({"uploaded": result})

    async def complete(self, request: Request) -> Response:
        """The direct upload's callback: the box is there and checked (upload() did that), or it is refused."""
        ticket = request.path_params["ticket"]
        record = await run_in_threadpool(ticket_record, self.store, ticket)
        if record is None:
            raise Refused(404, "no such upload (or it expired)")
        await self.may(request, record["name"], write=True)
        provider = await run_in_threadpool(self.box(*record["name"].split("/")).provider, record["version"],
                                           record["provider"], record["architecture"])
        if not provider["hosted"] or not provider["checksum"]:
            raise Refused(422, "the upload did not complete: no box was received for it")
        return JSONResponse({"success": True})


class _Gone(Exception):
    pass


def _chunks(request: Request, received: dict) -> Iterator[bytes]:
    """The request body as a blocking iterator, for the thread that writes it to the store: a MiB at a time
    fetched from the event loop (one crossing per 64 KiB read cost a third of the rate), given up when the
    client disconnects or sends nothing for CHUNK_SECONDS."""
    stream = request.stream()
    ended = False

    async def next_batch() -> bytes:
        nonlocal ended
        parts: list[bytes] = []
        size = 0
        while size < BATCH and not ended:
            try:
                with anyio.fail_after(CHUNK_SECONDS):
                    part = await stream.__anext__()
            except StopAsyncIteration:
                ended = True
                break
            except (ClientDisconnect, TimeoutError):
                raise _Gone from None
            parts.append(part)
            size += len(part)
        return b"".join(parts)

    while not ended:
        batch = anyio.from_thread.run(next_batch)
        received["bytes"] += len(batch)
        if batch:
            yield batch


def _fields(body: dict, key: str, bare: bool = False) -> dict:
    """The object a body wraps under key ({"version": {...}}); with bare, the body itself when it does not (the
    vagrant_cloud gem 3.0.5 creates a box with its fields bare, 3.1.3 under "box")."""
    inner = body.get(key)
    return inner if isinstance(inner, dict) else body if bare else {}


async def _body(request: Request) -> dict:
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > BODY_LIMIT:
            raise Refused(413, "the request body is too large")
    if not data:
        return {}
    try:
        doc = json.loads(data)
    except ValueError:
        raise Refused(400, "the request body is not JSON") from None
    if not isinstance(doc, dict):
        raise Refused(400, "the request body is not a JSON object")
    return doc


def routes(api: Api, guarded: Callable[[Callable[[Request], Awaitable[Response]]], Callable[[Request], Awaitable[Response]]]) -> list[Route]:
    """The API's routes under /api/v1 and /api/v2, and the upload path."""
    def answering(route: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def answered(request: Request) -> Response:
            try:
                return await route(request)
            except Refused as e:
                request.state.why = " ".join(str(e).replace('"', "'").split())  # one log line, whatever it quotes
                return _error(e.status, str(e))
        return guarded(answered)

    box = "/box/{org}/{name}"
    version = box + "/version/{version}"
    found: list[Route] = [Route("/.upload/{ticket}", answering(api.upload), methods=["PUT"])]
    for prefix in ("/api/v1", "/api/v2"):
        found += [
            Route(prefix + "/authenticate", answering(api.authenticate), methods=["GET"]),
            Route(prefix + "/user/{org}", answering(api.organization), methods=["GET"]),
            Route(prefix + "/boxes", answering(api.create_box), methods=["POST"]),
            Route(prefix + box, answering(api.box_route), methods=["GET", "PUT", "DELETE"]),
            Route(prefix + box + "/versions", answering(api.create_version), methods=["POST"]),
            Route(prefix + version, answering(api.version_route), methods=["GET", "PUT", "DELETE"]),
            Route(prefix + version + "/release", answering(api.release), methods=["PUT"]),
            Route(prefix + version + "/revoke", answering(api.revoke), methods=["PUT"]),
            Route(prefix + version + "/providers", answering(api.create_provider), methods=["POST"]),
            Route(prefix + version + "/provider/{provider}/upload", answering(api.upload_url), methods=["GET"]),
            Route(prefix + version + "/provider/{provider}/upload/direct", answering(api.upload_url), methods=["GET"]),
            Route(prefix + version + "/provider/{provider}/{arch}/upload", answering(api.upload_url), methods=["GET"]),
            Route(prefix + version + "/provider/{provider}/{arch}/upload/direct", answering(api.upload_url), methods=["GET"]),
            Route(prefix + version + "/provider/{provider}", answering(api.provider_route), methods=["GET", "PUT", "DELETE"]),
            Route(prefix + version + "/provider/{provider}/{arch}", answering(api.provider_route),
                  methods=["GET", "PUT", "DELETE"]),
            Route(prefix + "/uploads/{ticket}/complete", answering(api.complete), methods=["PUT"]),
        ]
    return found

