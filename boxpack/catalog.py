"""The Vagrant box catalog: the JSON `vagrant box add URL` reads, written and merged safely.

Reference: hashicorp/vagrant lib/vagrant/box_metadata.rb (what is parsed),
lib/vagrant/action/builtin/box_add.rb (checksums, URLs), shared/reference
vagrant-ecosystem.md B3. The rules kept here:

- checksums are bare lowercase hex with a lower-case checksum_type (a
  "hex  file" value from sha256sum fails, and SHA256 fails before 2.4.2);
- URLs are absolute: Vagrant resolves a relative one against its working
  directory, not the catalog's location;
- every entry has `architecture` and an explicit `default_architecture`,
  exactly one default per provider in a version, placed last among that
  provider's entries: Vagrant <= 2.3 keeps the last entry per provider name;
- versions are RubyGems versions, kept in ascending Gem order.

Every write is validated against schemas/catalog.schema.json, serialised
with a lock on the catalog's directory and atomic (temporary file + rename),
so concurrent writers never lose an update and a crash never leaves half a file.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import jsonschema

from . import files
from .errors import BadInput, BadOption, InternalError, OutputFailed
from .metadata import load_schema, text
from .sources.box import read_metadata

CHECKSUM_TYPES = {"md5": 32, "sha1": 40, "sha256": 64, "sha384": 96, "sha512": 128}
VERSION_PATTERN = re.compile(r"[0-9]+(\.[0-9A-Za-z]+)*(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?")
NAME_PATTERN = re.compile(r"[^/\s]+/[^/\s]+")
UNKNOWN_ARCH = "unknown"
ARCH_PATTERN = re.compile(r"[a-z0-9_]{1,64}")  # schemas/catalog.schema.json: what Vagrant matches against its host's
MAX_VERSION = 128  # characters; a key part's limit (publishing/layout.py), and far beyond any real version
MAX_DEPTH = 32  # a catalog is 5 deep; deeper is hostile, and copying it would exhaust Python's stack

Catalog = dict[str, Any]


@functools.lru_cache(maxsize=65536)  # merging thousands of entries sorts and compares the same versions again and again
def version_key(version: str) -> tuple:
    """Sort key with RubyGems' ordering: 1.2 == 1.2.0 < 1.10, and 1.0.rc1 < 1.0-beta.1 < 1.0."""
    segments: list[int | str] = []
    for part in version.replace("-", ".pre.").split("."):
        segments += [int(s) if s.isdigit() else s for s in re.findall(r"[0-9]+|[A-Za-z]+", part)]
    first_text = next((i for i, s in enumerate(segments) if isinstance(s, str)), len(segments))
    release, pre = segments[:first_text], segments[first_text:]
    while release and release[-1] == 0:  # trailing zeros of each part do not count
        release.pop()
    while pre and pre[-1] == 0:
        pre.pop()
    # A missing segment compares as 0, and a text segment (a pre-release) below any number.
    return tuple((1, s, "") if isinstance(s, int) else (0, 0, s) for s in release + pre) + ((1, 0, ""),)


def _providers_sorted(providers: list[dict]) -> list[dict]:
    """By provider name, the default entry last in each name (for Vagrant <= 2.3), then by architecture."""
    return sorted(providers, key=lambda p: (p["name"], p["default_architecture"], p["architecture"]))


def _short(message: str) -> str:
    """A schema message quotes the value: of a hostile one, the start and the end."""
    return message if len(message) <= 200 else f"{message[:100]}...{message[-60:]}"


def check(doc: Any) -> list[str]:
    """Problems with a catalog: the schema, then the rules across entries. Empty when none."""
    validator = jsonschema.Draft202012Validator(load_schema("catalog.schema.json"))
    problems = [
        f"{'/'.join(map(str, e.absolute_path)) or 'top level'}: {_short(e.message)}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]
    if problems:
        return problems
    seen_versions = set()
    for v in doc["versions"]:
        key = version_key(v["version"])
        if key in seen_versions:
            problems.append(f"version {v['version']} appears twice")
        seen_versions.add(key)
        problems += _version_problems(v)
    return problems


def _version_problems(v: dict) -> list[str]:
    """The rules across one version's entries: digests, absolute URLs, one default per provider, placed last."""
    problems = []
    by_name: dict[str, list[dict]] = {}
    for p in v["providers"]:
        by_name.setdefault(p["name"], []).append(p)
        if "checksum" in p and len(p["checksum"]) != CHECKSUM_TYPES[p["checksum_type"]]:
            problems.append(f"version {v['version']} {p['name']}/{p['architecture']}: checksum is not a {p['checksum_type']} digest")
        if not _absolute(p["url"]):
            problems.append(f"version {v['version']} {p['name']}/{p['architecture']}: url {p['url']!r} is not absolute")
    for name, entries in by_name.items():
        archs = [p["architecture"] for p in entries]
        if len(set(archs)) != len(archs):
            problems.append(f"version {v['version']}: provider {name} lists an architecture twice")
        defaults = [p for p in entries if p["default_architecture"]]
        if len(defaults) != 1:
            problems.append(f"version {v['version']}: provider {name} has {len(defaults)} default architectures, not 1")
        elif entries[-1] is not defaults[0]:
            problems.append(f"version {v['version']}: provider {name}'s default entry is not its last (Vagrant <= 2.3 takes the last)")
    return problems


def check_entry(name: str, version: str, url: str, allow_relative: bool = False, architecture: str | None = None) -> None:
    """The box name, version, URL and architecture an entry needs: checked before any box is written."""
    if architecture is not None and not ARCH_PATTERN.fullmatch(architecture):
        raise BadOption(f"architecture {architecture[:40]!r} is not one Vagrant matches (lower case letters, digits and _: "
                        "amd64, arm64)")
    if not NAME_PATTERN.fullmatch(name):
        raise BadOption(f"box name {name!r} is not ORG/NAME without spaces (what `vagrant box add` accepts)")
    if len(version) > MAX_VERSION:
        raise BadOption(f"version {version[:20]}... is longer than {MAX_VERSION} characters")
    if not VERSION_PATTERN.fullmatch(version):
        raise BadOption(f"version {version!r} is not a RubyGems version (Vagrant expects X.Y.Z)")
    if not _absolute(url) and not allow_relative:
        raise BadOption(
            f"url {url!r} is not absolute; Vagrant would resolve it against its working directory (use --allow-relative to keep it)"
        )


def _absolute(url: str) -> bool:
    u = urlparse(url)
    return bool(u.scheme) and (bool(u.netloc) or u.scheme == "file") and len(u.scheme) > 1


def parse(data: bytes, where: str) -> Catalog:
    """A catalog from its bytes; BoxpackError naming where it came from when it is not a valid one."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadInput(f"{where}: not UTF-8 text, so not a catalog; it was left as it is") from None
    except json.JSONDecodeError as e:
        raise BadInput(f"{where}: not valid JSON (line {e.lineno}: {e.msg}); it was left as it is") from None
    except RecursionError:
        raise BadInput(f"{where}: nested too deeply to be a catalog; it was left as it is") from None
    if too_deep(doc):
        raise BadInput(f"{where}: nested more than {MAX_DEPTH} deep, so not a catalog; it was left as it is")
    problems = check(doc)
    if problems:
        raise BadInput(f"{where}: not a valid catalog ({problems[0]}); it was left as it is")
    return doc


# --- someone else's catalog, read as Vagrant reads it ------------------------------------------------------------

@dataclass
class Entry:
    """One provider entry of a catalog read leniently; problem says why Vagrant would not read it the same way."""

    version: str
    provider: str
    architecture: str
    default: bool
    url: str  # absolute: joined to where the catalog came from
    checksum_type: str | None  # both None when the catalog gives none (HCP has such entries)
    checksum: str | None
    problem: str | None = None


@dataclass
class Lenient:
    name: str
    entries: list[Entry] = field(default_factory=list)
    descriptions: dict[str, str] = field(default_factory=dict)  # version -> its description
    description: str | None = None


def _text(d: dict, key: str) -> str | None:
    """A string field, else None: a field of another type is read as absent, as Vagrant's Ruby would fail on it."""
    value = d.get(key)
    return value if isinstance(value, str) and value else None


def read_lenient(doc: Any, where: str, asked_name: str | None = None, base: str | None = None) -> Lenient:
    """A catalog someone else wrote (HCP's adds fields Vagrant ignores, and has entries without a checksum), read
    as Vagrant reads it (lib/vagrant/box_metadata.rb): under the name asked for, else its own; BadInput when it
    is no catalog. What Vagrant could not read the same way is an entry with a problem: an unknown checksum
    type (box_add.rb raises on one), an architecture outside the schema, a version equal to an earlier one in
    RubyGems' order (1.0 and 1.0.0). base is where relative URLs are resolved from (where it came from)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("versions"), list):
        raise BadInput(f"{where}: not a catalog (no versions)")
    claimed = _text(doc, "name")
    name = asked_name or (claimed if claimed and NAME_PATTERN.fullmatch(claimed) else None)
    if not name:
        raise BadInput(f"{where}: the catalog has no ORG/NAME name")
    read = Lenient(name, description=_text(doc, "description"))
    seen: dict[tuple, str] = {}  # RubyGems' version key -> the version string first given for it
    for v in doc["versions"]:
        _lenient_version(read, v, where, base or where, seen)
    return read


def _lenient_version(read: Lenient, v: Any, where: str, base: str, seen: dict[tuple, str]) -> None:
    version = _version_of(v, where)
    first = seen.setdefault(version_key(version), version)
    described = _text(v, "description") or _text(v, "description_markdown")
    if described and first == version:
        read.descriptions[version] = described
    for p in _providers_of(v, version, where):
        entry = _lenient_entry(p, version, base)
        if entry.problem is None and first != version:
            entry.problem = f"the same version as {first} to Vagrant (RubyGems' order), which is copied"
        read.entries.append(entry)


def _version_of(v: Any, where: str) -> str:
    version = v.get("version") if isinstance(v, dict) else None
    if not isinstance(version, str) or len(version) > MAX_VERSION or not VERSION_PATTERN.fullmatch(version):
        shown = repr(version[:40] + "...") if isinstance(version, str) and len(version) > 40 else repr(version)
        raise BadInput(f"{where}: version {shown} is not one Vagrant reads")
    return version


def _providers_of(v: dict, version: str, where: str) -> list[dict]:
    providers = v.get("providers") or []
    if not isinstance(providers, list):
        raise BadInput(f"{where}: version {version}: providers is not a list")
    for p in providers:
        if not isinstance(p, dict) or not _text(p, "name") or not _text(p, "url"):
            raise BadInput(f"{where}: version {version} has a provider without a name or url")
    return providers


def _lenient_entry(p: dict, version: str, base: str) -> Entry:
    kind = (_text(p, "checksum_type") or "").lower() or None
    value = (_text(p, "checksum") or "").strip().lower() or None
    arch = _text(p, "architecture") or UNKNOWN_ARCH
    known = bool(kind and value and kind in CHECKSUM_TYPES)
    entry = Entry(version, str(p["name"]), arch, p.get("default_architecture") is True, urljoin(base, p["url"]),
                  kind if known else None, value if known else None)
    if kind and value and not known:
        entry.problem = f"checksum type {kind!r} is not one Vagrant knows ({', '.join(CHECKSUM_TYPES)}), so the box cannot be checked"
    elif not ARCH_PATTERN.fullmatch(arch):
        entry.problem = f"architecture {arch[:40]!r} is not one Vagrant matches (lower case letters, digits, _)"
    return entry


def too_deep(doc: Any) -> bool:
    """Whether doc nests lists and objects more than MAX_DEPTH deep (walked without recursion)."""
    level: list[Any] = [doc]
    for _ in range(MAX_DEPTH + 1):
        level = [x for node in level for x in (node.values() if isinstance(node, dict) else node if isinstance(node, list) else ())]
        if not level:
            return False
    return True


def dumps(doc: Catalog) -> bytes:
    """The catalog's bytes, validated first: nothing invalid is ever written anywhere."""
    problems = check(doc)
    if problems:
        raise InternalError(f"internal error: refusing to write an invalid catalog: {problems[0]}")
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def load(path: str | os.PathLike[str]) -> Catalog | None:
    """The catalog at path, or None when there is none; BoxpackError when it is unreadable or invalid."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise BadInput(f"{path}: cannot read the catalog: {e.strerror}") from None
    return parse(data, str(path))


def add(
    doc: Catalog | None,
    *,
    name: str,
    version: str,
    provider: str,
    url: str,
    checksum: str,
    checksum_type: str = "sha256",
    architecture: str | None = None,
    default_architecture: bool = False,
    description: str | None = None,
    force: bool = False,
    allow_relative: bool = False,
) -> Catalog:
    """A new catalog with the box entry merged in; doc itself is not changed."""
    index = Index(copy.deepcopy(doc) if doc else None, name)
    index.add(version=version, provider=provider, url=url, checksum=checksum, checksum_type=checksum_type,
              architecture=architecture, default_architecture=default_architecture, force=force,
              allow_relative=allow_relative)
    if description is not None:
        index.doc["description"] = description
    return index.catalog()


class Index:
    """A catalog's entries by version, provider and architecture, changed in place and sorted once at the
    end: a mirror looks up and adds thousands of entries, and a scan and a sort per entry made that
    quadratic (8,000 entries took 52 s of CPU)."""

    def __init__(self, doc: Catalog | None, name: str) -> None:
        self.doc: Catalog = doc if doc is not None else {"name": name, "versions": []}
        self.name = name
        self._versions: dict[tuple, dict] = {}
        self._entries: dict[tuple, list[dict]] = {}  # (version key, provider) -> its entries, one per architecture
        for v in self.doc["versions"]:
            key = version_key(v["version"])
            if self._versions.setdefault(key, v) is v:
                for p in v["providers"]:
                    self._entries.setdefault((key, p["name"]), []).append(p)
        self._touched: dict[int, dict] = {}  # id -> a version whose providers were added to, sorted at the end

    def entry(self, version: str, provider: str, architecture: str) -> dict | None:
        """The entry for version, provider and architecture, if any."""
        group = self._entries.get((version_key(version), provider), [])
        return next((p for p in group if p["architecture"] == architecture), None)

    def add(
        self,
        *,
        version: str,
        provider: str,
        url: str,
        checksum: str | None,
        checksum_type: str = "sha256",
        architecture: str | None = None,
        default_architecture: bool = False,
        force: bool = False,
        allow_relative: bool = False,
    ) -> None:
        """Merge one box entry in: it replaces one for the same provider and architecture only with force. Without
        a checksum (a box at a URL elsewhere, released as HCP releases it) the entry has none."""
        check_entry(self.name, version, url, allow_relative)
        arch = architecture or UNKNOWN_ARCH
        if self.doc["name"] != self.name:
            raise BadOption(f"the catalog is for {self.doc['name']}, not {self.name} (vagrant box add would refuse the mismatch)")
        entry_version = self._version(version)
        group = self._entries.setdefault((version_key(version), provider), [])
        clash = [p for p in group if p["architecture"] == arch]
        if clash and not force:
            raise OutputFailed(f"version {version} already has a {provider} box for {arch}; use --force to replace it")
        group[:] = [p for p in group if p not in clash]
        if clash:
            entry_version["providers"] = [p for p in entry_version["providers"] if p not in clash]
        is_default = _takes_default(group, arch, default_architecture or any(p["default_architecture"] for p in clash))
        new = {"name": provider, "url": url, **_digest(checksum_type, checksum), "architecture": arch,
               "default_architecture": is_default}
        group.append(new)
        entry_version["providers"].append(new)
        self._touched[id(entry_version)] = entry_version

    def _version(self, version: str) -> dict:
        """The catalog's version entry for version, made if there is none."""
        key = version_key(version)
        found = self._versions.get(key)
        if found is None:
            found = self._versions[key] = {"version": version, "providers": []}
            self.doc["versions"].append(found)
        return found

    def catalog(self) -> Catalog:
        """The catalog with every change, in Vagrant's order."""
        for v in self._touched.values():
            v["providers"] = _providers_sorted(v["providers"])
        self._touched = {}
        self.doc["versions"].sort(key=lambda v: version_key(v["version"]))
        return self.doc


def _digest(checksum_type: str, checksum: str | None) -> dict[str, str]:
    """An entry's checksum and its type as the catalog holds them (lower case, bare hex of the right length); none
    for an entry without a checksum."""
    if checksum is None:
        return {}
    checksum_type = checksum_type.lower()
    if checksum_type not in CHECKSUM_TYPES:
        raise BadOption(f"checksum type {checksum_type!r} is not one Vagrant knows: {', '.join(CHECKSUM_TYPES)}")
    checksum = checksum.strip().lower()
    if not re.fullmatch(r"[0-9a-f]+", checksum) or len(checksum) != CHECKSUM_TYPES[checksum_type]:
        raise BadOption(f"checksum {checksum!r} is not a bare {checksum_type} hex digest")
    return {"checksum": checksum, "checksum_type": checksum_type}


def _takes_default(group: list[dict], arch: str, asked: bool) -> bool:
    """Whether a new entry of arch is its provider's default (the others then are not). amd64 takes the default from
    another architecture unless one was asked for: Vagrant <= 2.3 ignores architectures and runs the default (last)
    entry, and its hosts are amd64. The default then does not depend on the order in which concurrent publishers
    add their entries."""
    current = next((p for p in group if p["default_architecture"]), None)
    if asked or current is None or (arch == "amd64" and current["architecture"] != "amd64"):
        for p in group:
            p["default_architecture"] = False
        return True
    return False


def remove(doc: Catalog, version: str, provider: str | None = None, architecture: str | None = None) -> Catalog:
    """A new catalog without the matching entries; a version left empty goes too."""
    def match(v: dict, p: dict) -> bool:
        return (version_key(v["version"]) == version_key(version) and (provider is None or p["name"] == provider)
                and (architecture is None or p["architecture"] == architecture))

    doc, removed = without(doc, match)
    if not removed:
        what = " ".join(x for x in (provider, architecture) if x)
        raise BadOption(f"the catalog has no {what + ' ' if what else ''}entry in version {version}")
    return doc


def without(doc: Catalog, match: Callable[[dict, dict], bool]) -> tuple[Catalog, list[tuple[str, dict]]]:
    """A new catalog without the entries match(version, entry) takes, and those entries as (version, entry); a
    version left empty goes, and a provider whose default went gets another (amd64 if it is there, most hosts)."""
    doc = copy.deepcopy(doc)
    removed: list[tuple[str, dict]] = []
    for v in doc["versions"]:
        gone = [p for p in v["providers"] if match(v, p)]
        if gone:
            removed += [(v["version"], p) for p in gone]
            v["providers"] = _with_defaults([p for p in v["providers"] if p not in gone])
    doc["versions"] = [v for v in doc["versions"] if v["providers"]]
    return doc, removed


def _with_defaults(providers: list[dict]) -> list[dict]:
    """Each provider name with one default entry, in Vagrant's order."""
    for name in {p["name"] for p in providers}:
        entries = [p for p in providers if p["name"] == name]
        if not any(p["default_architecture"] for p in entries):
            promoted = next((p for p in entries if p["architecture"] == "amd64"), entries[0])
            promoted["default_architecture"] = True
    return _providers_sorted(providers)


def table(doc: Catalog, downloads: dict[tuple[str, str, str], int] | None = None) -> str:
    """The catalog as a table, one row per box; with downloads (a published catalog's), how often each was."""
    rows = [("VERSION", "PROVIDER", "ARCH", "DEFAULT", "CHECKSUM", *(("DOWNLOADS",) if downloads is not None else ()), "URL")]
    for v in doc["versions"]:
        for p in v["providers"]:
            counted = (str(downloads.get((v["version"], p["name"], p["architecture"]), 0)),) if downloads is not None else ()
            rows.append(
                (v["version"], p["name"], p["architecture"], "yes" if p["default_architecture"] else "",
                 f"{p['checksum_type']}:{p['checksum'][:12]}" if "checksum" in p else "none", *counted, p["url"])
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = [doc["name"] + (f": {doc['description']}" if doc.get("description") else "")]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]
    return "\n".join(lines) + "\n"


def save(path: str | os.PathLike[str], doc: Catalog) -> None:
    """Validate, then write atomically (files.py)."""
    files.write_atomically(Path(path), dumps(doc), "the catalog", replace=True)


def update(path: str | os.PathLike[str], change: Callable[[Catalog | None], Catalog]) -> Catalog:
    """Read, change and write the catalog at path under its lock; returns what was written.

    A catalog that is a symlink stays one: its target is updated.
    """
    path = Path(os.path.realpath(path))
    if not path.parent.is_dir():
        raise OutputFailed(f"{path.parent}: no such directory for the catalog")
    try:
        with files.locked(path.parent):
            doc = change(load(path))
            save(path, doc)
    except OSError as e:
        raise OutputFailed(f"{path}: cannot write the catalog: {e.strerror}") from None
    return doc


def file_digest(path: str | os.PathLike[str], checksum_type: str = "sha256") -> str:
    """The hex digest of a file, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, checksum_type).hexdigest()


def add_box(
    path: str | os.PathLike[str],
    box: str | os.PathLike[str],
    *,
    name: str,
    version: str,
    url: str,
    provider: str | None = None,
    architecture: str | None = None,
    checksum: str | None = None,
    checksum_type: str = "sha256",
    default_architecture: bool = False,
    description: str | None = None,
    force: bool = False,
    allow_relative: bool = False,
) -> Catalog:
    """Record a box file in the catalog at path (created if missing).

    provider and architecture come from the box's metadata.json unless given;
    the checksum is computed from the file unless given.
    """
    box = Path(box)
    if provider is None or architecture is None:
        meta = read_metadata(box)
        provider = provider or text(meta, "provider")
        architecture = architecture or text(meta, "architecture")
        if not provider:
            raise BadInput(f"{box}: metadata.json names no provider; give --provider")
    if checksum is None:
        try:
            checksum = file_digest(box, checksum_type)
        except OSError as e:
            raise BadInput(f"{box}: cannot read: {e.strerror}") from None
    return update(
        path,
        lambda doc: add(
            doc,
            name=name,
            version=version,
            provider=provider,
            url=url,
            checksum=checksum,
            checksum_type=checksum_type,
            architecture=architecture,
            default_architecture=default_architecture,
            description=description,
            force=force,
            allow_relative=allow_relative,
        ),
    )
