"""boxpack mirror: copy boxes from a catalog (HCP Vagrant's, or any) onto storage the user owns.

Each entry is downloaded once and streamed straight into its upload (a directory target writes a
temporary file), its checksum computed on the way and compared with the catalog's, then published
through publish.Publisher: the same layout, the same claim on each key and the same catalog rules.
The mirrored catalog is written after its boxes, with the URLs under --base-url and everything else
Vagrant reads kept (description, versions, providers, architectures, default_architecture,
checksums). An entry whose download fails, or whose bytes do not match the catalog's checksum, is
reported and left out; the others go on. A rerun skips every box already at its key with the
expected checksum file, so it sends again only what did not finish.

Sources: ORG/NAME, resolved as Vagrant resolves it (<server>/api/v2/vagrant/ORG/NAME, then
<server>/ORG/NAME; server from --server, else VAGRANT_SERVER_URL, else https://vagrantcloud.com:
lib/vagrant/shared_helpers.rb server_url, lib/vagrant/action/builtin/box_add.rb BoxAdd#call), a
catalog URL (http, https, file) or a catalog file. HCP's catalogs add fields Vagrant ignores
(status, description_markdown, hosted, original_url, download_url; vagrant-cloud/api/v2.mdx) and
may hold entries without a checksum (checksum and checksum_type null): those get a sha256.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import catalog
from ..catalog import CHECKSUM_TYPES, NAME_PATTERN, UNKNOWN_ARCH
from ..errors import BadInput, BadOption, BoxpackError, InternalError
from ..sources.box import text
from . import http as download
from . import layout
from .layout import CATALOG_LIMIT, SIDECAR_LIMIT
from .publish import Publisher, entry, open_store
from .streamcheck import StreamCheck
from .stores.base import Store

DEFAULT_SERVER = "https://vagrantcloud.com"  # Vagrant's DEFAULT_SERVER_URL
DEFAULT_JOBS = 3


@dataclass
class MirrorOptions:
    """What to copy where. versions is "all", "latest" or a count of the newest; providers and
    architectures, when given, are the only ones copied. verify runs boxpack verify on each box in the
    same stream; require_valid then leaves out boxes with errors."""

    target: str
    base_url: str
    server: str | None = None
    versions: str = "all"
    providers: Sequence[str] = ()
    architectures: Sequence[str] = ()
    jobs: int = DEFAULT_JOBS
    dry_run: bool = False
    verify: bool = False
    require_valid: bool = False
    force: bool = False
    endpoint_url: str | None = None
    token: str | None = None  # sent only to the catalog's host (VAGRANT_CLOUD_TOKEN)
    private: bool = False  # the mirrored boxes are private to boxpack serve (access.py)


@dataclass
class Copy:
    """One entry of a source catalog, and what became of it."""

    name: str
    version: str
    provider: str
    architecture: str
    default: bool
    source_url: str
    checksum_type: str | None
    checksum: str | None  # the source catalog's; None when it gives none
    action: str = "planned"  # copied, skipped (already mirrored), failed; planned with --dry-run
    size: int | None = None
    url: str | None = None  # in the mirrored catalog
    computed: bool = False  # no checksum in the source: this one was computed while copying
    error: str | None = None
    findings: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def label(self) -> str:
        return f"{self.name} {self.version} {self.provider} {self.architecture}"


@dataclass
class MirrorResult:
    copies: list[Copy] = field(default_factory=list)
    catalogs: dict[str, list[str]] = field(default_factory=dict)  # name -> its public URLs
    errors: list[str] = field(default_factory=list)  # sources that could not be read, catalogs not written
    error_codes: list[int] = field(default_factory=list)  # each error's exit status (errors.py)
    dry_run: bool = False

    @property
    def exit_code(self) -> int:
        """The worst: 3 when a catalog was not written (what was copied is not found), 1 for a source or
        an entry that failed, else 0."""
        failed = [1] if any(c.action == "failed" for c in self.copies) else []
        return max(self.error_codes + failed, default=0)

    def to_json(self) -> dict[str, Any]:
        """As schemas/mirror-result.schema.json describes it."""
        return {
            "dry_run": self.dry_run,
            "exit_code": self.exit_code,
            "errors": self.errors,
            "catalogs": self.catalogs,
            "boxes": [{k: v for k, v in c.__dict__.items()} for c in self.copies],
        }


# --- reading the sources ----------------------------------------------------------------------

def resolve(source: str, server: str | None, token: str | None) -> tuple[dict, str]:
    """The source catalog and the URL (or path) it came from."""
    if os.path.isfile(source):
        return download.get_json(Path(source).resolve().as_uri(), CATALOG_LIMIT), source
    if "://" in source:
        return download.get_json(source, CATALOG_LIMIT, token), source
    if NAME_PATTERN.fullmatch(source):
        base = (server or os.environ.get("VAGRANT_SERVER_URL") or DEFAULT_SERVER).rstrip("/")
        problems = []
        for candidate in (f"{base}/api/v2/vagrant/{source}", f"{base}/{source}"):
            try:
                doc = download.get_json(candidate, CATALOG_LIMIT, token)
            except BoxpackError as e:
                problems.append(str(e))
                continue
            if isinstance(doc, dict) and "versions" in doc:
                return doc, candidate
            problems.append(f"{candidate}: JSON, but not a catalog")
        raise BadInput(f"{source}: no catalog at {base} ({'; '.join(problems)})")
    raise BadInput(f"{source}: not a catalog file, a catalog URL or ORG/NAME")


def entries(doc: Any, where: str, fallback_name: str | None) -> tuple[str, list[Copy], dict[str, str], str | None]:
    """A source catalog read leniently, as Vagrant reads it (box_metadata.rb): the box name, one Copy per
    provider entry, version descriptions, and the description. BoxpackError when it is no catalog."""
    if not isinstance(doc, dict) or not isinstance(doc.get("versions"), list):
        raise BadInput(f"{where}: not a catalog (no versions)")
    name = doc.get("name") if isinstance(doc.get("name"), str) and NAME_PATTERN.fullmatch(doc["name"]) else fallback_name
    if not name:
        raise BadInput(f"{where}: the catalog has no ORG/NAME name")
    copies: list[Copy] = []
    descriptions: dict[str, str] = {}
    for v in doc["versions"]:
        version = v.get("version") if isinstance(v, dict) else None
        if not isinstance(version, str) or not catalog.VERSION_PATTERN.fullmatch(version):
            raise BadInput(f"{where}: version {version!r} is not one Vagrant reads")
        text = v.get("description") or v.get("description_markdown")
        if isinstance(text, str) and text:
            descriptions[version] = text
        for p in v.get("providers") or []:
            if not isinstance(p, dict) or not isinstance(p.get("name"), str) or not isinstance(p.get("url"), str):
                raise BadInput(f"{where}: version {version} has a provider without a name or url")
            kind = (p.get("checksum_type") or "").lower() or None
            value = (p.get("checksum") or "").strip().lower() or None
            if kind not in CHECKSUM_TYPES or not value:
                kind = value = None
            arch = p.get("architecture")
            arch = arch if isinstance(arch, str) and arch else UNKNOWN_ARCH
            copies.append(Copy(name, version, p["name"], arch, p.get("default_architecture") is True,
                               urllib.parse.urljoin(where if "://" in where else Path(where).resolve().as_uri(), p["url"]),
                               kind, value))
    description = doc.get("description") if isinstance(doc.get("description"), str) else None
    return name, copies, descriptions, description


def select(copies: list[Copy], options: MirrorOptions) -> list[Copy]:
    """The filters: --versions, --provider, --architecture."""
    chosen = [c for c in copies if (not options.providers or c.provider in options.providers)
              and (not options.architectures or c.architecture in options.architectures)]
    versions = sorted({c.version for c in chosen}, key=catalog.version_key)
    if options.versions == "latest":
        keep = set(versions[-1:])
    elif options.versions == "all":
        keep = set(versions)
    else:
        keep = set(versions[-int(options.versions):])
    return [c for c in chosen if c.version in keep]


# --- copying one entry --------------------------------------------------------------------------

def _already_there(store: Store, publisher: Publisher, c: Copy) -> tuple[int, str, str] | None:
    """(size, checksum type, checksum) when the target holds this entry's box with its checksum file:
    the one the source names, or, for an entry without one, the one an earlier mirror recorded."""
    key = publisher.key(c.version, c.provider, c.architecture)
    known = (c.checksum_type, c.checksum) if c.checksum and c.checksum_type else None
    if known is None:
        recorded = entry(publisher.before, c.version, c.provider, c.architecture)
        if recorded is None:
            return None
        known = (recorded["checksum_type"], recorded["checksum"])
    there = store.stat(key)
    if there is None or (store.get(layout.sidecar_key(key, known[0]), SIDECAR_LIMIT) or (None,))[0] != layout.sidecar(known[1]):
        return None
    if not c.checksum and c.size is not None and c.size != there.size:
        return None  # no checksum to go by, and the source's box is not the one mirrored
    return there.size, known[0], known[1]


def _copy(c: Copy, publisher: Publisher, options: MirrorOptions, progress: Callable[[Copy, int], None]) -> None:
    started = time.monotonic()
    store = publisher.store
    try:
        if not c.checksum and c.size is None:
            c.size = download.size(c.source_url, _token_for(c.source_url, options))
        there = _already_there(store, publisher, c)
        if there:
            c.size, kind, value = there
            c.checksum_type, c.checksum = c.checksum_type or kind, c.checksum or value
            publisher.plan(c.version, c.provider, c.architecture, value)
            c.url = publisher.unchanged(c.version, c.provider, c.architecture, c.size, kind, value, c.default).url
            c.action = "skipped"
            return
        publisher.plan(c.version, c.provider, c.architecture, c.checksum)
        if options.dry_run:
            c.size = c.size if c.size is not None else download.size(c.source_url, _token_for(c.source_url, options))
            return
        kind = c.checksum_type or "sha256"
        digest = hashlib.new(kind)
        upload = publisher.open(c.version, c.provider, c.architecture)
        tee = StreamCheck(c.source_url) if options.verify else None

        def write(chunk: bytes) -> None:
            digest.update(chunk)
            upload.write(chunk)
            if tee:
                tee.write(chunk)
            progress(c, len(chunk))

        try:
            c.size = download.copy(c.source_url, write, _token_for(c.source_url, options))
            actual = digest.hexdigest()
            if c.checksum and actual != c.checksum:
                raise BadInput(f"{kind} of the download is {actual}, the catalog says {c.checksum}")
            if tee:
                report = tee.close()
                if report is None:
                    raise InternalError(f"internal error in boxpack verify: {tee.failure}")
                c.findings = [{"code": f.code, "severity": f.severity, "message": f.message} for f in report.findings]
                if report.unreadable:
                    c.findings.append({"code": "unreadable", "severity": "error", "message": report.unreadable})
                named = text(report.metadata, "provider")
                if named and named != c.provider:  # box_collection.rb: BoxProviderDoesntMatch
                    c.findings.append({"code": "provider-mismatch", "severity": "error",
                                       "message": f"the catalog says {c.provider}, the box's metadata.json {named}: "
                                       "Vagrant refuses to add it"})
                if options.require_valid and any(f["severity"] == "error" for f in c.findings):
                    raise BadInput("boxpack verify finds errors in it (--require-valid)")
            c.computed = not c.checksum
            c.checksum_type, c.checksum = kind, actual
        except Exception:
            upload.abort()  # an interruption keeps the upload: a rerun reuses its parts
            raise
        finally:
            if tee:
                tee.close()  # ends verify's read, if the download did not
        c.url = publisher.finish(upload, c.version, c.provider, c.architecture, kind, actual, c.default).url
        c.action = "copied"
    except BoxpackError as e:
        c.action, c.error = "failed", str(e)
    finally:
        c.seconds = time.monotonic() - started


def _token_for(url: str, options: MirrorOptions) -> str | None:
    """The token goes to the server's own host only (add_downloader_authentication.rb)."""
    if not options.token:
        return None
    server = urllib.parse.urlparse(options.server or os.environ.get("VAGRANT_SERVER_URL") or DEFAULT_SERVER).hostname
    return options.token if urllib.parse.urlparse(url).hostname == server else None


# --- the whole run --------------------------------------------------------------------------------

def mirror(sources: Sequence[str], options: MirrorOptions, progress: Callable[[Copy, int], None] | None = None,
           done: Callable[[Copy], None] | None = None, on_plan: Callable[[int], None] | None = None) -> MirrorResult:
    """Copy every selected entry of every source, options.jobs at a time, then write each box's catalog.
    on_plan(count) is called once the sources are read, progress(copy, bytes) as bytes arrive, done(copy)
    when an entry is over."""
    o = options
    if o.jobs < 1:
        raise BadOption("--jobs must be at least 1")
    if not (o.versions in ("all", "latest") or (o.versions.isdigit() and int(o.versions) > 0)):
        raise BadOption(f"--versions {o.versions!r}: give all, latest or a number of the newest versions")
    store = open_store(o.target, o.endpoint_url, o.dry_run)
    result = MirrorResult(dry_run=o.dry_run)
    publishers: dict[str, Publisher] = {}
    todo: list[Copy] = []
    for source in sources:
        try:
            doc, where = resolve(source, o.server, o.token)
            name, copies, descriptions, description = entries(doc, where, source if NAME_PATTERN.fullmatch(source) else None)
        except BoxpackError as e:
            result.errors.append(str(e))
            result.error_codes.append(e.exit_code)
            continue
        if name not in publishers:
            publishers[name] = Publisher(store, name, o.base_url, force=o.force, description=description, private=o.private)
        publishers[name].version_descriptions.update(descriptions)
        todo += select(copies, o)
    unique: dict[tuple[str, str, str, str], Copy] = {}
    for c in todo:  # a box named twice (the same catalog given two ways) is copied once
        unique.setdefault((c.name, c.version, c.provider, c.architecture), c)
    todo = list(unique.values())
    result.copies = todo
    if on_plan:
        on_plan(len(todo))
    quiet = progress or (lambda c, n: None)

    def one(c: Copy) -> None:
        _copy(c, publishers[c.name], o, quiet)
        if done:
            done(c)

    with ThreadPoolExecutor(o.jobs, thread_name_prefix="boxpack-mirror") as pool:
        list(pool.map(one, todo))
    for name, publisher in publishers.items():
        try:
            publisher.commit()
            result.catalogs[name] = publisher.catalog_urls
        except BoxpackError as e:
            result.errors.append(f"{name}: the catalog was not written: {e}")
            result.error_codes.append(e.exit_code)
    return result
