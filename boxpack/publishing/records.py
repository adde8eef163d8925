"""What the Vagrant Cloud API knows of a box beyond its catalog, as typed records, and how they are kept as JSON.

The catalog holds exactly the released versions (what Vagrant reads). A box's record (.boxpack/boxes/ORG/NAME.json,
layout.py) holds its descriptions and each version the catalog does not (not released yet, or revoked), with
its providers as their clients declared them and as their uploads turned out; an upload URL's ticket
(.boxpack/uploads/TICKET.json) what its holder may upload. Structs only: boxes.py changes them.
"""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass, field
from typing import Any

from ..catalog import UNKNOWN_ARCH, version_key
from ..errors import BadInput
from .versioned import json_bytes, json_object


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Uploaded:
    """A box received through the API and checked: its digest, size, and what the store named it when committed."""

    checksum_type: str
    checksum: str
    size: int | None
    architecture: str
    etag: str | None = None  # Stat.etag of the object as committed: a later upload over it is told apart


@dataclass
class ProviderRecord:
    """One provider of one version: what its client declared, and what its upload turned out to be."""

    name: str
    architecture: str | None = None  # None: not given (API v1): unknown
    default_architecture: bool = False
    checksum: str | None = None  # declared
    checksum_type: str | None = None
    url: str | None = None  # a box hosted elsewhere (HCP's hosted: false), never uploaded
    uploaded: Uploaded | None = None
    refused: str | None = None  # why its last upload was not taken, for the release that finds no box to say
    created_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)

    @property
    def arch(self) -> str:
        return self.architecture or UNKNOWN_ARCH


@dataclass
class VersionRecord:
    """A version the catalog does not hold (or holds, with what its providers were declared as)."""

    status: str = "unreleased"  # unreleased, released (then revoked once the catalog lacks it), revoked
    description: str | None = None
    providers: list[ProviderRecord] = field(default_factory=list)
    created_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)

    def provider(self, name: str, architecture: str | None) -> ProviderRecord | None:
        """The provider of this name (and architecture, when given)."""
        return next((p for p in self.providers if p.name == name and (architecture is None or p.arch == architecture)), None)


@dataclass
class BoxRecord:
    short_description: str | None = None
    description: str | None = None
    versions: dict[str, VersionRecord] = field(default_factory=dict)
    created_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)


@dataclass(frozen=True)
class Ticket:
    """What an upload URL's secret lets its holder upload, asked for by which token, until when (epoch seconds)."""

    name: str
    version: str
    provider: str
    architecture: str | None
    token: str
    expires: float
    refused: str | None = None  # why the box uploaded to it was not taken: its callback answers with it


def _fields(cls: type, doc: Any, where: str) -> dict[str, Any]:
    """doc's values for cls's fields, each of the type the field is written with (a hand-edited or old record
    with others is refused in one line)."""
    if not isinstance(doc, dict):
        raise BadInput(f"{where}: not a {cls.__name__} object; it was left as it is")
    known = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in doc.items() if k in known}


def _provider(doc: Any, where: str) -> ProviderRecord:
    values = _fields(ProviderRecord, doc, where)
    uploaded = values.get("uploaded")
    try:
        values["uploaded"] = Uploaded(**_fields(Uploaded, uploaded, where)) if uploaded is not None else None
        return ProviderRecord(**values)
    except TypeError:
        raise BadInput(f"{where}: a provider record without a name; it was left as it is") from None


def _version(doc: Any, where: str) -> VersionRecord:
    values = _fields(VersionRecord, doc, where)
    values["providers"] = [_provider(p, where) for p in values.get("providers") or []]
    return VersionRecord(**values)


def decode_box(data: bytes, where: str) -> BoxRecord:
    values = _fields(BoxRecord, json_object(data, where), where)
    versions = values.get("versions") or {}
    if not isinstance(versions, dict):
        raise BadInput(f"{where}: versions is not an object; it was left as it is")
    values["versions"] = {str(k): _version(v, where) for k, v in versions.items()}
    return BoxRecord(**values)


def encode_box(record: BoxRecord) -> bytes:
    return json_bytes(dataclasses.asdict(record))


def decode_ticket(data: bytes, where: str) -> Ticket:
    try:
        return Ticket(**_fields(Ticket, json_object(data, where), where))
    except TypeError:
        raise BadInput(f"{where}: not an upload ticket; it was left as it is") from None


def encode_ticket(ticket: Ticket) -> bytes:
    return json_bytes(dataclasses.asdict(ticket))


# --- what the API shows: the record and the catalog read together (boxes.py makes them) ------------------------

@dataclass
class ProviderView:
    name: str
    architecture: str
    default_architecture: bool
    hosted: bool  # its box is in the store (uploaded or published); else at url, elsewhere
    checksum: str | None
    checksum_type: str | None
    url: str | None  # where Vagrant downloads it: this server's (hosted) or the one given (not hosted)
    created_at: str
    updated_at: str
    uploaded: bool = False  # hosted, and the box is there and checked


@dataclass
class VersionView:
    version: str
    status: str  # active (the catalog holds it), unreleased, revoked
    description: str | None
    providers: list[ProviderView]
    created_at: str
    updated_at: str


@dataclass
class BoxView:
    name: str
    short_description: str | None
    description: str | None
    private: bool
    created_at: str
    updated_at: str
    versions: list[VersionView]  # the newest first

    def version(self, number: str) -> VersionView | None:
        return next((v for v in self.versions if version_key(v.version) == version_key(number)), None)
