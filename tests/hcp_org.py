"""A stand-in for HCP Vagrant holding a whole organisation, for `boxpack mirror --org` (HCP cannot be reached from
here). It answers the shapes HashiCorp's API documents (website/content/vagrant-cloud/api/v2.mdx in Vagrant
2.4.9: "Read an organization", "Read a box", and the catalog at /api/v2/vagrant/ORG/NAME) and the vagrant_cloud
gem reads, from a real HTTP server on 127.0.0.1:

- private boxes, and unreleased and revoked versions, only to the organisation's token (404 to others, as HCP);
- boxes with descriptions; entries without a checksum; aliases: entries of one box naming another box's file;
- box files at HCP's download path (/ORG/boxes/NAME/versions/V/providers/P/ARCH/vagrant.box, and the older
  .../providers/P.box), each answered with a redirect to "storage" on another host name (localhost), which
  records every Authorization header it is sent;
- a 429 with Retry-After for every RATE_LIMIT-th request, and the first download of some files cut midway.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

RATE_LIMIT = 7  # every 7th request is told to wait


@dataclass
class Entry:
    version: str
    provider: str
    arch: str
    file: str  # a key of Org.files
    default: bool = True
    checksum: bool = True
    alias: tuple[str, str, str, str] | None = None  # (box, version, provider, arch) of the file it names


@dataclass
class OrgBox:
    name: str
    private: bool
    entries: list[Entry]
    statuses: dict[str, str] = field(default_factory=dict)  # version -> unreleased | revoked (else active)
    short: str = ""
    description: str = ""


class Org:
    """The organisation's boxes on a stand-in HCP: url, token, and what its storage was sent."""

    def __init__(self, org: str, boxes: list[OrgBox], files: dict[str, Path], token: str) -> None:
        self.org, self.boxes, self.files, self.token = org, {b.name: b for b in boxes}, files, token
        self.storage_headers: list[dict[str, str]] = []
        self.storage_gets: list[str] = []
        self.requests = 0
        self.cut: set[str] = set()  # files whose next download is cut midway (once each)
        self._lock = threading.Lock()
        org_ = self

        class Hcp(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                org_._answer(self)

            do_HEAD = do_GET

            def log_message(self, *args: object) -> None:
                pass

        class Storage(Hcp):
            def do_GET(self) -> None:  # noqa: N802
                org_._store(self)

            do_HEAD = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hcp)
        self.storage = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Storage)
        for s in (self.server, self.storage):
            s.daemon_threads = True
            threading.Thread(target=s.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.storage_url = f"http://localhost:{self.storage.server_address[1]}"  # another host name

    def close(self) -> None:
        for s in (self.server, self.storage):
            s.shutdown()
            s.server_close()

    # --- what HCP answers ---------------------------------------------------------------------------------------

    def _answer(self, h: http.server.BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests += 1
            limited = self.requests % RATE_LIMIT == 0
        if limited:
            return _send(h, 429, b"slow down\n", "text/plain", {"Retry-After": "1"})
        authorised = h.headers.get("Authorization") == f"Bearer {self.token}"
        path = h.path.split("?")[0]
        if m := re.fullmatch(r"/api/v2/user/([^/]+)", path):
            boxes = [self._box_json(b, authorised, versions=False) for b in self.boxes.values()
                     if m[1] == self.org and (authorised or not b.private)]
            return _json(h, {"username": m[1], "avatar_url": None, "profile_html": None, "profile_markdown": None,
                             "boxes": boxes})
        if m := re.fullmatch(r"/api/v2/(box|vagrant)/([^/]+)/([^/]+)", path):
            b = self.boxes.get(m[3]) if m[2] == self.org else None
            if b is None or (b.private and not authorised):
                return _json(h, {"errors": ["Resource not found!"], "success": False}, 404)
            return _json(h, self._box_json(b, authorised) if m[1] == "box" else self._catalog(b))
        if m := re.fullmatch(r"/([^/]+)/boxes/([^/]+)/versions/([^/]+)/providers/([^/]+?)(?:/([^/]+)/vagrant\.box|\.box)", path):
            return self._download(h, m, authorised)
        _send(h, 404, b"not found\n", "text/plain")

    def _download(self, h: http.server.BaseHTTPRequestHandler, m: re.Match, authorised: bool) -> None:
        b = self.boxes.get(m[2]) if m[1] == self.org else None
        entry = next((e for e in (b.entries if b else []) if (e.version, e.provider) == (m[3], m[4])
                      and (e.arch == m[5] or (m[5] is None and e.default))), None)
        if b is None or entry is None or (b.private and not authorised):
            return _send(h, 404, b"not found\n", "text/plain")
        _send(h, 302, b"", "text/plain", {"Location": f"{self.storage_url}/storage/{entry.file}?X-Amz-Signature=0f0f"})

    def _store(self, h: http.server.BaseHTTPRequestHandler) -> None:
        self.storage_headers.append(dict(h.headers))
        name = h.path.split("?")[0].removeprefix("/storage/")
        data = self.files[name].read_bytes() if name in self.files else None
        if data is None:
            return _send(h, 404, b"not found\n", "text/plain")
        if h.command == "HEAD":
            return _send(h, 200, data, "application/octet-stream")
        self.storage_gets.append(name)
        start = int(m[1]) if (m := re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range", ""))) else 0
        headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"} if start else {}
        h.send_response(206 if start else 200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(data) - start))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        with self._lock:
            cut = name in self.cut and not start
            self.cut.discard(name)
        h.wfile.write(data[start:len(data) // 2] if cut else data[start:])
        if cut:
            h.close_connection = True

    def _box_json(self, b: OrgBox, authorised: bool, versions: bool = True) -> dict:
        shown = [v for v in self._versions(b) if authorised or b.statuses.get(v, "active") == "active"]
        body = {"tag": f"{self.org}/{b.name}", "name": b.name, "username": self.org, "private": b.private,
                "short_description": b.short, "description_markdown": b.description, "description_html": None,
                "created_at": "2024-01-01T00:00:00.000Z", "updated_at": "2026-09-01T00:00:00.000Z", "downloads": 12,
                "current_version": None}
        if versions:
            body["versions"] = [self._version_json(b, v) for v in shown]
        return body

    def _version_json(self, b: OrgBox, version: str) -> dict:
        return {"version": version, "number": version, "status": b.statuses.get(version, "active"),
                "description_markdown": f"release {version} of {b.name}",
                "providers": [self._provider_json(b, e) for e in b.entries if e.version == version]}

    def _provider_json(self, b: OrgBox, e: Entry) -> dict:
        box, version, provider, arch = e.alias or (b.name, e.version, e.provider, e.arch)
        url = f"{self.url}/{self.org}/boxes/{box}/versions/{version}/providers/{provider}/{arch}/vagrant.box"
        digest = hashlib.sha256(self.files[e.file].read_bytes()).hexdigest() if e.checksum else None
        return {"name": e.provider, "architecture": e.arch, "default_architecture": e.default, "hosted": True,
                "hosted_token": None, "original_url": None, "download_url": url, "checksum": digest,
                "checksum_type": "sha256" if digest else None}

    def _catalog(self, b: OrgBox) -> dict:
        versions = []
        for v in self._versions(b):
            if b.statuses.get(v, "active") == "active":
                providers = [{k: p[k] for k in ("name", "architecture", "default_architecture", "checksum", "checksum_type")}
                             | {"url": p["download_url"]} for p in self._version_json(b, v)["providers"]]
                versions.append({"version": v, "providers": providers})
        return {"name": f"{self.org}/{b.name}", "description": b.description, "versions": versions}

    @staticmethod
    def _versions(b: OrgBox) -> list[str]:
        return sorted({e.version for e in b.entries}, key=lambda v: [int(x) for x in v.split(".")])


def _json(h: http.server.BaseHTTPRequestHandler, doc: object, status: int = 200) -> None:
    _send(h, status, json.dumps(doc).encode(), "application/json")


def _send(h: http.server.BaseHTTPRequestHandler, status: int, data: bytes, kind: str, headers: dict | None = None) -> None:
    h.send_response(status)
    h.send_header("Content-Type", kind)
    h.send_header("Content-Length", str(len(data)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(data)
