"""inspect and verify: read any box (or bare disk) once, as a stream, and say what it is and what is wrong.

The archive is streamed once with bounded memory: nothing is extracted, no
link is followed, members are read through forward-only views. The raw bytes
are hashed as they are read (for --checksum), and decompression stops when a
box inflates to more than box.MAX_RATIO times its size (a gzip bomb). The disk's
checks come from its format (formats/), the box's from its provider
(providers/); every finding has a stable code, a severity and one line.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import tarfile
from pathlib import Path
from typing import BinaryIO

from .. import catalog as catalog_mod
from .. import vagrantfile
from ..disk.bytesource import FileBytes, Reopen, StreamBytes
from ..disk.esp import EspProbe, architecture, probe_disk
from ..disk.partitions import PartitionTable, read_partition_table
from ..errors import BadOption, BoxpackError
from ..formats import HEAD, RAW, TAIL, detect
from .. import metadata
from ..metadata import validate
from ..providers import PROVIDERS, V1_BOX
from ..report import Report
from ..sources import archive
from ..sources import box as boxfile
from ..sources.compressed_disk import CompressedRawDisk, peek
from ..sources.open import open_source

TEXT_LIMIT = 4 * 1024 * 1024  # metadata.json, Vagrantfile and box.ovf larger than this are not read
OLD_BSDTAR_LIMIT = 8 * 1024**3
TEXTS = {"metadata.json", "Vagrantfile", "info.json", *(t for p in PROVIDERS.values() for t in p.TEXTS if not t.startswith("."))}
TEXT_SUFFIXES = tuple(t for p in PROVIDERS.values() for t in p.TEXTS if t.startswith("."))
# What a damaged or cut archive raises while it is walked.
DAMAGE: tuple[type[BaseException], ...] = (*archive.ARCHIVE_ERRORS, ValueError)


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

    def close(self) -> None:
        """The file is closed by examine()."""


def _parse_checksum(spec: str) -> tuple[str, str]:
    kind, _, hexdigest = spec.partition(":")
    kind = kind.lower()
    if kind not in catalog_mod.CHECKSUM_TYPES or not re.fullmatch(r"[0-9a-fA-F]+", hexdigest):
        raise BadOption(f"--checksum {spec!r}: give TYPE:HEX with TYPE one of {', '.join(catalog_mod.CHECKSUM_TYPES)}")
    return kind, hexdigest.lower()


def examine(
    path: str,
    *,
    checksum: str | None = None,
    catalog: str | None = None,
    box_version: str | None = None,
    threads: int = 2,
    disks: bool = False,
    stream: BinaryIO | None = None,
) -> Report:
    """Read a box (or, with disks, a bare disk) at path ("-" for stdin), or from stream (path then only
    names it): facts and findings. Never raises for bad input."""
    report = Report(path)
    streamed = stream is not None or path == "-"
    expected = _parse_checksum(checksum) if checksum else None
    entries = _catalog_entries(catalog, box_version) if catalog else []
    algorithms = {p["checksum_type"] for _, p in entries if "checksum_type" in p} | ({expected[0]} if expected else set())
    try:
        f = stream or (sys.stdin.buffer if path == "-" else open(path, "rb"))
    except FileNotFoundError:
        report.unreadable = f"{path}: no such file"
        return report
    except IsADirectoryError:
        report.unreadable = f"{path}: is a directory"
        return report
    except OSError as e:
        report.unreadable = f"{path}: cannot open: {e.strerror}"
        return report
    texts: dict[str, bytes] = {}
    with contextlib.nullcontext(f) if stream is not None else f:  # a stream given is the caller's to close
        raw = _HashingReader(f, algorithms)
        report.compression = archive.compression(raw.head)
        if report.compression is None:
            if streamed or not disks:
                report.unreadable = f"{'stdin' if path == '-' else path}: not a box (no tar, gzip, xz, bzip2 or zstd archive)"
                return report
            _examine_disk(Path(path), report, threads)
            return report
        if not streamed and report.compression != "none" and not _holds_tar(Path(path), report.compression):
            if not disks:
                report.unreadable = f"{path}: {report.compression}-compressed, but not a tar archive, so not a box"
                return report
            _examine_disk(Path(path), report, threads)
            return report
        try:
            budget = archive.box_budget(archive.decompressor(report.compression, raw), lambda: raw.count, path)
            with archive.read_tar(budget) as tar:
                texts = _walk(tar, report, threads, None if streamed else Path(path))
            raw.drain()
        except BoxpackError as e:
            report.unreadable = str(e)
        except DAMAGE as e:
            report.add("archive-truncated", "error", f"the archive is damaged or cut short ({e})")
            report.unreadable = f"{path}: not a readable box archive ({e})"
    if expected and not report.unreadable:
        actual = raw.hashes[expected[0]].hexdigest()
        report.checksum = {"type": expected[0], "expected": expected[1], "actual": actual}
        if actual != expected[1]:
            report.add("checksum-mismatch", "error", f"{expected[0]} is {actual}, expected {expected[1]}")
    if catalog and not report.unreadable:
        _check_catalog(path, catalog, box_version, entries, {a: h.hexdigest() for a, h in raw.hashes.items()}, report)
    if not report.unreadable:
        _box_rules(report, texts)
        if not streamed and report.disks:
            _box_disk(Path(path), report, threads)
            _firmware_rule(report)
    return report


def _firmware_rule(report: Report) -> None:
    """A disk that boots with UEFI only, in a VM whose own configuration says BIOS, does not boot."""
    vm, disk = report.vm_firmware, report.partitions
    if vm and disk and vm["firmware"] == "bios" and disk["firmware"] == "efi":
        report.add("firmware-mismatch", "error", f"{vm['from']} boots the VM with BIOS, but the disk boots with UEFI "
                   f"only ({disk['firmware_reason']}): the VM would not boot it")


def _kind(m: tarfile.TarInfo) -> str:
    if m.isfile():
        return "file"
    if m.isdir():
        return "dir"
    if m.issym():
        return "symlink"
    if m.islnk():
        return "hardlink"
    if m.ischr() or m.isblk():
        return "device"
    return "fifo" if m.isfifo() else "other"


def _walk(tar: tarfile.TarFile, report: Report, threads: int, box: Path | None) -> dict[str, bytes]:
    """Every member's facts and safety; the disk's checks; returns the small text members by name.
    A box that is a file (box) may be read again for a disk whose tables come after its data."""
    seen: set[str] = set()
    texts: dict[str, bytes] = {}
    disks = boxfile.DiskList(report.path)  # which members are disks: what packing takes, checked here
    for ordinal, m in archive.members(tar, report.path):
        name = m.name
        norm = name.removeprefix("./")
        kind = _kind(m)
        report.member_count += 1
        if len(report.members) < Report.MAX_LISTED:
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
        listing = boxfile.DiskList.lists(norm)
        if (norm in TEXTS or norm.lower().endswith(TEXT_SUFFIXES) or listing) and m.size <= TEXT_LIMIT and len(texts) < 64:  # vm.XML: import.rb takes extname.downcase
            texts[norm] = archive.member_file(tar, m).read()
            if listing:
                with contextlib.suppress(BoxpackError):  # a broken metadata.json or descriptor is reported with the texts
                    disks.note(norm, texts[norm])
            continue
        if _is_disk(disks, norm):
            if len(report.disks) < Report.MAX_DISKS:
                reopen = boxfile.reopener(box, norm, ordinal, m.size) if box is not None else None
                _examine_member(tar, m, norm, report, threads, reopen)
            elif len(report.disks) == Report.MAX_DISKS:
                report.add("disks-unchecked", "info", f"more than {Report.MAX_DISKS} disk images; only the first were checked")
    with contextlib.suppress(BoxpackError):  # a descriptor after the images: the disks are those it names
        listed = disks.wanted()
        if listed:
            report.disks = [d for d in report.disks if d["member"] in listed]
    _read_texts(texts, report)
    return texts


def _is_disk(disks: boxfile.DiskList, name: str) -> bool:
    """A disk by the box's own list; where that list is refused (a disk named twice), by its name."""
    try:
        return disks.is_disk(name)
    except BoxpackError:
        return name.lower().endswith(boxfile.DISK_SUFFIXES)


def _examine_member(tar: tarfile.TarFile, m: tarfile.TarInfo, name: str, report: Report, threads: int, reopen: Reopen | None) -> None:
    if m.size <= 0:
        report.disks.append({"member": name, "format": "empty", "virtual_size": 0})
        report.add("disk-empty", "error", f"{name}: the disk member is empty")
        return
    data = StreamBytes(archive.member_file(tar, m), m.size, name, reopen=reopen)
    fmt = detect(data.pread(0, HEAD))
    try:
        if fmt.check is not None:
            facts, findings = fmt.check(data, name, threads)
            report.findings.extend(findings)
        elif fmt is RAW:
            facts = {"format": "raw", "virtual_size": m.size}
        else:
            facts = {"format": fmt.name}
            report.add("disk-unchecked", "info", f"{name}: a {fmt.name} disk, which boxpack cannot check yet")
    except BoxpackError as e:
        facts = {"format": "unreadable"}
        report.add("disk-unreadable", "error", str(e))
    except (tarfile.TarError, EOFError, OSError):
        raise  # the archive itself is damaged: reported by examine()
    except Exception as e:  # hostile headers: whatever the parsers trip on is a finding, not a crash
        facts = {"format": "unreadable"}
        report.add("disk-unreadable", "error", f"{name}: unreadable ({type(e).__name__}: {e})")
    report.disks.append({"member": name, **facts})


def _read_texts(texts: dict[str, bytes], report: Report) -> None:
    if "metadata.json" in texts:
        try:
            report.metadata = metadata.parse_metadata(texts["metadata.json"], "box")
        except BoxpackError as e:
            report.add("metadata-invalid", "error", str(e).removeprefix("box: "))
    if "Vagrantfile" in texts:
        text = texts["Vagrantfile"].decode("utf-8", "replace")
        mac = re.search(r"""base_mac\s*=\s*["']([0-9A-Fa-f:]+)["']""", text)
        firmware = "efi" if re.search(r"""--firmware["']?\s*,\s*["']efi|\.loader\s*=""", text) else None
        report.vagrantfile = {"base_mac": mac.group(1) if mac else None, "firmware": firmware}
        syntax = vagrantfile.ruby_syntax(texts["Vagrantfile"])
        if syntax:
            report.add("vagrantfile-syntax", "error", f"Vagrantfile: {syntax}")


def _box_rules(report: Report, texts: dict[str, bytes]) -> None:
    """The rules across members: metadata, then the provider's own."""
    meta = report.metadata
    names = {m["name"].removeprefix("./") for m in report.members}
    if meta is None and "metadata.json" not in names and "box.ovf" in names:
        # A V1 box, as `vagrant package` of VirtualBox 4.x wrote it: Vagrant adds it as a virtualbox box and
        # writes the metadata itself (lib/vagrant/box_collection.rb, v1_box? and v1_upgrade).
        report.add("box-v1", "info", "no metadata.json: an old (V1) VirtualBox box, which Vagrant upgrades as it adds it")
        PROVIDERS[V1_BOX].check_box(report, texts)
        return
    if meta is None:
        if "metadata.json" not in names:
            report.add("metadata-missing", "error", "no metadata.json at the root; Vagrant refuses the box")
        return
    try:
        validate(meta, "metadata.schema.json", "metadata.json")
    except BoxpackError as e:
        report.add("metadata-invalid", "error", str(e))
    provider = metadata.text(meta, "provider")
    if provider in PROVIDERS:
        PROVIDERS[provider].check_box(report, texts)
    elif provider:
        report.add("provider-unchecked", "info", f"provider {provider!r}: only the archive and metadata were checked")


def _catalog_entries(catalog_path: str, version: str | None) -> list[tuple[str, dict]]:
    """(version, provider entry) pairs a box may be checked against; read before the box is."""
    doc = catalog_mod.load(catalog_path)
    if doc is None:
        raise BadOption(f"{catalog_path}: no such catalog")
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
        e for e in entries if e[1]["name"] == metadata.text(meta, "provider") and e[1]["architecture"] == (metadata.text(meta, "architecture") or "unknown")
    ]
    if not match:
        report.add("catalog-no-entry", "error", f"{catalog_path} has no entry for this box" + (f" in version {version}" if version else ""))
        return
    v, entry = match[0]
    if "checksum" not in entry:
        report.add("catalog-no-checksum", "warning", f"catalog version {v} {entry['name']}/{entry['architecture']} gives no "
                   "checksum: Vagrant adds the box unchecked")
        return
    actual = digests[entry["checksum_type"]]
    if actual != entry["checksum"]:
        report.add("checksum-mismatch", "error", f"catalog version {v} {entry['name']}/{entry['architecture']}: {entry['checksum_type']} is {actual}, the catalog says {entry['checksum']}")


def _examine_disk(path: Path, report: Report, threads: int) -> None:
    """A bare disk: its format facts, structural checks and partition table."""
    report.kind = "disk"
    try:
        with open_source(path, threads) as src:
            if isinstance(src, CompressedRawDisk):
                probe, allocated = EspProbe(), 0
                for cluster, piece in src.scan():
                    probe.feed(cluster, piece)
                    allocated += len(piece)
                report.disks = [{"format": src.format, "virtual_size": src.size, "file_size": src.compressed_size,
                                 "allocated": allocated}]
                _partitions(report, read_partition_table(src), probe)
                return
            report.compression = None
            report.disks = [{"format": src.format, "virtual_size": src.size, "file_size": os.path.getsize(path)}]
            fd = os.open(path, os.O_RDONLY)
            try:
                data = FileBytes(fd, os.path.getsize(path), path.name)
                fmt = detect(data.pread(0, HEAD), data.pread(max(0, data.size - TAIL), TAIL))
                if fmt.check is not None:
                    facts, findings = fmt.check(data, path.name, threads)
                    report.disk.update(facts)
                    report.findings.extend(findings)
            finally:
                os.close(fd)
            if fmt is RAW:
                report.disk["allocated"] = sum(e - s for s, e in src.extents())  # type: ignore[attr-defined]
            probe = probe_disk(src.scan())  # to the ESP's end; cluster 0 is the partition table
            table = read_partition_table(src)
    except BoxpackError as e:
        report.unreadable = str(e)
        return
    except Exception as e:  # hostile headers
        report.unreadable = f"{path}: unreadable ({type(e).__name__}: {e})"
        return
    _partitions(report, table, probe)


def _box_disk(path: Path, report: Report, threads: int) -> None:
    """The box's first disk read again, from the start to the end of its ESP's kept part: its partition table
    and architecture, and whether metadata.json names the same one (Vagrant 2.4 picks a box for a host by it:
    hashicorp/vagrant#13588, #13615). What is wrong with the disk itself, the walk has reported."""
    try:
        with open_source(path, threads) as src:
            probe = probe_disk(src.scan())
            table = read_partition_table(src)
    except Exception:  # noqa: BLE001 - reported by the walk
        return
    found, why = _partitions(report, table, probe)
    said = metadata.text(report.metadata, "architecture") if report.metadata else None
    if said and found and said != found:
        report.add("architecture-mismatch", "warning",
                   f"metadata.json says architecture {said}, but the disk is {found} ({why}); Vagrant 2.4 would run it on {said} hosts")


def _holds_tar(path: Path, kind: str) -> bool:
    """Whether a compressed file holds a tar (a box) rather than a compressed disk; a stream too damaged
    to tell is read as a box, whose reading reports the damage."""
    try:
        return archive.is_tar(peek(path, kind, HEAD))
    except BoxpackError:
        return True


def _partitions(report: Report, table: PartitionTable, probe: EspProbe) -> tuple[str | None, str]:
    """Sets report.partitions; returns the architecture and what said so."""
    fw, why = table.firmware()
    arch, arch_why = architecture(table, probe)
    report.partitions = {
        "table": table.kind,
        "partitions": [{"number": p.number, "type": p.type, "first_lba": p.first_lba, "last_lba": p.last_lba, "name": p.name} for p in table.partitions],
        "architecture": arch,
        "architecture_reason": arch_why,
        "firmware": fw,
        "firmware_reason": why,
    }
    return arch, arch_why
