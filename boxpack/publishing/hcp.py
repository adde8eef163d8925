"""What a Vagrant Cloud server (HCP's, or boxpack serve) holds beyond a box's catalog, read through its API for
boxpack mirror: an organisation's boxes, each box's private flag and descriptions, and its versions that are not
released (or were revoked), with their status (website/content/vagrant-cloud/api/v2.mdx: "Read an organization",
"Read a box"); and HCP's download paths, which a catalog's entry may name for another box's file (an alias).

A box read this way becomes a catalog-shaped document (what catalog.read_lenient reads) with each version's
status beside it: a server that has no such API (a static site) answers 404, and the catalog is read instead.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from ..catalog import NAME_PATTERN
from ..errors import BadInput, BoxpackError
from . import http as download
from .layout import CATALOG_LIMIT

# HCP's download path of a box file: .../ORG/boxes/NAME/versions/V/providers/P/ARCH/vagrant.box, or the older
# .../providers/P.box (the provider's default architecture)
HCP_PATH = re.compile(r"/([^/]+)/boxes/([^/]+)/versions/([^/]+)/providers/([^/]+?)(?:/([^/]+)/vagrant\.box|\.box)")


@dataclass
class Listed:
    """A box of an organisation, as its listing gives it."""

    name: str
    private: bool | None  # None: the server did not say


@dataclass
class Described:
    """A box as its server's API gives it, read into what mirror needs."""

    catalog: dict[str, Any]  # catalog-shaped: every version, each provider with the URL to fetch its box from
    statuses: dict[str, str] = field(default_factory=dict)  # version -> active, unreleased, revoked
    private: bool | None = None
    short_description: str | None = None


def _text(d: dict, key: str) -> str | None:
    value = d.get(key)
    return value if isinstance(value, str) and value else None


def organization(server: str, org: str, token: str | None) -> list[Listed]:
    """The boxes of org its server lists to token (GET /api/v2/user/ORG): the private ones too, where it may see them."""
    where = f"{server}/api/v2/user/{urllib.parse.quote(org)}"
    doc = download.get_json(where, CATALOG_LIMIT, token)
    boxes = doc.get("boxes") if isinstance(doc, dict) else None
    if not isinstance(boxes, list):
        raise BadInput(f"{where}: not an organisation (no boxes)")
    found = []
    for b in boxes:
        name = (_text(b, "tag") or f"{org}/{_text(b, 'name')}") if isinstance(b, dict) else ""
        if NAME_PATTERN.fullmatch(name) and name.split("/")[0] == org:
            found.append(Listed(name, b["private"] if isinstance(b.get("private"), bool) else None))
    return found


def box(server: str, name: str, token: str | None) -> Described | None:
    """The box as its server's API gives it (GET /api/v2/box/ORG/NAME), or None where the server has no such API."""
    where = f"{server}/api/v2/box/{name}"
    try:
        doc = download.get_json(where, CATALOG_LIMIT, token)
    except BoxpackError:
        return None  # a static site (404, or HTML): the catalog is read instead
    if not isinstance(doc, dict) or not isinstance(doc.get("versions"), list) or doc.get("tag") != name:
        return None
    described = Described({"name": name, "versions": []}, private=doc["private"] if isinstance(doc.get("private"), bool) else None,
                          short_description=_text(doc, "short_description"))
    text = _text(doc, "description_markdown") or _text(doc, "description")
    if text:
        described.catalog["description"] = text
    for v in doc["versions"]:
        if isinstance(v, dict) and isinstance(v.get("version"), str):
            described.catalog["versions"].append(_version(v))
            status = v.get("status")
            described.statuses[v["version"]] = status if status in ("unreleased", "revoked") else "active"
    return described


def _version(v: dict) -> dict[str, Any]:
    providers = [_provider(p) for p in v.get("providers") or [] if isinstance(p, dict)]
    shaped = {"version": v["version"], "providers": [p for p in providers if p]}
    text = _text(v, "description_markdown") or _text(v, "description")
    return {**shaped, "description": text} if text else shaped


def _provider(p: dict) -> dict[str, Any] | None:
    """A provider as a catalog entry: its box from where the API says it is downloaded (a hosted box's download_url,
    which redirects to storage; else the URL it was given)."""
    url = _text(p, "download_url") if p.get("hosted") is not False else None
    url = url or _text(p, "original_url") or _text(p, "url") or _text(p, "download_url")
    if not _text(p, "name") or not url:
        return None
    entry = {"name": p["name"], "url": url, "architecture": _text(p, "architecture") or "unknown",
             "default_architecture": p.get("default_architecture", True) is not False}
    if _text(p, "checksum") and _text(p, "checksum_type"):
        entry.update(checksum=p["checksum"], checksum_type=p["checksum_type"])
    return entry


def alias(url: str, server: str) -> tuple[str, str, str, str | None] | None:
    """(ORG/NAME, version, provider, architecture or None for the default) when url is a box file's download path on
    server: an entry naming another box's file there (an alias) is that box's bytes."""
    parsed, home = urllib.parse.urlparse(url), urllib.parse.urlparse(server)
    if parsed.hostname != home.hostname or parsed.port != home.port:
        return None
    m = HCP_PATH.fullmatch(parsed.path[len(home.path.rstrip("/")):] if parsed.path.startswith(home.path.rstrip("/")) else parsed.path)
    return (f"{m[1]}/{m[2]}", m[3], m[4], m[5]) if m else None
