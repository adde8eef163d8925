"""Taking boxes back: entries out of a published catalog, then the boxes no catalog names any more.

One withdraw for every way boxes leave: `boxpack catalog remove` (a yank), `boxpack catalog prune` (retention)
and the API's deletions and revocations (boxes.py). The catalog changes first, in one conditional write, so
Vagrant never sees an entry whose box is gone; each box is deleted only if the catalog, read again after the
write, does not name it (published again meanwhile). A dry run is the same code over stores/dryrun.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .. import catalog
from ..catalog import CHECKSUM_TYPES, Catalog
from ..errors import BadInput, BadOption
from . import layout, lease
from .publish import PublishedCatalog, published
from .records import BoxRecord, decode_box, encode_box
from .stores.base import Store
from .versioned import Unchanged, Versioned

Box = tuple[str, str, str]  # version, provider, architecture


@dataclass
class Withdrawn:
    catalog: Catalog | None  # as left
    removed: list[tuple[str, dict]] = field(default_factory=list)  # (version, entry) taken out
    deleted: list[str] = field(default_factory=list)  # keys deleted after


def withdraw(published_: PublishedCatalog, match: Callable[[dict, dict], bool], *, delete_boxes: bool,
             more: Iterable[Box] = ()) -> Withdrawn:
    """The entries match(version, entry) takes, out of the catalog in one write; with delete_boxes, then their
    boxes and checksum files, and those of more (boxes no entry named: an API version not released)."""
    result = Withdrawn(None)

    def change(doc: Catalog | None) -> Catalog:
        if doc is None:
            raise Unchanged
        new, result.removed = catalog.without(doc, match)
        if not result.removed:
            raise Unchanged
        return new

    result.catalog = published_.update(change)
    if delete_boxes:
        gone = {(v, p["name"], p["architecture"]) for v, p in result.removed} | set(more)
        result.deleted = delete_unnamed(published_, gone)
        forget(published_.store, published_.name, gone)
    return result


def forget(store: Store, name: str, boxes: Iterable[Box]) -> None:
    """The boxes out of the API's record of the box too (a version left without one goes), so that it does not
    list, or release again, what is gone."""
    gone = set(boxes)

    def change(doc: BoxRecord | None) -> BoxRecord:
        hit = {n for n, v in (doc.versions.items() if doc else ()) for p in v.providers if (n, p.name, p.arch) in gone}
        if doc is None or not hit:
            raise Unchanged
        for n in hit:
            v = doc.versions[n]
            v.providers = [p for p in v.providers if (n, p.name, p.arch) not in gone]
            if not v.providers:
                del doc.versions[n]
        return doc

    if gone:
        Versioned(store, layout.record_key(name), decode_box, encode_box).update(change)


def delete_unnamed(published_: PublishedCatalog, boxes: Iterable[Box]) -> list[str]:
    """Each box's key and checksum files, unless the catalog names it; returns the keys deleted."""
    store, name = published_.store, published_.name
    named = catalog.Index(published_.read(), name)
    deleted = []
    for version, provider, arch in sorted(set(boxes)):
        if named.entry(version, provider, arch) is not None:
            continue  # published again meanwhile
        key = layout.box_key(name, version, provider, arch)
        for k in (key, *(layout.sidecar_key(key, t) for t in CHECKSUM_TYPES)):
            if store.stat(k) is not None:
                store.delete(k)
                deleted.append(k)
    return deleted


def yank(location: str, version: str, provider: str | None = None, architecture: str | None = None, *,
         delete_boxes: bool = False, endpoint_url: str | None = None) -> tuple[Catalog, list[str]]:
    """Take entries out of a published catalog; with delete_boxes, then delete their boxes and checksum files
    (those in boxpack's layout under the same target). Returns the catalog and the keys deleted."""
    published_ = published(location, endpoint_url)

    def match(v: dict, p: dict) -> bool:
        return (catalog.version_key(v["version"]) == catalog.version_key(version) and provider in (None, p["name"])
                and architecture in (None, p["architecture"]))

    with lease.held(published_.store, published_.name):
        done = withdraw(published_, match, delete_boxes=delete_boxes)
    if done.catalog is None:
        raise BadInput(f"{location}: no such catalog")
    if not done.removed:
        what = " ".join(x for x in (provider, architecture) if x)
        raise BadOption(f"the catalog has no {what + ' ' if what else ''}entry in version {version}")
    return done.catalog, done.deleted


@dataclass
class Pruned:
    versions: list[str]  # taken out of the catalog
    deleted: list[str]  # keys deleted after


def prune(store: Store, name: str, keep: int | None = None, keep_days: float | None = None) -> Pruned:
    """The versions beyond the newest `keep`, or whose boxes are all older than `keep_days` (both given: a version
    goes when either says so; the newest always stays), withdrawn with their boxes. Over a dry-run store, what
    would go."""
    if keep is None and keep_days is None:
        raise BadOption("say what to keep: --keep N, --keep-days DAYS, or both")
    if keep is not None and keep < 1:
        raise BadOption("--keep must be at least 1: the newest version stays")
    published_ = PublishedCatalog(store, name)
    doc = published_.read()
    if doc is None:
        raise BadInput(f"{store.where}: no catalog for {name}")
    cut = _old(store, name, doc, keep, keep_days)
    if not cut:
        return Pruned([], [])
    with lease.held(store, name):
        done = withdraw(published_, lambda v, p: catalog.version_key(v["version"]) in cut, delete_boxes=True)
    versions = sorted({v for v, _ in done.removed}, key=catalog.version_key)
    return Pruned(versions, done.deleted)


def _old(store: Store, name: str, doc: Catalog, keep: int | None, keep_days: float | None) -> set[tuple]:
    """The version keys to prune: beyond the newest keep, or with every box older than keep_days."""
    versions = doc["versions"]  # oldest first
    cut = {catalog.version_key(v["version"]) for v in (versions[:-keep] if keep is not None else [])}
    if keep_days is not None:
        limit = time.time() - keep_days * 86400
        for v in versions[:-1]:
            dates = [s.modified for p in v["providers"]
                     if (s := store.stat(layout.box_key(name, v["version"], p["name"], p["architecture"])))]
            if dates and max(dates) < limit:
                cut.add(catalog.version_key(v["version"]))
    return cut
