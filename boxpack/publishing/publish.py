"""boxpack publish: boxes and their catalog onto storage the user owns, where `vagrant box add ORG/NAME` finds them.

The order of writes keeps every catalog true (it never names a missing, partial or wrong box),
whatever is killed when, and whoever else publishes at the same time:

1. each box goes to its key (layout.py has every key) as a multipart upload or a temporary file: nothing
   is visible yet;
2. the key is claimed by writing its checksum file only if there is none (If-None-Match: * on S3,
   a hard link in a directory). A checksum file naming another box means the key holds another box:
   refused unless --force. The same checksum means the same bytes: that box is reused;
3. the box is committed and the store's size (and, on S3, its ETag) checked against what was sent;
4. last, the catalog gains every entry of the run in one conditional write (ETag If-Match on S3, the
   catalog lock in a directory), done again on the new catalog when another publisher wrote first
   (PublishedCatalog, the one loop every change of a published catalog goes through). Each entry is
   made from what the store holds then: the key still holds the object this run wrote or found (its
   ETag, or a file's inode and mtime) beside this checksum file, else the run fails and the catalog
   is left as it was (another --force publisher replaced the box meanwhile).

With --force, an entry that names a box about to be replaced leaves the catalog before the box is
rewritten, its checksum file goes while the key changes (a run killed then leaves a box without
one, which nothing trusts), and both come back, the entry with the new checksum in step 4. boxpack mirror publishes through the same
Publisher; a dry run is the same code over a store that writes nowhere (stores/dryrun.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import catalog, signatures
from ..catalog import CHECKSUM_TYPES, UNKNOWN_ARCH, Catalog
from ..errors import BadInput, BadOption, BoxpackError, InternalError, OutputFailed
from ..metadata import text
from ..sources.box import read_metadata
from . import access, layout, lease
from .layout import CATALOG_CACHE, CATALOG_LIMIT, SIDECAR_LIMIT
from .stores import open_target
from .stores.base import Stat, Store, Upload
from .stores.dryrun import DryRunStore
from .versioned import Unchanged, Versioned

CHUNK = 1024 * 1024
CATALOG_RETRIES = 20


@dataclass
class PublishOptions:
    """Where and as what boxes are published.

    target is s3://bucket/prefix or a directory; base_url the public HTTP address of that target (a
    bucket endpoint, a CDN, the web server), from which the catalog's URLs are made; endpoint_url an
    S3-compatible endpoint (else AWS_ENDPOINT_URL, the AWS profile, or AWS itself). dry_run reads the
    target but writes nothing.
    """

    target: str
    name: str
    version: str
    base_url: str
    force: bool = False
    default_architecture: bool = False
    description: str | None = None
    endpoint_url: str | None = None
    dry_run: bool = False
    private: bool = False  # boxpack serve asks for a token that may read it; set before anything is written
    sign_key: str | None = None  # each box signed with it (signatures.py), the signature beside it


@dataclass
class PublishedBox:
    version: str
    provider: str
    architecture: str
    key: str
    url: str
    size: int
    checksum_type: str
    checksum: str
    action: str  # "uploaded", "resumed" (an interrupted upload's parts were reused), "unchanged", or with dry_run "planned"
    resumed_bytes: int = 0
    default: bool = False  # asks to be its provider's default architecture
    listed: bool = True  # goes into the catalog (a mirrored version not released on its source does not)


@dataclass
class PublishResult:
    target: str
    name: str
    version: str
    catalog_urls: list[str]
    boxes: list[PublishedBox] = field(default_factory=list)
    catalog: Catalog | None = None
    dry_run: bool = False
    changed: bool = True  # False when the catalog was already as the run left it

    def to_json(self) -> dict[str, Any]:
        """As schemas/publish-result.schema.json describes it."""
        boxes = [{k: v for k, v in dataclasses.asdict(b).items() if k not in ("version", "default", "listed")} for b in self.boxes]
        return {"target": self.target, "name": self.name, "version": self.version, "dry_run": self.dry_run,
                "catalog_urls": self.catalog_urls, "boxes": boxes, "catalog": self.catalog}


def entry(doc: Catalog | None, version: str, provider: str, architecture: str) -> dict | None:
    """The catalog's entry for version, provider and architecture, if any (one lookup; a run keeps an Index)."""
    return catalog.Index(doc, doc["name"]).entry(version, provider, architecture) if doc else None


class PublishedCatalog(Versioned[Catalog]):
    """A box's catalog in a store, and its copies: read, and changed so that no concurrent change is lost
    (versioned.py's loop).

    Its copies (the api/v2 one, where a key may also be a prefix) follow each write, under the box's lease (see
    update()), each written only if it is still the version this writer read of it before reading the catalog.
    A store writes one object at a time: a run killed between the two leaves the copies one update behind (still
    true), and prepare() brings them up before the next run sends anything."""

    def __init__(self, store: Store, name: str) -> None:
        key, *self.copies = layout.catalog_keys(name, store.nested)
        super().__init__(store, key, catalog.parse, self._encode, limit=CATALOG_LIMIT, cache=CATALOG_CACHE)
        self.name = name

    def _encode(self, doc: Catalog) -> bytes:
        data = catalog.dumps(doc)
        if len(data) > CATALOG_LIMIT:  # written, it could never be read again, by Vagrant or by boxpack
            raise OutputFailed(f"{self.where}: the catalog would be {len(data)} bytes, more than the {CATALOG_LIMIT} "
                               "Vagrant reads; it was left as it is (boxpack catalog prune removes old versions)")
        return data

    def update(self, change: Callable[[Catalog | None], Catalog | None]) -> Catalog | None:
        """Where the catalog has copies, under the box's lease (lease.py): a yank between this writer's catalog write
        and its copy could otherwise bring the copy back to a catalog it had just left, when the yank left the
        catalog as it had been before (the same bytes, so the same version to compare)."""
        if not self.copies:
            return super().update(change)
        with lease.held(self.store, self.name):
            return super().update(change)

    def refused_hint(self) -> str:
        return (f"; while no one else publishes, upload it once by hand: aws s3 cp catalog.json {self.where} "
                "--content-type application/json")

    def prepare(self) -> None:
        """Before the first box of a run, where keys nest: an empty catalog where there is none (SeaweedFS
        takes a key that other keys start with for an existing object in a conditional write, so once boxes
        lie under <org>/<box>/ the catalog could no longer be created safely), and copies brought up to it."""
        if not self.store.nested:
            return
        if self.store.get(self.key, CATALOG_LIMIT) is None:
            self.update(lambda doc: doc or {"name": self.name, "versions": []})
        else:
            self.written(b"")

    def written(self, data: bytes) -> None:
        for key in self.copies:
            for _ in range(CATALOG_RETRIES):
                there = self.store.get(key, CATALOG_LIMIT)  # first the copy's version, then the catalog
                now = self.store.get(self.key, CATALOG_LIMIT)
                if now is None or (there is not None and there[0] == now[0]):
                    break
                self.store.put(key, now[0], "application/json", CATALOG_CACHE, if_absent=there is None,
                               if_version=there[1] if there else None)
            else:
                raise OutputFailed(f"{self.where}: changed {CATALOG_RETRIES} times while its copies were written; run again")


class Publisher:
    """One run's boxes for one ORG/NAME: plan and open an upload per box, finish each, then commit once.
    Safe to use from several threads (boxpack mirror --jobs)."""

    def __init__(self, store: Store, name: str, base_url: str, *, force: bool = False,
                 default_architecture: bool = False, description: str | None = None, private: bool = False,
                 public: bool = False) -> None:
        catalog.check_entry(name, "0", layout.url(base_url, "x"))
        layout.box_key(name, "0", "x", "x")  # a name that cannot be a key is refused before anything is read
        self.store, self.name, self.base_url = store, name, base_url
        self.force, self.default_architecture, self.description = force, default_architecture, description
        self.private, self.public = private, public  # public: made so (a mirrored box its source says is public)
        self.short_description: str | None = None  # the source's, for the API's record (mirror)
        self.dry_run = isinstance(store, DryRunStore)
        self.catalog = PublishedCatalog(store, name)
        self.before = self.catalog.read()
        self._before = catalog.Index(self.before, name)
        self.catalog_urls = [layout.url(base_url, k) for k in layout.catalog_keys(name, store.nested)]
        self.boxes: list[PublishedBox] = []
        self.version_descriptions: dict[str, str] = {}
        self._planned: set[tuple[str, str, str]] = set()
        self._held: dict[str, str | None] = {}  # key -> the identity (Stat.etag) of what this run wrote or found there
        self._prepared = False
        self._lock = threading.Lock()

    def recorded(self, version: str, provider: str, architecture: str) -> dict | None:
        """The entry the catalog had when the run began, if any."""
        return self._before.entry(version, provider, architecture)

    def key(self, version: str, provider: str, architecture: str) -> str:
        return layout.box_key(self.name, version, provider, architecture)

    def plan(self, version: str, provider: str, architecture: str | None, checksum: str | None = None) -> bool:
        """Before any byte is sent: refuse a second box for the same version, provider and architecture,
        and one the catalog already has unless --force. True when the catalog has exactly this box. A box
        whose checksum is not known yet (being packed) is judged by finish(), on its checksum file: the same
        bytes again are a no-op, as a rerun of the same build should be."""
        arch = architecture or UNKNOWN_ARCH
        catalog.check_entry(self.name, version, self.base_url, architecture=arch)
        self.key(version, provider, arch)
        existing = self.recorded(version, provider, arch)
        same = bool(existing and checksum and existing.get("checksum") == checksum)
        if existing and not same and not self.force and checksum is not None:
            raise OutputFailed(f"{self.name} {version} already has a {provider} box for {arch} in {self.store.where}; "
                               "use --force to replace it")
        with self._lock:
            if (version, provider, arch) in self._planned:
                raise BadOption(f"two boxes for {self.name} {version} {provider} {arch} in one run")
            self._planned.add((version, provider, arch))
        return same

    def open(self, version: str, provider: str, architecture: str | None) -> Upload:
        """The stream a planned box is written to."""
        self._prepare()
        return self.store.upload(self.key(version, provider, architecture or UNKNOWN_ARCH))

    def _prepare(self) -> None:
        """Before anything of the run is written: a private box is made private, and the catalog made ready."""
        with self._lock:
            if not self._prepared:
                if self.private:
                    access.set_visibility(self.store, self.name, private=True)
                    public = self.store.anyone_reads(layout.visibility_key(self.name))
                    if public:
                        raise OutputFailed(f"{self.store.where}: anyone may read what is stored there (an anonymous "
                                           f"request read {public}), so a private box there would be public; make "
                                           "the bucket private (boxpack serve hands its boxes out) or publish without --private")
                elif self.public:
                    access.set_visibility(self.store, self.name, private=False)
                self.catalog.prepare()
                self._prepared = True

    def holds(self, version: str, provider: str, architecture: str, size: int, checksum_type: str, checksum: str) -> bool:
        """Whether the key holds a box of this size beside this checksum file: the catalog's word alone is not
        taken (a box deleted by hand, or one a killed --force run left half replaced, is sent again)."""
        there = self.found(self.key(version, provider, architecture), checksum_type, checksum)
        return there is not None and there.size == size

    def found(self, key: str, checksum_type: str, checksum: str) -> Stat | None:
        """What the store holds at key, when it is there beside this checksum file; else None."""
        there = self.store.stat(key)
        line = (self.store.get(layout.sidecar_key(key, checksum_type), SIDECAR_LIMIT) or (None,))[0]
        return there if line == layout.sidecar(checksum) else None

    def unchanged(self, version: str, provider: str, architecture: str, size: int, checksum_type: str, checksum: str,
                  default: bool = False, listed: bool = True, key: str | None = None) -> PublishedBox:
        """A box the target already holds, byte for byte: nothing is sent, and its entry is kept. With key, the box is
        another's (an alias: an entry naming another box's file, as HCP's publishers made them), named here too."""
        key = key or self.key(version, provider, architecture)
        box = PublishedBox(version, provider, architecture, key, layout.url(self.base_url, key), size, checksum_type,
                           checksum, "unchanged", default=default or self.default_architecture, listed=listed)
        self._hold(key)
        self.boxes.append(box)
        return box

    def _hold(self, key: str) -> None:
        there = self.store.stat(key)
        with self._lock:
            self._held[key] = there.etag if there else None

    def _still_held(self, box: PublishedBox) -> None:
        """Raise unless the key holds what this run wrote or found there, beside this box's checksum file."""
        there = self.found(box.key, box.checksum_type, box.checksum)
        if there is None or there.etag != self._held.get(box.key):
            raise OutputFailed(f"{self.store.where}: {box.key} was replaced or removed by another publisher after this "
                               "run wrote it; the catalog was left as it is (run again)")

    def finish(self, upload: Upload, version: str, provider: str, architecture: str | None, checksum_type: str,
               checksum: str, default: bool = False, listed: bool = True) -> PublishedBox:
        """Steps 2 and 3 for one box written to upload (listed False: placed, and left out of the catalog)."""
        arch = architecture or UNKNOWN_ARCH
        key = self.key(version, provider, arch)
        box = PublishedBox(version, provider, arch, key, layout.url(self.base_url, key), upload.size, checksum_type,
                           checksum, "uploaded", default=default or self.default_architecture, listed=listed)
        try:
            upload.close()
            there = self.store.stat(key)
            replacing = self._claim(upload, (version, provider, arch), there, checksum_type, checksum)
            if replacing is None:
                upload.abort()  # the same bytes are there already (a rerun after an interruption)
                box.action = "unchanged"
            elif self._place(upload, key, there, replacing, checksum_type, layout.sidecar(checksum)):
                box.action = "planned" if self.dry_run else "resumed" if upload.resumed else "uploaded"
                box.resumed_bytes = upload.resumed
            else:
                box.action = "unchanged"
        except BoxpackError:
            upload.abort()
            raise
        self._hold(key)
        self.boxes.append(box)
        return box

    def _claim(self, upload: Upload, box: tuple[str, str, str], there: Stat | None, checksum_type: str,
               checksum: str) -> bool | None:
        """Step 2: the key's checksum file, written only where there is none. None when the same bytes are there
        already; else whether the key holds another box, which only --force replaces (its entry leaves the
        catalog first, and no checksum file vouches for the key while it changes)."""
        key = self.key(*box)
        store, sidecar, line = self.store, layout.sidecar_key(key, checksum_type), layout.sidecar(checksum)
        claimed = store.put(sidecar, line, "text/plain", if_absent=True)
        theirs = line if claimed else (store.get(sidecar, SIDECAR_LIMIT) or (None,))[0]
        if not claimed and theirs == line and there is not None and there.size == upload.size:
            return None
        replacing = theirs != line or (claimed and there is not None)
        if replacing and not self.force:
            if claimed:
                store.delete(sidecar)
            what = (f"holds another box ({(theirs or b'').decode(errors='replace')[:16]}...)" if theirs != line
                    else "exists without a checksum file (not published by boxpack)")
            raise OutputFailed(f"{store.where}: {key} {what}; use --force to replace it")
        if replacing:
            self._withdraw(*box)
            store.delete(sidecar)
        return replacing

    def _place(self, upload: Upload, key: str, there: Stat | None, replacing: bool, checksum_type: str, line: bytes) -> bool:
        """Step 3: the box at its key. False when another publisher placed these same bytes first (the checksum
        file is this box's, and the key was taken between the look and the commit)."""
        store = self.store
        try:
            upload.commit(replace=there is not None)
        except OutputFailed:
            now = store.stat(key)
            if replacing or now is None or now.size != upload.size:
                raise
            upload.abort()
            return False
        if there is not None:
            for other in CHECKSUM_TYPES.keys() - {checksum_type}:  # another box's, of other types
                if store.stat(layout.sidecar_key(key, other)) is not None:
                    store.delete(layout.sidecar_key(key, other))
        if replacing:
            store.put(layout.sidecar_key(key, checksum_type), line, "text/plain")
        return True

    def signed(self, box: PublishedBox, signature: bytes) -> None:
        """A box's signature beside it, before the catalog names the box. One there already (another key's, or made
        before) is kept unless --force."""
        key = layout.signature_key(box.key)
        there = self.store.get(key, signatures.LIMIT)
        if there is None or (self.force and there[0] != signature):
            self.store.put(key, signature, "text/plain", CATALOG_CACHE)

    def _withdraw(self, version: str, provider: str, arch: str) -> None:
        """--force: the entry naming the box about to be replaced leaves the catalog first."""
        def change(doc: Catalog | None) -> Catalog:
            if doc is None or entry(doc, version, provider, arch) is None:
                raise Unchanged
            return catalog.remove(doc, version, provider, arch)

        self.catalog.update(change)

    def commit(self) -> Catalog:
        """Step 4: every box of the run into the catalog, in one write (in a dry run, the catalog it would be)."""
        boxes = sorted((b for b in self.boxes if b.listed), key=lambda b: b.default)  # a default added last stays the default

        def change(doc: Catalog | None) -> Catalog:
            index = catalog.Index(doc, self.name)
            for b in boxes:
                self._still_held(b)
                existing = index.entry(b.version, b.provider, b.architecture)
                if existing and existing.get("checksum") == b.checksum and existing["url"] == b.url:
                    continue
                if existing and existing.get("checksum") != b.checksum and not self.force:
                    raise OutputFailed(f"{self.name} {b.version} {b.provider} {b.architecture} was published meanwhile "
                                       "by someone else; use --force to replace it")
                index.add(version=b.version, provider=b.provider, url=b.url, checksum=b.checksum,
                          checksum_type=b.checksum_type, architecture=b.architecture, default_architecture=b.default,
                          force=True)
            doc = index.catalog()
            if self.description is not None:
                doc["description"] = self.description
            for v in doc["versions"]:
                if v["version"] in self.version_descriptions:
                    v["description"] = self.version_descriptions[v["version"]]
            return doc

        self._prepare()
        return _written(self.catalog.update(change))


def _written(doc: Catalog | None) -> Catalog:
    """What an update whose change always gives a catalog wrote."""
    if doc is None:
        raise InternalError("internal error: a catalog update wrote nothing")
    return doc


def open_store(target: str, endpoint_url: str | None = None, dry_run: bool = False) -> Store:
    """The store behind --to: read as it is, and with dry_run written to nowhere."""
    store = open_target(target, endpoint_url)
    return DryRunStore(store) if dry_run else store


def _publisher(options: PublishOptions) -> Publisher:
    o = options
    catalog.check_entry(o.name, o.version, layout.url(o.base_url, "x"))
    return Publisher(open_store(o.target, o.endpoint_url, o.dry_run), o.name, o.base_url, force=o.force,
                     default_architecture=o.default_architecture, description=o.description, private=o.private)


def _result(publisher: Publisher, options: PublishOptions) -> PublishResult:
    doc = publisher.commit()
    return PublishResult(publisher.store.where, options.name, options.version, publisher.catalog_urls, publisher.boxes,
                         doc, options.dry_run, doc != publisher.before)


def publish_boxes(
    boxes: Sequence[str | os.PathLike[str]],
    options: PublishOptions,
    *,
    architecture: str | None = None,
    checksum_type: str = "sha256",
    progress: Any = None,
) -> PublishResult:
    """Publish box files, provider and architecture from each box's metadata.json (or architecture).
    Every box is checked before the first is sent."""
    if checksum_type not in CHECKSUM_TYPES:
        raise BadOption(f"unknown checksum type {checksum_type!r}; choose from {', '.join(CHECKSUM_TYPES)}")
    o = options
    if o.sign_key:
        signatures.check_key(o.sign_key)  # a key that cannot sign stops the run before anything is sent
    publisher = _publisher(o)
    plans = [_plan(publisher, Path(b), o.version, architecture, checksum_type) for b in boxes]
    for b, provider, arch, unchanged in plans:
        size = b.stat().st_size
        if unchanged and publisher.holds(o.version, provider, arch, size, checksum_type, unchanged):
            box = publisher.unchanged(o.version, provider, arch, size, checksum_type, unchanged)
            if o.sign_key:
                publisher.signed(box, signatures.sign_file(o.sign_key, b))
            continue
        upload = publisher.open(o.version, provider, arch)
        if progress:
            progress.phase(f"uploading {provider}", size)
        signing = signatures.Signing(o.sign_key) if o.sign_key else None
        digest = _send(b, upload, checksum_type, progress, signing)
        if progress:
            progress.finish()
        box = publisher.finish(upload, o.version, provider, arch, checksum_type, digest)
        if signing:
            publisher.signed(box, signing.finish())
    return _result(publisher, o)


def _plan(publisher: Publisher, box: Path, version: str, architecture: str | None,
          checksum_type: str) -> tuple[Path, str, str, str | None]:
    """(box, provider, architecture, its checksum when the catalog holds exactly it already)."""
    meta = read_metadata(box)
    provider = text(meta, "provider")
    if not provider:
        raise BadInput(f"{box}: metadata.json names no provider, which Vagrant needs to add the box")
    arch = architecture or text(meta, "architecture") or UNKNOWN_ARCH
    # Only a box the catalog may already hold is read twice (its checksum first).
    known = _digest(box, checksum_type) if publisher.recorded(version, provider, arch) else None
    return box, provider, arch, known if publisher.plan(version, provider, arch, known) else None


def _send(box: Path, upload: Upload, checksum_type: str, progress: Any, signing: signatures.Signing | None) -> str:
    """The box file into upload (and into signing, as it goes); its digest."""
    digest = hashlib.new(checksum_type)
    try:
        with open(box, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
                upload.write(chunk)
                if signing:
                    signing.write(chunk)
                if progress:
                    progress(len(chunk))
    except (OSError, BoxpackError) as e:
        upload.abort()
        if signing:
            signing.abort()
        raise e if isinstance(e, BoxpackError) else BadInput(f"{box}: cannot read: {e.strerror}") from None
    return digest.hexdigest()


def _digest(path: Path, checksum_type: str) -> str:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, checksum_type).hexdigest()
    except OSError as e:
        raise BadInput(f"{path}: cannot read: {e.strerror}") from None


class Uploads:
    """pack()'s destination when boxes are published: each box streamed straight into its upload (no local
    copy), and into its signature with a key, planned when it is opened and finished (steps 2 and 3) when complete."""

    def __init__(self, publisher: Publisher, version: str, sign_key: str | None = None) -> None:
        self.publisher, self.version, self.sign_key = publisher, version, sign_key
        self.spool_dir: Path | None = None

    def open(self, provider: str, architecture: str | None) -> _UploadBox:
        self.publisher.plan(self.version, provider, architecture)
        upload = self.publisher.open(self.version, provider, architecture)
        return _UploadBox(self, _Signed(upload, signatures.Signing(self.sign_key)) if self.sign_key else upload, provider,
                          architecture)

    def done(self, boxes: Sequence[tuple[Path | None, str, str]]) -> None:
        """The catalog is the publisher's to commit."""


class _UploadBox:
    def __init__(self, uploads: Uploads, upload: Upload, provider: str, architecture: str | None) -> None:
        self.uploads, self.out, self.provider, self.architecture = uploads, upload, provider, architecture

    def finish(self, size: int, checksum_type: str, digest: str) -> None:
        box = self.uploads.publisher.finish(self.out, self.uploads.version, self.provider, self.architecture, checksum_type,
                                            digest)
        if isinstance(self.out, _Signed):
            self.uploads.publisher.signed(box, self.out.signing.finish())

    def abort(self) -> None:
        self.out.abort()  # the same input would fail the same way: nothing to resume

    def failed(self, e: OSError) -> BoxpackError:
        return OutputFailed(f"{self.uploads.publisher.store.where}: cannot upload: {e.strerror}")


class _Signed:
    """An upload whose bytes also go to a signature being made (Uploads with a key)."""

    def __init__(self, upload: Upload, signing: signatures.Signing) -> None:
        self.upload, self.signing = upload, signing
        self.size, self.resumed = upload.size, upload.resumed

    def write(self, data: bytes | memoryview, /) -> None:
        self.upload.write(data)
        self.signing.write(data)
        self.size = self.upload.size

    def flush(self) -> None:
        self.upload.flush()

    def close(self) -> None:
        self.upload.close()
        self.size, self.resumed = self.upload.size, self.upload.resumed

    def commit(self, replace: bool) -> None:
        self.upload.commit(replace)

    def abort(self) -> None:
        self.signing.abort()
        self.upload.abort()


def pack_and_publish(
    source: Any, pack_options: Any, options: PublishOptions, progress: Any = None,
    on_box: Callable[[Any], None] | None = None,
) -> tuple[list[Any], PublishResult]:
    """pack() with every box streamed straight into its upload: no local copy."""
    from ..packing import pack

    if options.sign_key:
        signatures.check_key(options.sign_key)  # a key that cannot sign stops the run before anything is packed
    publisher = _publisher(options)
    results = pack(source, pack_options, progress, on_box=on_box,
                   destination=Uploads(publisher, options.version, options.sign_key))
    return results, _result(publisher, options)


def published(location: str, endpoint_url: str | None = None) -> PublishedCatalog:
    """A catalog that boxpack publish wrote, by where it is: s3://bucket/prefix/ORG/NAME, or a directory
    target's ORG/NAME/catalog.json."""
    target, name = layout.published_catalog(location)
    return PublishedCatalog(open_target(target, endpoint_url), name)
