"""inspect and verify: read any box (or bare disk) once, as a stream, and say what it is and what is wrong.

The archive is streamed once with bounded memory: nothing is extracted, no
link is followed, members are read through forward-only views. The raw bytes
are hashed as they are read (for --checksum), and decompression stops when a
box inflates to more than MAX_RATIO times its size (a gzip bomb). Every
finding has a stable code, a severity and a one-line explanation.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import os
import re
import sys
import tarfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from lxml import etree

from . import catalog as catalog_mod
from . import ovf, qcow2, vmdk
from .errors import BoxpackError
from .metadata import GIB, validate
from .partitions import read_partition_table
from .source import StreamBytes, open_source

MAX_RATIO = 1000  # a qcow2 of zeros compresses about 1000:1; more is a bomb
MIN_BUDGET = 1 * GIB
TEXT_LIMIT = 16 * 1024 * 1024  # metadata.json, Vagrantfile and box.ovf larger than this are not read
OLD_BSDTAR_LIMIT = 8 * GIB
PROVIDER_DISKS = {"libvirt": ("box.img",), "virtualbox": (".vmdk",)}


@dataclass
class Finding:
    code: str
    severity: str  # error, warning, info
    message: str


@dataclass
class Report:
    path: str
    kind: str = "box"  # box or disk
    compression: str | None = None
    members: list[dict] = field(default_factory=list)
    metadata: dict | None = None
    vagrantfile: dict = field(default_factory=dict)
    disk: dict = field(default_factory=dict)
    partitions: dict | None = None
    ovf: dict | None = None
    checksum: dict | None = None
    findings: list[Finding] = field(default_factory=list)
    unreadable: str | None = None

    def add(self, code: str, severity: str, message: str) -> None:
        self.findings.append(Finding(code, severity, message))

    @property
    def exit_code(self) -> int:
        if self.unreadable:
            return 2
        return 1 if any(f.severity in ("error", "warning") for f in self.findings) else 0

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "exit_code": self.exit_code}, indent=2, default=str)


class _HashingReader:
    """The raw box bytes as read: hashed, counted, with the first bytes kept for sniffing."""

    def __init__(self, f: BinaryIO, algorithms: set[str]) -> None:
        self.f = f
        self.hashes = {a: hashlib.new(a) for a in sorted(algorithms)}
        self.count = 0
        self.head = f.read(512)
        self._pending = self.head

    def read(self, n: int = -1) -> bytes:
        if self._pending:
            data, self._pending = self._pending[: n if n >= 0 else None], self._pending[n if n >= 0 else len(self._pending):]
            if n < 0 or len(data) < n:
                data += self.f.read(-1 if n < 0 else n - len(data))
        else:
            data = self.f.read(n)
        for h in self.hashes.values():
            h.update(data)
        self.count += len(data)
        return data

    def readinto(self, buf) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        while self.read(1024 * 1024):
            pass


class _Budget:
    """Decompressed bytes, stopped at MAX_RATIO times the compressed bytes read so far."""

    def __init__(self, inner: BinaryIO, raw: _HashingReader) -> None:
        self.inner, self.raw, self.total = inner, raw, 0

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.total += len(data)
        if self.total > max(MIN_BUDGET, MAX_RATIO * self.raw.count):
            raise _Bomb(f"inflates to more than {MAX_RATIO} times its size (a decompression bomb?)")
        return data


class _Bomb(Exception):
    pass


def _compression(head: bytes) -> str:
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[:3] == b"BZh":
        return "bzip2"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    if head[257:262] == b"ustar":
        return "none"
    return "unknown"


def _decompressor(kind: str, raw: _HashingReader) -> BinaryIO:
    if kind == "gzip":
        try:
            from isal import igzip

            return igzip.IGzipFile(fileobj=raw, mode="rb")
        except ImportError:  # pragma: no cover
            return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "xz":
        return lzma.LZMAFile(raw)
    if kind == "bzip2":
        return bz2.BZ2File(raw)
    return raw


def _parse_checksum(spec: str) -> tuple[str, str]:
    kind, _, hexdigest = spec.partition(":")
    kind = kind.lower()
    if kind not in catalog_mod.CHECKSUM_TYPES or not re.fullmatch(r"[0-9a-fA-F]+", hexdigest):
        raise BoxpackError(f"--checksum {spec!r}: give TYPE:HEX with TYPE one of {', '.join(catalog_mod.CHECKSUM_TYPES)}")
    return kind, hexdigest.lower()


def examine(
    path: str,
    *,
    checksum: str | None = None,
    catalog: str | None = None,
    version: str | None = None,
    threads: int = 2,
    disks: bool = False,
) -> Report:
    """Read a box (or, with disks, a bare disk) at path ("-" for stdin): facts and findings. Never raises for bad input."""
    report = Report(path)
    expected = _parse_checksum(checksum) if checksum else None
    entries = _catalog_entries(catalog, version) if catalog else []
    algorithms = {p["checksum_type"] for _, p in entries} | ({expected[0]} if expected else set())
    try:
        f = sys.stdin.buffer if path == "-" else open(path, "rb")
    except FileNotFoundError:
        report.unreadable = f"{path}: no such file"
        return report
    except IsADirectoryError:
        report.unreadable = f"{path}: is a directory"
        return report
    except OSError as e:
        report.unreadable = f"{path}: cannot open: {e.strerror}"
        return report
    with f:
        raw = _HashingReader(f, algorithms)
        report.compression = _compression(raw.head)
        if report.compression == "unknown":
            if path == "-" or not disks:
                report.unreadable = f"{'stdin' if path == '-' else path}: not a box (no tar, gzip, xz or bzip2 archive)"
                return report
            _examine_disk(Path(path), report, threads)
            return report
        if report.compression == "zstd":
            report.add("box-zstd", "warning", "zstd boxes need a bsdtar with zstd; Vagrant's installers do not bundle it")
            report.unreadable = f"{path}: zstd boxes cannot be read here"
            return report
        try:
            stream = _Budget(_decompressor(report.compression, raw), raw)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                _walk(tar, report, threads)
            raw.drain()
        except _Bomb as e:
            report.unreadable = f"{path}: {e}"
        except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error, isal_error) as e:
            report.add("archive-truncated", "error", f"the archive is damaged or cut short ({e})")
            report.unreadable = f"{path}: not a readable box archive ({e})"
    if expected and not report.unreadable:
        actual = raw.hashes[expected[0]].hexdigest()
        report.checksum = {"type": expected[0], "expected": expected[1], "actual": actual}
        if actual != expected[1]:
            report.add("checksum-mismatch", "error", f"{expected[0]} is {actual}, expected {expected[1]}")
    if catalog and not report.unreadable:
        _check_catalog(path, catalog, version, entries, {a: h.hexdigest() for a, h in raw.hashes.items()}, report)
    if not report.unreadable:
        _box_rules(report)
    return report


try:
    from isal.isal_zlib import error as isal_error
except ImportError:  # pragma: no cover
    isal_error = OSError


def _walk(tar: tarfile.TarFile, report: Report, threads: int) -> None:
    seen: set[str] = set()
    texts: dict[str, bytes] = {}
    for m in tar:
        name = m.name
        norm = name.removeprefix("./")
        kind = "file" if m.isfile() else "dir" if m.isdir() else "symlink" if m.issym() else "hardlink" if m.islnk() else "device" if (m.ischr() or m.isblk()) else "fifo" if m.isfifo() else "other"
        report.members.append({"name": name, "size": m.size, "type": kind})
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
            report.add("unsafe-path", "error", f"member {name!r} has an absolute path")
        if ".." in re.split(r"[/\\]", name):
            report.add("unsafe-path", "error", f"member {name!r} climbs out of the box directory with '..'")
        if kind in ("symlink", "hardlink"):
            report.add("link-member", "error", f"member {name!r} is a {kind} to {m.linkname!r}; boxes hold regular files")
        elif kind in ("device", "fifo", "other"):
            report.add("special-member", "error", f"member {name!r} is a {kind}")
        if norm in seen and kind != "dir":
            report.add("duplicate-member", "error", f"member {norm!r} appears twice; which one is extracted depends on the tool")
        seen.add(norm)
        if m.size >= OLD_BSDTAR_LIMIT and "size" in m.pax_headers:
            report.add("tar-pax-large", "warning", f"member {name!r} is {m.size} bytes with a PAX size record; libarchive before 3.3.2 reads it as empty (use GNU headers)")
        if kind != "file":
            continue
        if norm in ("metadata.json", "Vagrantfile", "box.ovf", "info.json") and m.size <= TEXT_LIMIT:
            texts[norm] = tar.extractfile(m).read()
            continue
        if norm.endswith((".img", ".vmdk", ".qcow2", ".raw")) and not report.disk:
            _examine_member(tar, m, norm, report, threads)
    _read_texts(texts, report)


def _examine_member(tar: tarfile.TarFile, m: tarfile.TarInfo, name: str, report: Report, threads: int) -> None:
    data = StreamBytes(tar.extractfile(m), m.size, name)
    head = data.pread(0, 4)
    try:
        if head == qcow2.MAGIC:
            facts, findings = qcow2.check(data, name)
        elif head == vmdk.MAGIC:
            facts, findings = vmdk.check(data, name, threads)
        else:
            facts, findings = {"format": "raw", "virtual_size": m.size}, []
    except BoxpackError as e:
        facts, findings = {"format": "unreadable"}, [("disk-unreadable", "error", str(e))]
    except (tarfile.TarError, EOFError, OSError):
        raise  # the archive itself is damaged: reported by examine()
    except Exception as e:  # hostile headers: whatever the parsers trip on is a finding, not a crash
        facts, findings = {"format": "unreadable"}, [("disk-unreadable", "error", f"{name}: unreadable ({type(e).__name__}: {e})")]
    report.disk = {"member": name, **facts}
    for code, severity, message in findings:
        report.add(code, severity, message)


def _read_texts(texts: dict[str, bytes], report: Report) -> None:
    if "metadata.json" in texts:
        try:
            report.metadata = json.loads(texts["metadata.json"])
        except (ValueError, UnicodeDecodeError) as e:
            report.add("metadata-invalid", "error", f"metadata.json is not valid JSON ({e})")
    if "Vagrantfile" in texts:
        text = texts["Vagrantfile"].decode("utf-8", "replace")
        mac = re.search(r"""base_mac\s*=\s*["']([0-9A-Fa-f:]+)["']""", text)
        firmware = "efi" if re.search(r"""--firmware["']?\s*,\s*["']efi|\.loader\s*=""", text) else None
        report.vagrantfile = {"base_mac": mac.group(1) if mac else None, "firmware": firmware}
    if "box.ovf" in texts:
        report.ovf = {"xml": texts["box.ovf"]}


def _ovf_facts(xml: bytes) -> dict[str, Any]:
    root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
    ns = {"ovf": ovf.OVF_NS, "rasd": ovf.RASD_NS}
    disk = root.find(".//ovf:DiskSection/ovf:Disk", ns)
    items = root.findall(".//ovf:VirtualHardwareSection/ovf:Item", ns)
    by_type: dict[str, list] = {}
    for it in items:
        by_type.setdefault(it.findtext("rasd:ResourceType", namespaces=ns), []).append(it)
    ostype = root.find(".//{%s}OSType" % ovf.VBOX_NS)
    return {
        "capacity": int(disk.get(f"{{{ovf.OVF_NS}}}capacity")) if disk is not None and (disk.get(f"{{{ovf.OVF_NS}}}capacity") or "").isdigit() else None,
        "files": [e.get(f"{{{ovf.OVF_NS}}}href") for e in root.iterfind(".//ovf:References/ovf:File", ns)],
        "cpus": next((i.findtext("rasd:VirtualQuantity", namespaces=ns) for i in by_type.get("3", [])), None),
        "memory_mb": next((i.findtext("rasd:VirtualQuantity", namespaces=ns) for i in by_type.get("4", [])), None),
        "controllers": [i.findtext("rasd:ResourceSubType", namespaces=ns) or i.findtext("rasd:ElementName", namespaces=ns)
                        for t in ("5", "6", "20") for i in by_type.get(t, [])],
        "os_type": ostype.text if ostype is not None else None,
    }


def _box_rules(report: Report) -> None:
    """The rules across members: metadata, provider, disk size, OVF."""
    names = {m["name"].removeprefix("./"): m for m in report.members}
    xml = report.ovf.pop("xml") if report.ovf else None
    if xml is not None:
        try:
            report.ovf = _ovf_facts(xml)
        except (etree.XMLSyntaxError, ValueError, AttributeError):
            report.ovf = {}
    meta = report.metadata
    if meta is None:
        if "metadata.json" not in names:
            report.add("metadata-missing", "error", "no metadata.json at the root; Vagrant refuses the box")
        return
    try:
        validate(meta, "metadata.schema.json", "metadata.json")
    except BoxpackError as e:
        report.add("metadata-invalid", "error", str(e))
    provider = meta.get("provider") if isinstance(meta, dict) else None
    if provider == "libvirt" and not (isinstance(meta, dict) and meta.get("disks")):
        if "box.img" not in names:
            report.add("provider-mismatch", "error", "metadata.json says libvirt but there is no box.img")
        elif report.disk.get("member") == "box.img" and not str(report.disk.get("format", "")).startswith("qcow2"):
            report.add("libvirt-not-qcow2", "error", f"box.img is {report.disk.get('format')}, vagrant-libvirt needs qcow2")
        size = report.disk.get("virtual_size")
        declared = meta.get("virtual_size")
        if isinstance(declared, int) and size and declared * GIB < size:
            report.add("virtual-size-too-small", "error",
                       f"metadata.json says virtual_size {declared} GiB but box.img is {size} bytes "
                       f"({-(-size // GIB)} GiB rounded up); vagrant-libvirt would make the volume too small")
    elif provider == "virtualbox":
        if xml is None:
            report.add("ovf-missing", "error", "metadata.json says virtualbox but there is no box.ovf")
            return
        for problem in ovf.check(xml, {n: m["size"] for n, m in names.items()}):
            code = "ovf-missing-file" if "not in the box" in problem else "ovf-rule"
            report.add(code, "error", problem)
        cap, vsize = (report.ovf or {}).get("capacity"), report.disk.get("virtual_size")
        if cap is not None and vsize is not None and str(report.disk.get("format", "")).startswith("vmdk") and cap != vsize:
            report.add("ovf-capacity-mismatch", "error", f"box.ovf says the disk holds {cap} bytes, the VMDK header {vsize}")
    elif provider and provider not in PROVIDER_DISKS:
        report.add("provider-unchecked", "info", f"provider {provider!r}: only the archive and metadata were checked")


def _catalog_entries(catalog_path: str, version: str | None) -> list[tuple[str, dict]]:
    """(version, provider entry) pairs a box may be checked against; read before the box is."""
    doc = catalog_mod.load(catalog_path)
    if doc is None:
        raise BoxpackError(f"{catalog_path}: no such catalog")
    return [
        (v["version"], p)
        for v in doc["versions"]
        if version is None or catalog_mod.version_key(v["version"]) == catalog_mod.version_key(version)
        for p in v["providers"]
    ]


def _check_catalog(
    path: str, catalog_path: str, version: str | None, entries: list[tuple[str, dict]], digests: dict[str, str], report: Report
) -> None:
    """The catalog entry for this box (by URL file name, else provider and architecture) against its digest."""
    meta = report.metadata if isinstance(report.metadata, dict) else {}
    base = os.path.basename(path)
    match = [e for e in entries if e[1]["url"].rsplit("/", 1)[-1] == base] or [
        e for e in entries if e[1]["name"] == meta.get("provider") and e[1]["architecture"] == meta.get("architecture", "unknown")
    ]
    if not match:
        report.add("catalog-no-entry", "error", f"{catalog_path} has no entry for this box" + (f" in version {version}" if version else ""))
        return
    v, entry = match[0]
    actual = digests[entry["checksum_type"]]
    if actual != entry["checksum"]:
        report.add("checksum-mismatch", "error", f"catalog version {v} {entry['name']}/{entry['architecture']}: {entry['checksum_type']} is {actual}, the catalog says {entry['checksum']}")


def _examine_disk(path: Path, report: Report, threads: int) -> None:
    """A bare disk: its format facts, structural checks and partition table."""
    report.kind = "disk"
    report.compression = None
    try:
        with open_source(path, threads) as src:
            report.disk = {"format": src.format, "virtual_size": src.size, "file_size": os.path.getsize(path)}
            if src.format.startswith(("qcow2", "vmdk")):
                from .source import FileBytes

                fd = os.open(path, os.O_RDONLY)
                try:
                    data = FileBytes(fd, os.path.getsize(path), path.name)
                    check = qcow2.check if src.format.startswith("qcow2") else vmdk.check
                    facts, findings = check(data, path.name)
                finally:
                    os.close(fd)
                report.disk.update(facts)
                for code, severity, message in findings:
                    report.add(code, severity, message)
                next(iter(src.scan()), None)  # cluster 0, for the partition table
            else:
                report.disk["allocated"] = sum(e - s for s, e in src.extents())
            table = read_partition_table(src)
    except BoxpackError as e:
        report.unreadable = str(e)
        return
    except Exception as e:  # hostile headers
        report.unreadable = f"{path}: unreadable ({type(e).__name__}: {e})"
        return
    fw, why = table.firmware()
    report.partitions = {
        "table": table.kind,
        "partitions": [{"number": p.number, "type": p.type, "first_lba": p.first_lba, "last_lba": p.last_lba, "name": p.name} for p in table.partitions],
        "architecture": table.architecture(),
        "firmware": fw,
        "firmware_reason": why,
    }


def render_inspect(r: Report) -> str:
    """The facts, as a person reads them."""
    lines = [f"{r.path}: {r.kind}" + (f", {r.compression} compression" if r.compression else "")]
    if r.members:
        lines.append("members:")
        lines += [f"  {m['size']:>14}  {m['type']:<8} {m['name']}" for m in r.members]
    if r.metadata is not None:
        lines.append(f"metadata.json: {json.dumps(r.metadata)}")
    if r.vagrantfile:
        lines.append(f"Vagrantfile: base_mac {r.vagrantfile.get('base_mac') or 'not set'}, firmware {r.vagrantfile.get('firmware') or 'default (bios)'}")
    if r.disk:
        lines.append("disk: " + ", ".join(f"{k} {v}" for k, v in r.disk.items()))
    if r.ovf:
        lines.append("box.ovf: " + ", ".join(f"{k} {v}" for k, v in r.ovf.items()))
    if r.partitions:
        p = r.partitions
        lines.append(f"partition table: {p['table']}, architecture {p['architecture'] or 'unknown'}, firmware {p['firmware']} ({p['firmware_reason']})")
        lines += [f"  {q['number']:>3}  {q['first_lba']:>12}-{q['last_lba']:<12} {q['type']}  {q['name']}" for q in p["partitions"]]
    if r.unreadable:
        lines.append(f"could not be read: {r.unreadable}")
    return "\n".join(lines) + "\n"


def render_verify(r: Report) -> str:
    lines = [f"{f.severity.upper():<7} {f.code}: {f.message}" for f in r.findings]
    if r.unreadable:
        lines.append(f"ERROR   unreadable: {r.unreadable}")
    problems = sum(f.severity in ("error", "warning") for f in r.findings)
    lines.append(f"{r.path}: " + ("could not be read" if r.unreadable else f"{problems} problem(s)" if problems else "OK"))
    return "\n".join(lines) + "\n"
