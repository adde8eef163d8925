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
may hold entries without a checksum (checksum and checksum_type null): those get a sha256, and
must at least be an archive (an HTML login page is not a box).

A source catalog is someone else's: it is written under the name asked for (ORG/NAME), never the
one it claims; a catalog from the network names only http(s) boxes, and, unless it is itself on a
private network or --allow-private-addresses is given, none on loopback, link-local or private
addresses; the token goes only to the server's host. What Vagrant could not read the same way is
reported per entry and left out: an unknown checksum type (box_add.rb raises on one), a second
version equal to an earlier one in RubyGems' order (1.0 and 1.0.0), a second entry for the same
version, provider and architecture with other bytes (Vagrant <= 2.3 takes the last, as here).
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

from .. import catalog, signatures
from ..catalog import NAME_PATTERN
from ..errors import BadInput, BadOption, BoxpackError, InternalError
from ..sources.archive import compression
from ..metadata import text
from . import hcp, layout
from . import http as download
from .layout import CATALOG_LIMIT
from .boxes import Box
from .publish import Publisher, open_store
from .records import Uploaded
from .stores.base import Store, Upload
from .streamcheck import StreamCheck

DEFAULT_SERVER = "https://vagrantcloud.com"  # Vagrant's DEFAULT_SERVER_URL
DEFAULT_JOBS = 3
DEFAULT_TIMEOUT = 12 * 3600.0  # one box's transfer, in all: 30 GB at 0.7 MB/s
DEFAULT_SPEED = (1024, 60.0)  # at least this many bytes a second over every this many seconds: a stalled server ends


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
    private: bool = False  # every mirrored box private to boxpack serve (access.py), whatever its source says
    public: bool = False  # every mirrored box public, whatever its source says
    orgs: Sequence[str] = ()  # every box of these organisations (the server's API lists them)
    sign_key: str | None = None  # a box whose source has no signature is signed with it (signatures.py)
    signed_by: str | None = None  # an allowed_signers file: only boxes whose signature it allows are copied
    allow_private_addresses: bool = False  # a catalog from the internet may name boxes on private networks
    timeout: float | None = DEFAULT_TIMEOUT  # seconds for one box's transfer, in all
    speed: tuple[int, float] = DEFAULT_SPEED  # the low-speed limit: bytes a second, over how many seconds


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
    public_only: bool = False  # from a catalog on the internet: its box may be fetched from the internet only
    signature: bytes | None = None  # what is kept beside the copy (found on the source, or made here)
    status: str = "active"  # its version's on the source: active (in the catalog), unreleased, revoked
    alias_of: str | None = None  # "ORG/NAME VERSION PROVIDER ARCH" of the box on the source server whose file it names
    signer: str | None = None  # who signed it (--signed-by checked it), or "--sign-key" when this mirror did

    def label(self) -> str:
        return f"{self.name} {self.version} {self.provider} {self.architecture}"


@dataclass
class MirrorResult:
    copies: list[Copy] = field(default_factory=list)
    catalogs: dict[str, list[str]] = field(default_factory=dict)  # name -> its public URLs
    private: dict[str, str] = field(default_factory=dict)  # name -> why it was made private (its source said, or could not)
    errors: list[str] = field(default_factory=list)  # sources that could not be read, catalogs not written
    error_codes: list[int] = field(default_factory=list)  # each error's exit status (errors.py)
    dry_run: bool = False

    def failed(self, message: str, error: BoxpackError) -> None:
        self.errors.append(message)
        self.error_codes.append(error.exit_code)

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
            "private": self.private,
            "boxes": [{k: v for k, v in c.__dict__.items() if k not in ("public_only", "signature")} for c in self.copies],
        }


# --- reading the sources ----------------------------------------------------------------------

def _server(options_server: str | None) -> str:
    return (options_server or os.environ.get("VAGRANT_SERVER_URL") or DEFAULT_SERVER).rstrip("/")


def token_for(url: str, server: str | None, token: str | None) -> str | None:
    """The token goes to the server's own host only (add_downloader_authentication.rb)."""
    if not token or urllib.parse.urlparse(url).scheme not in download.SCHEMES:
        return None
    return token if urllib.parse.urlparse(url).hostname == urllib.parse.urlparse(_server(server)).hostname else None


def resolve(source: str, server: str | None, token: str | None) -> tuple[dict, str]:
    """The source catalog and the URL (or path) it came from."""
    if os.path.isfile(source):
        return download.get_json(Path(source).resolve().as_uri(), CATALOG_LIMIT), source
    if "://" in source:
        return download.get_json(source, CATALOG_LIMIT, token_for(source, server, token)), source
    if NAME_PATTERN.fullmatch(source):
        base = _server(server)
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


def _refusal(url: str, remote: bool) -> str | None:
    """Why a box URL named by a catalog is not fetched, if it is not."""
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in download.SCHEMES and not (scheme == "file" and not remote):
        where = "a catalog from the network" if remote else "a catalog"
        return f"{url[:200]}: {scheme}: URLs are not fetched from {where} (http and https only)"
    return None


def entries(doc: Any, where: str, asked_name: str | None,
            allow_private: bool = False) -> tuple[str, list[Copy], dict[str, str], str | None]:
    """A source catalog read leniently (catalog.read_lenient), with mirror's network rules on top: a catalog from
    the network names only http(s) boxes, and, unless it is on a private network itself, boxes on the internet
    only. The box name, one Copy per provider entry (those Vagrant could not read the same way already failed),
    version descriptions, and the description. BoxpackError when it is no catalog."""
    remote = "://" in where and not where.startswith("file:")
    base = where if "://" in where else Path(where).resolve().as_uri()
    read = catalog.read_lenient(doc, where, asked_name, base)
    public_only = remote and not allow_private and download.not_public(urllib.parse.urlparse(where).hostname or "") is None
    copies = []
    for e in read.entries:
        c = Copy(read.name, e.version, e.provider, e.architecture, e.default, e.url, e.checksum_type, e.checksum,
                 public_only=public_only)
        c.error = _refusal(e.url, remote) or e.problem
        if c.error:
            c.action = "failed"
        copies.append(c)
    return read.name, copies, read.descriptions, read.description


def select(copies: list[Copy], options: MirrorOptions) -> list[Copy]:
    """The filters: --versions, --provider, --architecture. An entry that failed already is kept (to be
    reported) when its version is chosen."""
    chosen = [c for c in copies if (not options.providers or c.provider in options.providers)
              and (not options.architectures or c.architecture in options.architectures)]
    versions = sorted({c.version for c in chosen if c.action != "failed"}, key=catalog.version_key)
    if options.versions == "latest":
        keep = set(versions[-1:])
    elif options.versions == "all":
        return chosen
    else:
        keep = set(versions[-int(options.versions):])
    return [c for c in chosen if c.version in keep]


def unique(copies: list[Copy]) -> list[Copy]:
    """One Copy per version, provider and architecture: a box named twice the same way (one catalog given
    two ways) is copied once; named twice with other bytes, the last is kept, as Vagrant <= 2.3 keeps the
    last entry (box_metadata.rb), and the others are reported."""
    def key(c: Copy) -> tuple:
        return c.name, catalog.version_key(c.version), c.provider, c.architecture

    last = {key(c): c for c in copies if c.action != "failed"}
    kept = []
    for c in copies:
        chosen = last.get(key(c))
        if c.action == "failed" or chosen is c or chosen is None:
            kept.append(c)
        elif (c.source_url, c.checksum) != (chosen.source_url, chosen.checksum):
            c.action = "failed"
            c.error = "named again later in the catalog with another box; the last is copied, as Vagrant <= 2.3 reads it"
            kept.append(c)
    return kept


# --- copying one entry --------------------------------------------------------------------------

def _already_there(publisher: Publisher, c: Copy) -> tuple[int, str, str] | None:
    """(size, checksum type, checksum) when the target holds this entry's box with its checksum file:
    the one the source names, or, for an entry without one, the one an earlier mirror recorded."""
    key = publisher.key(c.version, c.provider, c.architecture)
    known = (c.checksum_type, c.checksum) if c.checksum and c.checksum_type else None
    if known is None:
        recorded = publisher.recorded(c.version, c.provider, c.architecture)
        if recorded is None or "checksum" not in recorded:
            return None
        known = (recorded["checksum_type"], recorded["checksum"])
    there = publisher.found(key, *known)
    if there is None:
        return None
    if not c.checksum and c.size is not None and c.size != there.size:
        return None  # no checksum to go by, and the source's box is not the one mirrored
    return there.size, known[0], known[1]


def _copy(c: Copy, publisher: Publisher, options: MirrorOptions, progress: Callable[[Copy, int], None]) -> None:
    if c.action == "failed":  # as read from its catalog
        return
    started = time.monotonic()
    token = token_for(c.source_url, options.server, options.token)
    try:
        if not c.checksum and c.size is None:
            c.size = download.size(c.source_url, token, c.public_only)
        if _skipped(c, publisher):
            return
        publisher.plan(c.version, c.provider, c.architecture, c.checksum)
        if options.dry_run:
            c.size = c.size if c.size is not None else download.size(c.source_url, token, c.public_only)
            return
        kind, actual, upload = _download(c, publisher, options, progress, token)
        box = publisher.finish(upload, c.version, c.provider, c.architecture, kind, actual, c.default,
                               listed=c.status == "active")
        if c.signature:
            publisher.signed(box, c.signature)
        c.url = box.url
        c.action = "copied"
    except BoxpackError as e:
        c.action, c.error = "failed", str(e)
    finally:
        c.seconds = time.monotonic() - started


def _skipped(c: Copy, publisher: Publisher) -> bool:
    """Whether the target holds this entry's box already: then it is kept, named, and not sent again."""
    there = _already_there(publisher, c)
    if not there:
        return False
    c.size, kind, value = there
    c.checksum_type, c.checksum = c.checksum_type or kind, c.checksum or value
    publisher.plan(c.version, c.provider, c.architecture, value)
    c.url = publisher.unchanged(c.version, c.provider, c.architecture, c.size, kind, value, c.default,
                                listed=c.status == "active").url
    c.action = "skipped"
    return True


def _named(c: Copy, target: Copy, publisher: Publisher) -> None:
    """An alias, once the box whose file it names is mirrored: that box's key, named in this entry too."""
    if target.action == "planned":  # a dry run: it would be named as its box is copied
        c.size = target.size
        return
    if target.action not in ("copied", "skipped") or not target.checksum or not target.checksum_type:
        c.action, c.error = "failed", f"it names the file of {c.alias_of}, which was not mirrored" + (
            f" ({target.error})" if target.error else "")
        return
    try:
        publisher.plan(c.version, c.provider, c.architecture, target.checksum)
        key = layout.box_key(target.name, target.version, target.provider, target.architecture)
        c.url = publisher.unchanged(c.version, c.provider, c.architecture, target.size or 0, target.checksum_type,
                                    target.checksum, c.default, listed=c.status == "active", key=key).url
        c.size, c.checksum_type, c.checksum, c.action = target.size, target.checksum_type, target.checksum, "copied"
    except BoxpackError as e:
        c.action, c.error = "failed", str(e)


def _signature(c: Copy, options: MirrorOptions, token: str | None) -> tuple[bytes | None, Any]:
    """The box's signature on its source (its URL + .sig), and what checks (--signed-by) or makes (--sign-key) one as
    the box streams: None where neither is asked for."""
    found = download.small(c.source_url + signatures.SUFFIX, signatures.LIMIT, token, c.public_only)
    if options.signed_by:
        if found is None:
            raise BadInput(f"{c.source_url}{signatures.SUFFIX}: no signature (--signed-by asks for one)")
        return found, signatures.Verifying(found, options.signed_by, c.source_url + signatures.SUFFIX)
    if found is None and options.sign_key:
        return None, signatures.Signing(options.sign_key)
    return found, None


def _download(c: Copy, publisher: Publisher, options: MirrorOptions, progress: Callable[[Copy, int], None],
              token: str | None) -> tuple[str, str, Upload]:
    """The entry's box streamed into its upload, checked on the way: (checksum type, checksum, the upload)."""
    kind = c.checksum_type or "sha256"
    digest = hashlib.new(kind)
    found, signing = _signature(c, options, token)
    upload = publisher.open(c.version, c.provider, c.architecture)
    tee = StreamCheck(c.source_url) if options.verify else None
    head = bytearray()

    def write(chunk: bytes) -> None:
        if len(head) < 512:
            head.extend(chunk[:512 - len(head)])
        digest.update(chunk)
        upload.write(chunk)
        if tee:
            tee.write(chunk)
        if signing:
            signing.write(chunk)
        progress(c, len(chunk))

    try:
        c.size = download.copy(c.source_url, write, token, public_only=c.public_only, timeout=options.timeout,
                               speed=options.speed)
        actual = digest.hexdigest()
        if c.checksum and actual != c.checksum:
            raise BadInput(f"{kind} of the download is {actual}, the catalog says {c.checksum}")
        if not c.checksum and compression(bytes(head)) is None:  # what verify reads as a box
            raise BadInput("not an archive, so not a box (" + ("an HTML page: a login page?)" if b"<" in head[:64] else
                                                                f"it starts {bytes(head[:8])!r})"))
        if tee:
            _verified(c, tee.close(), tee.failure, options.require_valid)
        c.signature = _signed(c, found, signing)
        c.computed = not c.checksum
        c.checksum_type, c.checksum = kind, actual
    except Exception:
        upload.abort()  # an interruption keeps the upload: a rerun reuses its parts
        if signing:
            signing.abort()
        raise
    finally:
        if tee:
            tee.close()  # ends verify's read, if the download did not
    return kind, actual, upload


def _signed(c: Copy, found: bytes | None, signing: Any) -> bytes | None:
    """The signature kept beside the box: the source's (checked, with --signed-by), or this mirror's own."""
    if isinstance(signing, signatures.Verifying):
        c.signer = signing.finish()
        return found
    if isinstance(signing, signatures.Signing):
        c.signer = "--sign-key"
        return signing.finish()
    return found


def _verified(c: Copy, report: Any, failure: str | None, require_valid: bool) -> None:
    """What boxpack verify found in the box as it streamed, as the entry's findings; BadInput with require_valid
    when it has errors."""
    if report is None:
        raise InternalError(f"internal error in boxpack verify: {failure}")
    c.findings = [{"code": f.code, "severity": f.severity, "message": f.message} for f in report.findings]
    if report.unreadable:
        c.findings.append({"code": "unreadable", "severity": "error", "message": report.unreadable})
    named = text(report.metadata, "provider")
    if named and named != c.provider:  # box_collection.rb: BoxProviderDoesntMatch
        c.findings.append({"code": "provider-mismatch", "severity": "error",
                           "message": f"the catalog says {c.provider}, the box's metadata.json {named}: Vagrant refuses to add it"})
    if require_valid and any(f["severity"] == "error" for f in c.findings):
        raise BadInput("boxpack verify finds errors in it (--require-valid)")


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
    result = MirrorResult(dry_run=o.dry_run)
    publishers = _read(sources, o, open_store(o.target, o.endpoint_url, o.dry_run), result)
    if on_plan:
        on_plan(len(result.copies))
    quiet = progress or (lambda c, n: None)

    def one(c: Copy) -> None:
        _copy(c, publishers[c.name], o, quiet)
        if done:
            done(c)

    targets = _targets(result.copies)
    later = {id(c) for c, _ in targets}
    with ThreadPoolExecutor(o.jobs, thread_name_prefix="boxpack-mirror") as pool:
        list(pool.map(one, [c for c in result.copies if id(c) not in later]))
    for c, target in targets:  # once what they name is mirrored
        _named(c, target, publishers[c.name])
        if done:
            done(c)
    _commit(publishers, result, o.dry_run)
    return result


def _commit(publishers: dict[str, Publisher], result: MirrorResult, dry_run: bool) -> None:
    """Each box's catalog, last, and what its source held beyond it, into its record."""
    for name, publisher in publishers.items():
        if publisher.before is None and all(c.action == "failed" for c in result.copies if c.name == name):
            continue  # nothing was copied, and there was no catalog: none is made
        try:
            publisher.commit()
            result.catalogs[name] = publisher.catalog_urls
            if not dry_run:
                _adopt(publisher, [c for c in result.copies if c.name == name])
        except BoxpackError as e:
            result.failed(f"{name}: the catalog was not written: {e}", e)


def _targets(copies: list[Copy]) -> list[tuple[Copy, Copy]]:
    """Each alias whose box this run mirrors too, and that box's entry (the provider's default, for HCP's older
    path without an architecture). An alias of a box not mirrored here is copied as any entry is."""
    by_label = {(c.name, c.version, c.provider, c.architecture): c for c in copies if not c.alias_of}
    defaults = {(c.name, c.version, c.provider): c for c in copies if not c.alias_of and c.default}
    found = []
    for c in copies:
        if c.alias_of:
            name, version, provider, arch = c.alias_of.split(" ")
            target = defaults.get((name, version, provider)) if arch == "default" else by_label.get((name, version, provider, arch))
            if target is not None:
                found.append((c, target))
    return found


def _adopt(publisher: Publisher, copies: list[Copy]) -> None:
    """What the source held beyond the catalog, into the box's record for boxpack serve's API: its descriptions, and
    the versions not released there (or revoked) with the boxes placed for them."""
    placed = {(b.version, b.provider, b.architecture): b for b in publisher.boxes if not b.listed}
    versions: dict[str, tuple[str, list[tuple[str, str, bool, Uploaded]]]] = {}
    for c in copies:
        b = placed.get((c.version, c.provider, c.architecture))
        if c.status == "active" or b is None:
            continue
        there = publisher.store.stat(b.key)
        got = Uploaded(b.checksum_type, b.checksum, b.size, b.architecture, there.etag if there else None)
        versions.setdefault(c.version, (c.status, []))[1].append((c.provider, c.architecture, c.default, got))
    described = {v: publisher.version_descriptions.get(v) for v in versions}
    if versions or publisher.short_description or publisher.description:
        Box(publisher.store, publisher.name, publisher.base_url).adopt(publisher.short_description, publisher.description,
                                                                      versions, described)


def _read(sources: Sequence[str], o: MirrorOptions, store: Store, result: MirrorResult) -> dict[str, Publisher]:
    """Every source's selected entries into result.copies (a source that cannot be read into its errors, the
    others go on), and a publisher for each box named, which makes it private or public as its source says."""
    publishers: dict[str, Publisher] = {}
    todo: list[Copy] = []
    for source, listed_private in _sources(sources, o, result):
        try:
            read = _source(source, o)
            private = _visibility(read.private if read.private is not None else listed_private, read.anonymous, o)
            if private[0] and private[1]:
                result.private[read.name] = private[1]
            if read.name not in publishers:
                publishers[read.name] = Publisher(store, read.name, o.base_url, force=o.force, description=read.description,
                                                  private=private[0], public=not private[0] and (o.public or read.private is False))
        except BoxpackError as e:
            result.failed(str(e), e)
            continue
        publishers[read.name].version_descriptions.update(read.descriptions)
        publishers[read.name].short_description = read.short_description
        todo += select(read.copies, o)
    result.copies = unique(todo)
    _aliases(result.copies, _server(o.server))
    return publishers


@dataclass
class _Read:
    """One source, read: its box, the entries to copy, and what it says beyond them."""

    name: str
    copies: list[Copy]
    descriptions: dict[str, str]
    description: str | None
    private: bool | None = None  # None: the source did not say
    anonymous: bool = True  # read without a token
    short_description: str | None = None


def _sources(sources: Sequence[str], o: MirrorOptions, result: MirrorResult) -> list[tuple[str, bool | None]]:
    """The sources given, then every box of each --org: (source, private as the organisation's listing says)."""
    found: list[tuple[str, bool | None]] = [(s, None) for s in sources]
    for org in o.orgs:
        try:
            found += [(b.name, b.private) for b in hcp.organization(_server(o.server), org, o.token)]
        except BoxpackError as e:
            result.failed(f"--org {org}: {e}", e)
    return found


def _source(source: str, o: MirrorOptions) -> _Read:
    """A source read: ORG/NAME through its server's API where it has one (every version, with its status, the private
    flag and the descriptions), else its catalog."""
    asked = source if NAME_PATTERN.fullmatch(source) and not os.path.isfile(source) else None
    described = hcp.box(_server(o.server), asked, o.token) if asked else None
    if described is not None:
        where = f"{_server(o.server)}/api/v2/box/{asked}"
        name, copies, descriptions, description = entries(described.catalog, where, asked, o.allow_private_addresses)
        for c in copies:
            c.status = described.statuses.get(c.version, "active")
        return _Read(name, copies, descriptions, description, described.private, o.token is None, described.short_description)
    doc, where = resolve(source, o.server, o.token)
    name, copies, descriptions, description = entries(doc, where, asked, o.allow_private_addresses)
    flag = doc.get("private") if isinstance(doc, dict) and isinstance(doc.get("private"), bool) else None
    return _Read(name, copies, descriptions, description, flag, token_for(where, o.server, o.token) is None)


def _visibility(said: bool | None, anonymous: bool, o: MirrorOptions) -> tuple[bool, str | None]:
    """(private, why) for a box: --private or --public for the whole run, else what its source said; a box read with a
    token whose source does not say is private (it may need the token), and the report says so."""
    if o.private or o.public:
        return o.private, None
    if said is not None:
        return said, "private on its source" if said else None
    return (False, None) if anonymous else (True, "its source does not say whether it is private (read with a token)")


def _aliases(copies: list[Copy], server: str) -> None:
    """Mark each entry that names another box's file on the source server: that box's, mirrored once, named here."""
    for c in copies:
        found = hcp.alias(c.source_url, server)
        if found is None or c.action == "failed":
            continue
        name, version, provider, arch = found
        if (name, version, provider) != (c.name, c.version, c.provider) or arch not in (None, c.architecture):
            c.alias_of = f"{name} {version} {provider} {arch or 'default'}"
