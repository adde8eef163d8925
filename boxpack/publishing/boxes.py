"""Boxes as the Vagrant Cloud API sees them: versions not released yet, or revoked, beside what the catalog holds;
uploads; release, revoke and delete. The domain of `boxpack serve`'s API (server/api.py speaks HTTP over it):
it raises NotFound, Invalid and Conflict (errors.py), and knows nothing of requests or statuses.

The catalog (publish.PublishedCatalog) holds exactly the released versions: what Vagrant reads. The rest is the
box's record (records.py). A version is active when the catalog has it, whatever the record says, so a run
killed between the two writes is never a version shown released that is not. Both change only by conditional
writes (versioned.py), so the API on several servers, `boxpack publish` and `boxpack catalog prune` may all
write one box at once and lose nothing; and the steps that write both, or place a box and then name it (a
release, a revoke, a deletion, an upload's commit), take the box's lease first (lease.py), so no release
names a box a deletion is taking away, and no upload replaces a box a release has just named.

An uploaded box is checked before it is placed: its digest against the checksum its client declared, and, as
it streams, that it is a readable box of the declared provider and architecture (streamcheck.py). It streams
to a new upload of its own (two uploads of one provider never share one), and is placed, under the lease, only
if its box, version and provider are still there and the catalog does not name its key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

from .. import catalog
from ..catalog import CHECKSUM_TYPES, Catalog
from ..errors import BadInput, Conflict, Invalid, NotFound
from ..metadata import text
from . import access, layout, lease
from .publish import PublishedCatalog, Publisher
from .records import (BoxRecord, BoxView, ProviderRecord, ProviderView, Ticket, Uploaded, VersionRecord, VersionView,
                      decode_box, decode_ticket, encode_box, encode_ticket, now)
from .retention import withdraw
from .stores.base import Store, Upload
from .streamcheck import StreamCheck
from .versioned import Unchanged, Versioned

UPLOAD_SECONDS = 24 * 3600  # how long an upload URL the API hands out works (while its token does)
PROVIDER_NAME = re.compile(r"[a-z0-9_][a-z0-9_-]{0,63}")
TEXT_LIMIT = 256 * 1024  # characters of a description


# --- what clients send, checked ------------------------------------------------------------------------------

def check_version(number: Any) -> str:
    if not isinstance(number, str) or len(number) > catalog.MAX_VERSION or not catalog.VERSION_PATTERN.fullmatch(number):
        shown = repr(number[:20] + "...") if isinstance(number, str) and len(number) > 20 else repr(number)
        raise Invalid(f"version {shown} is not a version Vagrant reads (1.2.3)")
    return number


def optional_text(value: Any, field: str) -> str | None:
    if value is None or isinstance(value, str) and len(value) <= TEXT_LIMIT:
        return value
    raise Invalid(f"{field} is not a string of at most {TEXT_LIMIT} characters")


def optional_flag(value: Any, field: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise Invalid(f"{field} is {value!r}, not true or false")


def check_provider(name: Any) -> str:
    if not isinstance(name, str) or not PROVIDER_NAME.fullmatch(name):
        raise Invalid(f"provider {str(name)[:40]!r} is not a provider name (libvirt, virtualbox, ...)")
    return name


def check_architecture(arch: Any) -> str | None:
    if arch is None or isinstance(arch, str) and catalog.ARCH_PATTERN.fullmatch(arch):
        return arch
    raise Invalid(f"architecture {str(arch)[:40]!r} is not one Vagrant matches (amd64, arm64, ...)")


def provider_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """A provider's fields as a client sent them (url, checksum, checksum_type, architecture,
    default_architecture), each checked; only those given."""
    out: dict[str, Any] = {}
    if "architecture" in fields:
        out["architecture"] = check_architecture(fields["architecture"])
    if fields.get("default_architecture") is not None:
        out["default_architecture"] = optional_flag(fields["default_architecture"], "default_architecture")
    url = fields.get("url")
    if url is not None:
        if not isinstance(url, str) or not re.fullmatch(r"https?://[^\s/]+\S*", url) or len(url) > 2048:
            raise Invalid(f"url {str(url)[:60]!r} is not an http(s) URL")
        out["url"] = url
    kind = fields.get("checksum_type")
    if kind is not None:
        out["checksum_type"] = kind = _checksum_type(kind)
    if fields.get("checksum") is not None:
        out["checksum"] = _checksum(fields["checksum"], kind)
    return out


def _checksum_type(kind: Any) -> str:
    if not isinstance(kind, str) or kind.lower() not in CHECKSUM_TYPES:
        raise Invalid(f"checksum type {str(kind)[:20]!r}: give one of {', '.join(CHECKSUM_TYPES)}")
    return kind.lower()


def _checksum(checksum: Any, kind: str | None) -> str:
    value = checksum.strip().lower() if isinstance(checksum, str) else None
    if value is None or kind is None or len(value) != CHECKSUM_TYPES[kind] or not re.fullmatch(r"[0-9a-f]+", value):
        raise Invalid(f"checksum {str(checksum)[:40]!r} is not a {kind or 'known'} digest (give its checksum_type)")
    return value


# --- a box -------------------------------------------------------------------------------------------------------

class Box:
    """A box's record and its catalog, for one request or command. base_url is where its boxes are downloaded
    from (the server's public URL)."""

    def __init__(self, store: Store, name: str, base_url: str) -> None:
        try:
            layout.box_key(name, "0", "x", "x")
        except BadInput:
            raise NotFound(f"{name[:80]}: not a box name") from None
        self.store, self.name, self.base_url = store, name, base_url
        self.record = Versioned(store, layout.record_key(name), decode_box, encode_box)
        self.catalog = PublishedCatalog(store, name)

    def key(self, version: str, provider: str, arch: str) -> str:
        return layout.box_key(self.name, version, provider, arch)

    def _missing(self, number: str | None = None, provider: str | None = None, arch: str | None = None) -> NotFound:
        if provider is None:
            return NotFound(f"{self.name} has no version {number}" if number else f"{self.name}: no such box")
        return NotFound(f"{self.name} {number} has no {provider} provider{f' for {arch}' if arch else ''}")

    # --- what there is ----------------------------------------------------------------------------------------

    def view(self) -> BoxView | None:
        """The box as the API shows it: the catalog's versions (active) and the record's others, the newest first."""
        record, doc = self.record.read(), self.catalog.read()
        if record is None and doc is None:
            return None
        record = record or BoxRecord()
        released = [self._released(v, record.versions.get(v["version"])) for v in (doc or {}).get("versions", [])]
        keys = {catalog.version_key(v.version) for v in released}
        others = [self._recorded(number, v) for number, v in record.versions.items() if catalog.version_key(number) not in keys]
        versions = sorted(released + others, key=lambda v: catalog.version_key(v.version), reverse=True)
        return BoxView(self.name, record.short_description, record.description or (doc or {}).get("description"),
                       access.is_private(self.store, self.name), record.created_at, record.updated_at, versions)

    def _released(self, v: dict, recorded: VersionRecord | None) -> VersionView:
        recorded = recorded or VersionRecord()
        entries = [self._entry_view(v["version"], p, recorded) for p in v["providers"]]
        pending = [self._provider_view(v["version"], p) for p in recorded.providers  # added, not uploaded yet
                   if not any(e.name == p.name and e.architecture == p.arch for e in entries)]
        return VersionView(v["version"], "active", v.get("description"), entries + pending, recorded.created_at,
                           recorded.updated_at)

    def _recorded(self, number: str, v: VersionRecord) -> VersionView:
        status = "revoked" if v.status == "released" else v.status
        return VersionView(number, status, v.description, [self._provider_view(number, p) for p in v.providers],
                           v.created_at, v.updated_at)

    def _entry_view(self, number: str, p: dict, recorded: VersionRecord) -> ProviderView:
        """A catalog entry (created_at set: the clients take a provider without it for one to create, Provider#exist?)."""
        hosted = layout.hosted(p["url"], self.key(number, p["name"], p["architecture"]))
        url = layout.url(self.base_url, self.key(number, p["name"], p["architecture"])) if hosted else p["url"]
        return ProviderView(p["name"], p["architecture"], p["default_architecture"], hosted, p.get("checksum"),
                            p.get("checksum_type"), url, recorded.created_at, recorded.updated_at, uploaded=hosted)

    def _provider_view(self, number: str, p: ProviderRecord) -> ProviderView:
        got = p.uploaded
        url = p.url or (layout.url(self.base_url, self.key(number, p.name, p.arch)) if got else None)
        return ProviderView(p.name, p.arch, p.default_architecture, p.url is None, p.checksum or (got.checksum if got else None),
                            p.checksum_type or (got.checksum_type if got else None), url, p.created_at, p.updated_at,
                            uploaded=got is not None)

    def version(self, number: str) -> VersionView:
        found = (self.view() or BoxView(self.name, None, None, False, "", "", [])).version(number)
        if found is None:
            raise self._missing(number)
        return found

    def provider(self, number: str, name: str, architecture: str | None) -> ProviderView:
        found = next((p for p in self.version(number).providers
                      if p.name == name and architecture in (None, p.architecture)), None)
        if found is None:
            raise self._missing(number, name, architecture)
        return found

    def _active(self, number: str) -> bool:
        return any(catalog.version_key(v["version"]) == catalog.version_key(number)
                   for v in (self.catalog.read() or {}).get("versions", []))

    # --- the box ---------------------------------------------------------------------------------------------

    def create(self, short_description: Any = None, description: Any = None, private: Any = None) -> None:
        """Create the box, and make it private first unless asked otherwise (is_private defaults to true: v1.mdx and
        v2.mdx, "Create a box"; neither gem sends it unless told) or its organisation was made public; one that
        is there is updated (several clients may publish one box at once)."""
        short, text_, flag = optional_text(short_description, "short_description"), optional_text(description, "description"), \
            optional_flag(private, "is_private")
        if flag is None and self.view() is None:
            flag = access.said(self.store, self.name.split("/")[0]) is not False
        if flag is not None:  # before anything of a new private box is written
            access.set_visibility(self.store, self.name, flag)
        self.record.update(lambda doc: _described(doc or BoxRecord(), short, text_))
        self._describe_catalog(text_)

    def update(self, short_description: Any = None, description: Any = None, private: Any = None) -> None:
        """Change the descriptions and visibility of a box that is there (nothing, when it is not)."""
        short, text_, flag = optional_text(short_description, "short_description"), optional_text(description, "description"), \
            optional_flag(private, "is_private")

        def change(doc: BoxRecord | None) -> BoxRecord:
            if doc is None and self.catalog.read() is None:
                raise self._missing()
            return _described(doc or BoxRecord(), short, text_)

        self.record.update(change)
        self._describe_catalog(text_)
        if flag is not None:
            access.set_visibility(self.store, self.name, flag)

    def _describe_catalog(self, description: str | None) -> None:
        """The box's description where Vagrant and the pages read it too: its catalog's, when it has one."""
        if description is None or self.catalog.read() is None:
            return

        def change(doc: Catalog | None) -> Catalog:
            if doc is None or doc.get("description") == description:
                raise Unchanged
            return {**doc, "description": description}

        self.catalog.update(change)

    def delete(self) -> BoxView:
        """Every version (the catalog first), then the record, the catalog and the visibility."""
        with lease.held(self.store, self.name):
            view = self.view()
            if view is None:
                raise self._missing()
            for v in view.versions:
                self._delete_version(v)
            for key in layout.catalog_keys(self.name, self.store.nested):
                self.store.delete(key)
            self.record.update(lambda doc: None)
            self.store.delete(layout.visibility_key(self.name))
        return view

    def adopt(self, short_description: str | None, description: str | None,
              versions: dict[str, tuple[str, list[tuple[str, str, bool, Uploaded]]]], described: dict[str, str | None]) -> None:
        """What a mirrored box's source held beyond its catalog: its descriptions, and each version not released there
        (unreleased, or revoked) with its status and the boxes placed for it (provider, architecture, default, the
        upload), so that boxpack serve's API lists, releases or deletes them as the source could."""
        def change(doc: BoxRecord | None) -> BoxRecord:
            doc = _described(doc or BoxRecord(), short_description, description)
            for number, (status, boxes) in versions.items():
                v = doc.versions.setdefault(number, VersionRecord())
                v.status = "released" if status == "revoked" else "unreleased"  # revoked: released, and not in the catalog
                v.description = described.get(number) or v.description
                got = [ProviderRecord(p, arch, default, uploaded=up) for p, arch, default, up in boxes]
                v.providers = got + [p for p in v.providers if not any((g.name, g.arch) == (p.name, p.arch) for g in got)]
            return doc

        self.record.update(change)

    # --- versions ---------------------------------------------------------------------------------------------

    def add_version(self, number: Any, description: Any = None) -> VersionView:
        """A new unreleased version; one that is there already is updated (an idempotent create)."""
        number, described = check_version(number), optional_text(description, "description")
        if self.view() is None:
            raise self._missing()

        def change(doc: BoxRecord | None) -> BoxRecord:
            doc = doc or BoxRecord()
            v = doc.versions.setdefault(number, VersionRecord())
            if described is not None:
                v.description = described
            v.updated_at = doc.updated_at = now()
            return doc

        self.record.update(change)
        if described is not None and self._active(number):
            self.catalog.update(lambda doc: _describe(doc, number, described))
        return self.version(number)

    def release(self, number: str) -> VersionView:
        """The version's ready providers into the catalog, in one write: a checked upload the store still holds,
        or a URL with its checksum. One still uploading joins when its upload is placed (several `vagrant
        cloud publish` runs fill one version at once, and the first to finish releases it). Releasing a
        released version is done."""
        check_version(number)
        with lease.held(self.store, self.name):
            record = self.record.read()
            v = record.versions.get(number) if record else None
            if v is None or self._active(number):
                return self.version(number)  # NotFound, or in the catalog already
            ready = self._ready(number, v)
            described = record.description if record else None
            self.catalog.update(lambda doc: _box_described(self._with(doc, number, v.description, ready), described))
            self.record.update(lambda doc: _status(doc, number, "released"))
        return self.version(number)

    def _ready(self, number: str, v: VersionRecord) -> list[ProviderRecord]:
        """The providers a release takes: those at a URL (with their checksum if one was given, as HCP releases
        them: Packer's box_download_url gives none), and uploads the store still holds."""
        ready = []
        for p in v.providers:
            if p.url is not None or (p.uploaded is not None and self._holds(self.key(number, p.name, p.arch), p.uploaded)):
                ready.append(p)
        if not ready:
            why = "; ".join(f"the upload of {p.name} {p.arch} was refused: {p.refused}" for p in v.providers if p.refused)
            raise Invalid(f"{self.name} {number}: no box was uploaded for it{f' ({why})' if why else ''}" if v.providers
                          else f"{self.name} {number} has no provider to release")
        return ready

    def _holds(self, key: str, uploaded: Uploaded) -> bool:
        """Whether the store holds the uploaded box at key: beside its checksum file, and (when recorded) the very
        object committed then."""
        there = self.store.stat(key)
        line = (self.store.get(layout.sidecar_key(key, uploaded.checksum_type), layout.SIDECAR_LIMIT) or (None,))[0]
        return (there is not None and line == layout.sidecar(uploaded.checksum)
                and uploaded.etag in (None, there.etag))

    def _with(self, doc: Catalog | None, number: str, description: str | None, providers: list[ProviderRecord]) -> Catalog:
        index = catalog.Index(doc, self.name)
        for p in sorted(providers, key=lambda p: p.default_architecture):  # a default added last stays the default
            got = p.uploaded
            index.add(version=number, provider=p.name, url=p.url or layout.url(self.base_url, self.key(number, p.name, p.arch)),
                      checksum=got.checksum if got else p.checksum, checksum_type=(got.checksum_type if got else
                      p.checksum_type) or "sha256", architecture=p.arch, default_architecture=p.default_architecture, force=True)
        doc = index.catalog()
        return _describe(doc, number, description) if description else doc

    def revoke(self, number: str) -> VersionView:
        """Out of the catalog (Vagrant no longer sees it); kept in the record, with its providers, as revoked."""
        check_version(number)
        with lease.held(self.store, self.name):
            released = next((v for v in (self.catalog.read() or {}).get("versions", [])
                             if catalog.version_key(v["version"]) == catalog.version_key(number)), None)
            if released is None:
                self.version(number)
                raise Invalid(f"{self.name} {number} is not released")
            self.record.update(lambda doc: self._kept(doc, released))  # first: killed here, it is as it was
            withdraw(self.catalog, lambda v, p: v["version"] == released["version"], delete_boxes=False)
            self.record.update(lambda doc: _status(doc, released["version"], "revoked"))
        return self.version(number)

    def _kept(self, doc: BoxRecord | None, released: dict) -> BoxRecord:
        """The record with a released version's entries as its providers (and those still pending)."""
        doc = doc or BoxRecord()
        v = doc.versions.setdefault(released["version"], VersionRecord())
        v.status, v.description, v.updated_at = "released", released.get("description"), now()
        entries = [self._entry_record(released["version"], p) for p in released["providers"]]
        v.providers = entries + [p for p in v.providers if not any(e.name == p.name and e.arch == p.arch for e in entries)]
        return doc

    def _entry_record(self, number: str, p: dict) -> ProviderRecord:
        key = self.key(number, p["name"], p["architecture"])
        if not layout.hosted(p["url"], key):
            return ProviderRecord(p["name"], p["architecture"], p["default_architecture"], p.get("checksum"),
                                  p.get("checksum_type"), p["url"])
        there = self.store.stat(key)
        got = Uploaded(p["checksum_type"], p["checksum"], there.size if there else None, p["architecture"],
                       there.etag if there else None)
        return ProviderRecord(p["name"], p["architecture"], p["default_architecture"], uploaded=got)

    def delete_version(self, number: str) -> VersionView:
        """Out of the catalog first, then its boxes and checksum files, then out of the record."""
        check_version(number)
        with lease.held(self.store, self.name):
            found = self.version(number)
            self._delete_version(found)
        return found

    def _delete_version(self, v: VersionView) -> None:
        hosted = [(v.version, p.name, p.architecture) for p in v.providers if p.hosted]
        withdraw(self.catalog, lambda c, _: c["version"] == v.version, delete_boxes=True, more=hosted)
        self.record.update(lambda doc: _without_version(doc, v.version))

    # --- providers ---------------------------------------------------------------------------------------------

    def set_provider(self, number: str, name: str, architecture: str | None, fields: dict[str, Any],
                     create: bool) -> ProviderView:
        """Create or update a provider (of a released version, a new one goes live when its box is placed).
        fields: as provider_fields() takes them."""
        check_version(number)
        check_provider(name)
        changes = provider_fields(fields)
        new_arch = changes.pop("architecture", architecture)
        self.version(number)

        def change(doc: BoxRecord | None) -> BoxRecord:
            doc = doc or BoxRecord()
            v = doc.versions.setdefault(number, VersionRecord())
            found = v.provider(name, architecture)
            if found is None and not create:
                raise self._missing(number, name, architecture)
            if found is None:
                found = ProviderRecord(name, new_arch)
                v.providers.append(found)
            found.architecture = new_arch if new_arch is not None else found.architecture
            _changed(found, changes)
            v.updated_at = doc.updated_at = now()
            return doc

        self.record.update(change)
        return self.provider(number, name, new_arch or architecture)

    def delete_provider(self, number: str, name: str, architecture: str | None) -> ProviderView:
        check_version(number)
        with lease.held(self.store, self.name):
            found = self.provider(number, name, architecture)
            arch = found.architecture
            withdraw(self.catalog, lambda v, p: v["version"] == number and p["name"] == name and p["architecture"] == arch,
                     delete_boxes=True, more=[(number, name, arch)] if found.hosted else [])
            self.record.update(lambda doc: _without_provider(doc, number, name, arch))
        return found

    # --- uploads -------------------------------------------------------------------------------------------------

    def ticket(self, number: str, name: str, architecture: str | None, token_id: str) -> str:
        """An upload URL's secret: whoever has it may upload that provider's box, for UPLOAD_SECONDS, while the
        token that asked for it is valid."""
        check_version(number)
        self.provider(number, name, architecture)
        secret = secrets.token_hex(16)
        ticket = Ticket(self.name, number, name, architecture, token_id, time.time() + UPLOAD_SECONDS)
        Versioned(self.store, layout.upload_key(secret), decode_ticket, encode_ticket).update(lambda _: ticket)
        return secret

    def receive(self, ticket: Ticket, chunks: Iterator[bytes]) -> Uploaded:
        """The box's bytes, checked as they stream, placed at its key: Invalid (and nothing stays) when they are
        not the declared box, Conflict when its box, version or provider went, or its version was released with
        another box, while it streamed."""
        number, name = ticket.version, ticket.provider
        declared = self.provider(number, name, ticket.architecture)
        if not declared.hosted:
            raise Invalid(f"{self.name} {number} {name}: its box is at {declared.url}, not uploaded")
        key = self.key(number, name, declared.architecture)
        if self._named(number, name, declared.architecture):
            raise Conflict(f"{self.name} {number} {name} {declared.architecture} is released; revoke the version first")
        kind = declared.checksum_type or "sha256"
        self.catalog.prepare()  # before any key under the box's name (SeaweedFS)
        upload = self.store.upload(key, resume=False)  # never another upload's: two may run at once
        try:
            digest = _stream(upload, chunks, kind, f"{self.name} {number} {name}", name, ticket.architecture, declared)
            with lease.held(self.store, self.name):
                return self._place(upload, number, name, declared.architecture, kind, digest)
        except BaseException:
            upload.abort()
            raise

    def refused(self, secret: str, ticket: Ticket, why: str | None) -> None:
        """An upload that was not taken: why, kept with its ticket (the direct upload's callback answers with it: the
        clients upload with `curl --fail`, which shows a status only) and with its provider (for a release); None
        once an upload to the ticket was taken."""
        Versioned(self.store, layout.upload_key(secret), decode_ticket, encode_ticket).update(
            lambda t: dataclasses.replace(t, refused=why) if t else None)

        def change(doc: BoxRecord | None) -> BoxRecord:
            found = doc.versions[ticket.version].provider(ticket.provider, ticket.architecture) \
                if doc and ticket.version in doc.versions else None
            if doc is None or found is None or (why is None and found.refused is None):
                raise Unchanged
            found.refused = why
            return doc

        self.record.update(change)

    def _named(self, number: str, name: str, arch: str) -> bool:
        doc = self.catalog.read()
        return doc is not None and catalog.Index(doc, self.name).entry(number, name, arch) is not None

    def _place(self, upload: Upload, number: str, name: str, arch: str, kind: str, digest: str) -> Uploaded:
        """Under the lease: the box at its key if it is still wanted there, its record, and, in a released
        version, its entry."""
        record = self.record.read()
        v = record.versions.get(number) if record else None
        found = v.provider(name, arch) if v else None
        if found is None:
            raise Conflict(f"{self.name} {number} {name} {arch} was deleted while its box was uploaded; nothing was kept")
        if found.checksum and found.checksum != digest:
            raise Conflict(f"{self.name} {number} {name} {arch}: its checksum was changed while its box was uploaded")
        if self._named(number, name, arch):
            raise Conflict(f"{self.name} {number} {name} {arch} was released with another box while this one was "
                           "uploaded; revoke the version first")
        Publisher(self.store, self.name, self.base_url, force=True).finish(upload, number, name, arch, kind, digest)
        there = self.store.stat(self.key(number, name, arch))
        uploaded = Uploaded(kind, digest, upload.size, arch, there.etag if there else None)
        doc = self.record.update(lambda doc: _with_upload(doc, number, name, arch, uploaded))
        if self._active(number) and doc is not None:  # released before it was placed: live now
            joined = doc.versions[number].provider(name, arch)
            self.catalog.update(lambda c: self._with(c, number, None, [joined] if joined else []))
        return uploaded


def _stream(upload: Upload, chunks: Iterator[bytes], kind: str, label: str, provider: str, architecture: str | None,
            declared: ProviderView) -> str:
    """The chunks into upload, hashed and read by verify on the way; their digest, or Invalid."""
    digest, check = hashlib.new(kind), StreamCheck(label)
    try:
        for chunk in chunks:
            digest.update(chunk)
            upload.write(chunk)
            check.write(chunk)
    finally:
        report = check.close()
    problem = _box_problem(report, check.failure, provider, architecture, declared, digest.hexdigest(), kind)
    if problem:
        raise Invalid(problem)
    return digest.hexdigest()


def _box_problem(report: Any, failure: str | None, name: str, architecture: str | None, declared: ProviderView,
                 actual: str, kind: str) -> str | None:
    """Why an uploaded box cannot be released, or None."""
    if declared.checksum and declared.checksum != actual:
        return f"the upload's {kind} is {actual}, but the provider's checksum is {declared.checksum} (a wrong or cut-short upload)"
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


def names(store: Store) -> set[str]:
    """Every ORG/NAME the store holds a catalog or an API record of (catalogs: the api/v2 copies where keys nest,
    else the catalog files)."""
    found = set()
    if store.nested:
        prefix = layout.API_PREFIX + "/"
        found |= {key.removeprefix(prefix) for key in store.list(prefix) if key.count("/") == 4}
    else:
        for key in store.list(""):
            parts = key.split("/")
            if len(parts) == 3 and parts[2] == layout.CATALOG_FILE and not key.startswith(layout.PRIVATE_PREFIX):
                found.add("/".join(parts[:2]))
    prefix = layout.record_key("x/x").removesuffix("x/x.json")
    recorded = (key.removeprefix(prefix) for key in store.list(prefix))
    return found | {k.removesuffix(".json") for k in recorded if k.count("/") == 1 and k.endswith(".json")}


def ticket(store: Store, secret: str) -> Ticket | None:
    """What an upload URL's secret may upload, while it works; None for one that is not (or no more)."""
    if not layout.TICKET.fullmatch(secret):
        return None
    found = Versioned(store, layout.upload_key(secret), decode_ticket, encode_ticket).read()
    return found if found and found.expires > time.time() else None


# --- record changes ----------------------------------------------------------------------------------------------

def _described(doc: BoxRecord, short: str | None, description: str | None) -> BoxRecord:
    if short is not None:
        doc.short_description = short
    if description is not None:
        doc.description = description
    doc.updated_at = now()
    return doc


def _changed(p: ProviderRecord, changes: dict[str, Any]) -> None:
    for attr in ("url", "default_architecture", "checksum_type"):
        if attr in changes:
            setattr(p, attr, changes[attr])
    if "checksum" in changes:
        p.checksum = changes["checksum"]
        if p.uploaded and p.uploaded.checksum != p.checksum:
            p.uploaded = None  # an upload that is not this box any more
    p.updated_at = now()


def _with_upload(doc: BoxRecord | None, number: str, name: str, arch: str, uploaded: Uploaded) -> BoxRecord:
    found = doc.versions[number].provider(name, arch) if doc and number in doc.versions else None
    if doc is None or found is None:
        raise Conflict(f"{number} {name} {arch} was deleted while its box was placed")
    found.uploaded, found.refused, found.updated_at = uploaded, None, now()
    return doc


def _describe(doc: Catalog | None, number: str, description: str) -> Catalog:
    if doc is None:
        raise Unchanged
    for v in doc["versions"]:
        if catalog.version_key(v["version"]) == catalog.version_key(number):
            v["description"] = description
    return doc


def _box_described(doc: Catalog, description: str | None) -> Catalog:
    if description and not doc.get("description"):
        doc["description"] = description
    return doc


def _status(doc: BoxRecord | None, number: str, status: str) -> BoxRecord:
    if doc is None or number not in doc.versions:
        raise Unchanged
    doc.versions[number].status = status
    return doc


def _without_version(doc: BoxRecord | None, number: str) -> BoxRecord:
    if doc is None or number not in doc.versions:
        raise Unchanged
    del doc.versions[number]
    return doc


def _without_provider(doc: BoxRecord | None, number: str, name: str, arch: str) -> BoxRecord:
    v = doc.versions.get(number) if doc else None
    if doc is None or v is None:
        raise Unchanged
    v.providers = [p for p in v.providers if not (p.name == name and p.arch == arch)]
    return doc
