"""Boxes as the Vagrant Cloud API sees them: versions that are not released yet, or revoked, beside what the
catalog holds; uploads; release, revoke, delete; and retention (prune), for the API and `boxpack catalog prune`.

The catalog (publish.PublishedCatalog) holds exactly the released versions: what Vagrant reads. What it cannot
hold is kept in the box's record, .boxpack/boxes/ORG/NAME.json (layout.py): the box's descriptions, and each
version that is not in the catalog (unreleased or revoked) with its providers, as the API's clients declared
them and as their uploads turned out. A version is active when the catalog has it, whatever the record says,
so a run killed between the two writes is never a version that is shown released but is not. Both are
changed only by conditional writes, redone on what another writer left: the API on several servers,
`boxpack publish` and `boxpack catalog prune` may all write one box at once and lose nothing.

An uploaded box is checked before it can be released: its digest against the checksum its client declared,
and, as it streams, that it is a readable box of the declared provider and architecture (streamcheck.py).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import random
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import catalog
from ..catalog import CHECKSUM_TYPES, UNKNOWN_ARCH, Catalog
from ..errors import BadInput, BadOption, OutputFailed
from ..sources.box import text
from . import access, layout
from .publish import PublishedCatalog, Publisher, entry
from .stores.base import Store
from .streamcheck import StreamCheck

RECORD_LIMIT = 4 * 1024 * 1024
RETRIES = 20
UPLOAD_SECONDS = 24 * 3600  # how long an upload URL the API hands out works


class Refused(BadInput):
    """What the API answers with an error its client prints: status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class JsonRecord:
    """A JSON object in the store, changed by conditional writes redone when another writer was first."""

    def __init__(self, store: Store, key: str) -> None:
        self.store, self.key = store, key

    def read(self) -> dict | None:
        got = self.store.get(self.key, RECORD_LIMIT)
        return _object(got[0], self.key) if got else None

    def update(self, change: Callable[[dict | None], dict | None]) -> dict | None:
        """change(what is there) gives what is to be there (None: delete it)."""
        for attempt in range(RETRIES):
            got = self.store.get(self.key, RECORD_LIMIT)
            doc = change(_object(got[0], self.key) if got else None)
            if doc is None:
                if got is not None:
                    self.store.delete(self.key)
                return None
            data = json.dumps(doc, indent=1, sort_keys=True).encode()
            if self.store.put(self.key, data, "application/json", "private, no-store", if_absent=got is None,
                              if_version=got[1] if got else None):
                return doc
            time.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.5))
        raise OutputFailed(f"{self.store.where}/{self.key}: changed {RETRIES} times while this update was retried; try again")


def _object(data: bytes, where: str) -> dict:
    try:
        doc = json.loads(data)
    except ValueError:
        raise BadInput(f"{where}: not JSON; it was left as it is") from None
    if not isinstance(doc, dict):
        raise BadInput(f"{where}: not a JSON object; it was left as it is")
    return doc


@dataclass
class Provider:
    """One provider of one version: what its client declared, and what its upload turned out to be."""

    name: str
    architecture: str | None  # None: not given (API v1): unknown
    default_architecture: bool = False
    checksum: str | None = None  # declared
    checksum_type: str | None = None
    url: str | None = None  # a box hosted elsewhere (not uploaded)
    uploaded: dict | None = None  # {"checksum_type", "checksum", "size", "architecture"} once an upload was checked
    created_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)

    @property
    def arch(self) -> str:
        return self.architecture or UNKNOWN_ARCH


def _providers(version: dict) -> list[Provider]:
    return [Provider(**p) for p in version.get("providers", [])]


class Box:
    """A box's record and its catalog, for one request or command."""

    def __init__(self, store: Store, name: str, base_url: str) -> None:
        layout.box_key(name, "0", "x", "x")  # a name that cannot be a key is refused before anything is read
        self.store, self.name, self.base_url = store, name, base_url
        self.record = JsonRecord(store, layout.record_key(name))
        self.catalog = PublishedCatalog(store, name)

    # --- what there is ------------------------------------------------------------------------------

    def read(self) -> tuple[dict | None, Catalog | None]:
        return self.record.read(), self.catalog.read()

    def exists(self) -> bool:
        record, doc = self.read()
        return record is not None or doc is not None

    def view(self) -> dict | None:
        """The box as the API shows it: the catalog's versions (active) and the record's others."""
        record, doc = self.read()
        if record is None and doc is None:
            return None
        record = record or {}
        versions: dict[str, dict] = {}
        for v in (doc or {}).get("versions", []):
            recorded = record.get("versions", {}).get(v["version"])
            released = [_catalog_provider(p, _times(recorded)) for p in v["providers"]]
            pending = [self._api_provider(p) for p in _providers(recorded or {})  # added to it, not uploaded yet
                       if not any(r["name"] == p.name and r["architecture"] == p.arch for r in released)]
            versions[v["version"]] = {"version": v["version"], "status": "active", "description": v.get("description"),
                                      "providers": released + pending, **_times(recorded)}
        for number, v in record.get("versions", {}).items():
            if number in versions or any(catalog.version_key(n) == catalog.version_key(number) for n in versions):
                continue
            status = "revoked" if v.get("status") == "released" else v.get("status", "unreleased")
            versions[number] = {"version": number, "status": status, "description": v.get("description"),
                                "providers": [self._api_provider(p) for p in _providers(v)], **_times(v)}
        ordered = sorted(versions.values(), key=lambda v: catalog.version_key(v["version"]), reverse=True)
        return {"name": self.name, "short_description": record.get("short_description"),
                "description": record.get("description") or (doc or {}).get("description"),
                "private": access.is_private(self.store, self.name), "created_at": record.get("created_at", now()),
                "updated_at": record.get("updated_at", now()), "versions": ordered}

    def _api_provider(self, p: Provider) -> dict:
        hosted = p.url is None
        checksum = p.checksum or (p.uploaded or {}).get("checksum")
        kind = p.checksum_type or (p.uploaded or {}).get("checksum_type")
        return {"name": p.name, "architecture": p.arch, "default_architecture": p.default_architecture,
                "hosted": hosted, "checksum": checksum, "checksum_type": kind, "url": p.url,
                "original_url": p.url, "download_url": None, "created_at": p.created_at, "updated_at": p.updated_at}

    # --- the box ----------------------------------------------------------------------------------------

    def save(self, short_description: Any = None, description: Any = None, private: bool | None = None,
             create: bool = False) -> None:
        """Create (create) or update the box's descriptions and visibility; a create of a box that is there is
        an update (several clients may publish one box at once)."""
        def change(doc: dict | None) -> dict:
            if doc is None and not create and self.catalog.read() is None:
                raise Refused(404, f"{self.name}: no such box")
            doc = doc or {"created_at": now(), "versions": {}}
            for key, value in (("short_description", short_description), ("description", description)):
                if value is not None:
                    doc[key] = str(value)
            doc["updated_at"] = now()
            return doc

        if private is not None:  # before anything of a new private box is written
            access.set_visibility(self.store, self.name, bool(private))
        self.record.update(change)

    def delete(self) -> None:
        """Every version (the catalog first), then the record, the catalog and the visibility."""
        view = self.view()
        if view is None:
            raise Refused(404, f"{self.name}: no such box")
        for v in view["versions"]:
            self.delete_version(v["version"])
        for key in layout.catalog_keys(self.name, self.store.nested):
            self.store.delete(key)
        self.record.update(lambda doc: None)
        self.store.delete(layout.visibility_key(self.name))

    # --- versions ---------------------------------------------------------------------------------------

    def add_version(self, number: str, description: Any = None) -> None:
        """A new unreleased version; one that is there already is updated (an idempotent create)."""
        if not isinstance(number, str) or not catalog.VERSION_PATTERN.fullmatch(number):
            raise Refused(422, f"version {number!r} is not a version Vagrant reads (1.2.3)")

        def change(doc: dict | None) -> dict:
            doc = doc or {"created_at": now(), "versions": {}}
            v = doc["versions"].setdefault(number, {"status": "unreleased", "providers": [], "created_at": now()})
            if description is not None:
                v["description"] = str(description)
            v["updated_at"] = doc["updated_at"] = now()
            return doc

        if not self.exists():
            raise Refused(404, f"{self.name}: no such box")
        self.record.update(change)
        if description is not None and self._active(number):
            self.catalog.update(lambda doc: _describe(doc, number, str(description)))

    def version(self, number: str) -> dict:
        view = self.view()
        found = next((v for v in (view or {}).get("versions", [])
                      if catalog.version_key(v["version"]) == catalog.version_key(number)), None)
        if found is None:
            raise Refused(404, f"{self.name} has no version {number}")
        return found

    def _active(self, number: str) -> bool:
        return any(catalog.version_key(v["version"]) == catalog.version_key(number)
                   for v in (self.catalog.read() or {}).get("versions", []))

    def release(self, number: str) -> dict:
        """The version's checked providers into the catalog, in one write: an upload that passed, or a URL with
        a checksum. One still uploading joins at its upload (receive): several `vagrant cloud publish` runs fill one
        version at once, and the first to finish releases it. Releasing a released version is done."""
        record = self.record.read() or {}
        v = record.get("versions", {}).get(number)
        if v is None:
            self.version(number)  # 404 when there is none
            return self.version(number)  # in the catalog already: released
        providers = _providers(v)
        for p in providers:
            if p.url is not None and not p.checksum:
                raise Refused(422, f"{self.name} {number} {p.name} {p.arch}: a box at a URL needs its checksum to be released")
        ready = [p for p in providers if p.url is not None or p.uploaded is not None]
        if not ready:
            raise Refused(422, f"{self.name} {number}: no box was uploaded for it" if providers
                          else f"{self.name} {number} has no provider to release")
        self.catalog.update(lambda doc: self._with(doc, number, v.get("description"), ready))
        self.record.update(lambda doc: _set_status(doc, number, "released"))
        # An upload that ended meanwhile saw the version unreleased (receive reads it after its own write, as
        # this after the status): it goes live here.
        done = {(p.name, p.arch) for p in ready}
        late = [p for p in _providers((self.record.read() or {}).get("versions", {}).get(number, {}))
                if p.uploaded is not None and (p.name, p.arch) not in done]
        if late:
            self.catalog.update(lambda doc: self._with(doc, number, None, late))
        return self.version(number)

    def _with(self, doc: Catalog | None, number: str, description: str | None, providers: list[Provider]) -> Catalog:
        index = catalog.Index(doc, self.name)
        for p in sorted(providers, key=lambda p: p.default_architecture):  # a default added last stays the default
            key = layout.box_key(self.name, number, p.name, p.arch)
            checksum = (p.uploaded or {}).get("checksum") or p.checksum
            kind = (p.uploaded or {}).get("checksum_type") or p.checksum_type or "sha256"
            index.add(version=number, provider=p.name, url=p.url or layout.url(self.base_url, key), checksum=str(checksum),
                      checksum_type=kind, architecture=p.arch, default_architecture=p.default_architecture, force=True)
        doc = index.catalog()
        return _describe(doc, number, description) if description else doc

    def revoke(self, number: str) -> dict:
        """Out of the catalog (Vagrant no longer sees it); kept in the record, with its providers, as revoked."""
        doc = self.catalog.read()
        released = next((v for v in (doc or {}).get("versions", [])
                         if catalog.version_key(v["version"]) == catalog.version_key(number)), None)
        if released is None:
            self.version(number)
            raise Refused(422, f"{self.name} {number} is not released")

        def keep(record: dict | None) -> dict:
            record = record or {"created_at": now(), "versions": {}}
            v = record["versions"].setdefault(released["version"], {"created_at": now()})
            v.update(status="released", description=released.get("description"), updated_at=now())
            v["providers"] = [_record_provider(p) for p in released["providers"]]
            return record

        self.record.update(keep)  # first: a kill after it leaves the version released, as it was
        self.catalog.update(lambda doc: catalog.remove(doc, number) if doc else {"name": self.name, "versions": []})
        self.record.update(lambda doc: _set_status(doc, number, "revoked"))
        return self.version(number)

    def delete_version(self, number: str) -> None:
        """Out of the catalog first, then its boxes and checksum files, then out of the record."""
        found = self.version(number)
        if found["status"] == "active":
            self.catalog.update(lambda doc: catalog.remove(doc, number) if doc else {"name": self.name, "versions": []})
        for p in found["providers"]:
            self._delete_box(found["version"], p["name"], p["architecture"])
        self.record.update(lambda doc: _without(doc, found["version"]))

    def _delete_box(self, number: str, provider: str, arch: str) -> None:
        """A box's object and its checksum files, unless a catalog names the key again meanwhile."""
        key = layout.box_key(self.name, number, provider, arch)
        if entry(self.catalog.read(), number, provider, arch) is not None:
            return
        for k in [key, *(layout.sidecar_key(key, t) for t in CHECKSUM_TYPES)]:
            self.store.delete(k)

    # --- providers --------------------------------------------------------------------------------------

    def set_provider(self, number: str, name: str, architecture: str | None, fields: dict, create: bool) -> dict:
        """Create or update a provider of an unreleased version (of a released one: a new box goes live at its
        upload). fields: url, checksum, checksum_type, default_architecture, and architecture (a new one)."""
        if name not in _known_providers() and not layout.SAFE_PART.fullmatch(name):
            raise Refused(422, f"provider {name!r} is not a provider name")
        kind = fields.get("checksum_type")
        if kind is not None:
            kind = str(kind).lower()
            if kind not in CHECKSUM_TYPES:
                raise Refused(422, f"checksum type {fields['checksum_type']!r}: give one of {', '.join(CHECKSUM_TYPES)}")
        checksum = fields.get("checksum")
        if checksum is not None:
            checksum = str(checksum).strip().lower()
            if kind is None or len(checksum) != CHECKSUM_TYPES[kind] or any(c not in "0123456789abcdef" for c in checksum):
                raise Refused(422, f"checksum {fields['checksum']!r} is not a {kind or 'known'} digest (give its checksum_type)")
        new_arch = fields.get("architecture", architecture)
        if new_arch is not None and not layout.SAFE_PART.fullmatch(str(new_arch)):
            raise Refused(422, f"architecture {new_arch!r} is not an architecture name")

        def change(doc: dict | None) -> dict:
            doc = doc or {"created_at": now(), "versions": {}}
            v = doc["versions"].setdefault(number, {"status": "unreleased", "providers": [], "created_at": now()})
            providers = _providers(v)
            found = _find(providers, name, architecture)
            if found is None and not create:
                raise Refused(404, f"{self.name} {number} has no {name} provider{f' for {architecture}' if architecture else ''}")
            if found is None:
                found = Provider(name, new_arch)
                providers.append(found)
            found.architecture = new_arch if new_arch is not None else found.architecture
            for attr in ("url", "default_architecture"):
                if fields.get(attr) is not None:
                    setattr(found, attr, fields[attr])
            if checksum is not None:
                found.checksum, found.checksum_type = checksum, kind
                if found.uploaded and found.uploaded.get("checksum") != checksum:
                    found.uploaded = None  # an upload that is not this box any more
            found.updated_at = now()
            v["providers"] = [p.__dict__ for p in providers]
            v["updated_at"] = doc["updated_at"] = now()
            return doc

        self.version(number)  # 404 when there is no such version
        doc = self.record.update(change) or {}
        written = _find(_providers(doc["versions"][number]), name, new_arch)
        return self._api_provider(written) if written else self.provider(number, name, new_arch)

    def provider(self, number: str, name: str, architecture: str | None) -> dict:
        v = self.version(number)
        found = next((p for p in v["providers"] if p["name"] == name and (architecture is None or p["architecture"] == architecture)), None)
        if found is None:
            raise Refused(404, f"{self.name} {number} has no {name} provider{f' for {architecture}' if architecture else ''}")
        return found

    def delete_provider(self, number: str, name: str, architecture: str | None) -> None:
        found = self.provider(number, name, architecture)
        if self.version(number)["status"] == "active":
            self.catalog.update(lambda doc: catalog.remove(doc, number, name, found["architecture"]) if doc else
                                {"name": self.name, "versions": []})
        self._delete_box(number, name, found["architecture"])

        def change(doc: dict | None) -> dict | None:
            if doc is None or number not in doc.get("versions", {}):
                return doc
            v = doc["versions"][number]
            v["providers"] = [p.__dict__ for p in _providers(v) if not (p.name == name and p.arch == found["architecture"])]
            return doc

        self.record.update(change)

    # --- uploads ------------------------------------------------------------------------------------------

    def ticket(self, number: str, name: str, architecture: str | None, token_id: str) -> str:
        """An upload URL's secret: whoever has it may upload that provider's box, for UPLOAD_SECONDS."""
        self.provider(number, name, architecture)
        ticket = secrets.token_hex(16)
        JsonRecord(self.store, layout.upload_key(ticket)).update(lambda _: {
            "name": self.name, "version": number, "provider": name, "architecture": architecture, "token": token_id,
            "expires": time.time() + UPLOAD_SECONDS})
        return ticket

    def receive(self, number: str, name: str, architecture: str | None, chunks: Iterator[bytes]) -> dict:
        """The box's bytes into its key, checked as they stream: its digest against the declared checksum, and
        that verify reads a box of the declared provider and architecture. Nothing of a box that fails stays."""
        declared = self.provider(number, name, architecture)
        if declared["url"]:
            raise Refused(422, f"{self.name} {number} {name}: its box is at {declared['url']}, not uploaded")
        active = self.version(number)["status"] == "active"
        if active and entry(self.catalog.read(), number, name, declared["architecture"]):
            raise Refused(422, f"{self.name} {number} {name} {declared['architecture']} is released; revoke the version first")
        kind = declared["checksum_type"] or "sha256"
        publisher = Publisher(self.store, self.name, self.base_url, force=True)
        upload, digest, check = None, hashlib.new(kind), StreamCheck(f"{self.name} {number} {name}")
        arch_key = architecture or declared["architecture"]
        try:
            upload = publisher.open(number, name, arch_key)
            for chunk in chunks:
                digest.update(chunk)
                upload.write(chunk)
                check.write(chunk)
            report = check.close()
            problem = _box_problem(report, check.failure, name, architecture, declared, digest.hexdigest(), kind)
            if problem:
                raise Refused(422, problem)
            arch = arch_key  # declared (API v2), else unknown (v1 has no architectures), as Vagrant Cloud had it
            publisher.finish(upload, number, name, arch, kind, digest.hexdigest())
        except BaseException:
            check.close()
            if upload is not None:
                upload.abort()
            raise
        uploaded = {"checksum_type": kind, "checksum": digest.hexdigest(), "size": upload.size, "architecture": arch}
        self._uploaded(number, name, architecture, uploaded)
        if self.version(number)["status"] == "active":  # released before or while it uploaded: live now
            record = (self.record.read() or {}).get("versions", {}).get(number, {})
            self.catalog.update(lambda doc: self._with(doc, number, None, [p for p in _providers(record)
                                                                            if p.name == name and p.arch == arch]))
        return uploaded

    def _uploaded(self, number: str, name: str, architecture: str | None, uploaded: dict) -> None:
        def change(doc: dict | None) -> dict:
            doc = doc or {"created_at": now(), "versions": {}}
            v = doc["versions"].setdefault(number, {"status": "unreleased", "providers": [], "created_at": now()})
            providers = _providers(v)
            found = _find(providers, name, architecture)
            if found is None:  # a provider that came from the catalog (a released version)
                found = Provider(name, uploaded["architecture"])
                providers.append(found)
            found.uploaded, found.updated_at = uploaded, now()
            v["providers"] = [p.__dict__ for p in providers]
            return doc

        self.record.update(change)


def _box_problem(report: Any, failure: str | None, name: str, architecture: str | None, declared: dict,
                 actual: str, kind: str) -> str | None:
    """Why an uploaded box cannot be released, or None."""
    if declared["checksum"] and declared["checksum"] != actual:
        return f"the upload's {kind} is {actual}, but the provider's checksum is {declared['checksum']} (a wrong or cut-short upload)"
    if report is None:
        return f"the box could not be checked ({failure})"
    if report.unreadable:
        return f"not a readable box: {report.unreadable}"
    said = text(report.metadata, "provider")
    if said and said != name:
        return f"the box's metadata.json says provider {said}, not {name} (Vagrant would refuse to add it)"
    arch = text(report.metadata, "architecture")
    if architecture and arch and arch != architecture:
        return f"the box's metadata.json says architecture {arch}, not {architecture}"
    return None


def _find(providers: list[Provider], name: str, architecture: str | None) -> Provider | None:
    matches = [p for p in providers if p.name == name and (architecture is None or p.arch == architecture)]
    return matches[0] if matches else None


def _known_providers() -> set[str]:
    from ..providers import PROVIDERS

    return set(PROVIDERS)


def _catalog_provider(p: dict, times: dict) -> dict:
    """A released provider as the API shows it (created_at set: the clients take a provider without it for one
    to create, Provider#exist?)."""
    return {"name": p["name"], "architecture": p["architecture"], "default_architecture": p["default_architecture"],
            "hosted": True, "checksum": p["checksum"], "checksum_type": p["checksum_type"], "url": p["url"],
            "original_url": None, "download_url": p["url"], **times}


def _record_provider(p: dict) -> dict:
    return Provider(p["name"], p["architecture"], p["default_architecture"], p["checksum"], p["checksum_type"],
                    uploaded={"checksum_type": p["checksum_type"], "checksum": p["checksum"], "size": None,
                              "architecture": p["architecture"]}).__dict__


def _times(v: dict | None) -> dict:
    return {"created_at": (v or {}).get("created_at", now()), "updated_at": (v or {}).get("updated_at", now())}


def _describe(doc: Catalog | None, number: str, description: str | None) -> Catalog:
    doc = doc or {}
    for v in doc.get("versions", []):
        if catalog.version_key(v["version"]) == catalog.version_key(number) and description:
            v["description"] = description
    return doc


def _set_status(doc: dict | None, number: str, status: str) -> dict | None:
    if doc is not None and number in doc.get("versions", {}):
        doc["versions"][number]["status"] = status
    return doc


def _without(doc: dict | None, number: str) -> dict | None:
    if doc is not None:
        doc.get("versions", {}).pop(number, None)
    return doc


def ticket_record(store: Store, ticket: str) -> dict | None:
    """What an upload URL's secret may upload, while it works; None for one that is not (or no more)."""
    if not layout.TICKET.fullmatch(ticket):
        return None
    doc = JsonRecord(store, layout.upload_key(ticket)).read()
    return doc if doc and doc.get("expires", 0) > time.time() else None


# --- retention --------------------------------------------------------------------------------------------

@dataclass
class Pruned:
    versions: list[str]  # taken out of the catalog
    deleted: list[str]  # keys deleted after


def prune(store: Store, name: str, keep: int | None = None, keep_days: float | None = None, dry_run: bool = False) -> Pruned:
    """The versions beyond the newest `keep`, or whose boxes are all older than `keep_days` (both given: a version
    goes when either says so; the newest always stays), out of the catalog in one write first, then their boxes
    and checksum files, each only if the catalog, read again, no longer names it."""
    if keep is None and keep_days is None:
        raise BadOption("say what to keep: --keep N, --keep-days DAYS, or both")
    if keep is not None and keep < 1:
        raise BadOption("--keep must be at least 1: the newest version stays")
    published = PublishedCatalog(store, name)
    doc = published.read()
    if doc is None:
        raise BadInput(f"{store.where}: no catalog for {name}")
    versions = [v["version"] for v in doc["versions"]]  # oldest first
    cut = set(versions[:-keep] if keep is not None and keep < len(versions) else [])
    if keep_days is not None:
        limit = time.time() - keep_days * 86400
        for v in doc["versions"][:-1]:
            dates = [s.modified for p in v["providers"] if (s := store.stat(layout.box_key(name, v["version"], p["name"], p["architecture"])))]
            if dates and max(dates) < limit:
                cut.add(v["version"])
    gone = [v for v in doc["versions"] if v["version"] in cut]
    if dry_run or not gone:
        return Pruned([v["version"] for v in gone], [])

    def change(current: Catalog | None) -> Catalog:
        current = current or {"name": name, "versions": []}
        for v in gone:
            if any(catalog.version_key(c["version"]) == catalog.version_key(v["version"]) for c in current["versions"]):
                current = catalog.remove(current, v["version"])
        return current

    published.update(change)
    deleted: list[str] = []
    for v in gone:
        for p in v["providers"]:
            if entry(published.read(), v["version"], p["name"], p["architecture"]) is not None:
                continue  # published again meanwhile: the catalog names it
            key = layout.box_key(name, v["version"], p["name"], p["architecture"])
            for k in (key, layout.sidecar_key(key, p["checksum_type"])):
                if store.stat(k) is not None:
                    store.delete(k)
                    deleted.append(k)
    return Pruned([v["version"] for v in gone], deleted)
