"""pack(): the one entry point the CLI and image builders use to write boxes."""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import logging
import os
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import deflate

from .disk.esp import EspProbe, architecture
from .disk.partitions import read_partition_table
from .disk.pieces import PieceSpool
from .disk.source import Source
from .errors import BadInput, BadOption
from .output.destinations import Destination, Files, Output, is_stream
from .output.gzip import DEFAULT_LEVEL, Compression, default_threads
from .output.write import write_archive
from .providers import DEFAULT, PROVIDERS, Disk, Job, Listener, Provider
from .options import problem
from .settings import SETTINGS
from .sources.open import open_source
from .vagrantfile import ruby_available, ruby_syntax

log = logging.getLogger("boxpack")



@dataclass
class PackOptions:
    """What to make of a disk: one box per provider, and how it is written.

    output is None (``<stem>-<provider>.box`` in the current directory), a
    file path (one provider), a directory (existing, or any path ending in
    "/"), or "-" / a binary stream (one provider); pack() takes another
    destination (publishing's uploads) as an argument. level is libdeflate's 1-12;
    fast uses ISA-L instead (about twice as fast as level 1, boxes about 12%
    larger than gzip -6). architecture and firmware ("bios"/"efi") are
    detected from the partition table unless given. checksum_type names the
    digest computed while writing; checksum_file True writes
    ``<box>.<checksum_type>`` beside each box, a path writes all lines there
    (sha256sum format). name replaces the source's file name in the boxes'
    names (``<name>-<provider>.box``) and VM names. settings holds the providers' own options by name
    (see ``boxpack.providers.PROVIDERS[name].OPTIONS``); missing ones take
    their defaults. sign_key signs each box file as it is written (signatures.py),
    the signature beside it as ``<box>.sig``.
    """

    providers: Sequence[str] = (DEFAULT,)
    output: Output = None
    force: bool = False
    compression: str = "gzip"
    level: int = DEFAULT_LEVEL
    fast: bool = False
    threads: int | None = None
    vagrantfile: str | os.PathLike[str] | None = None
    include: Sequence[str | os.PathLike[str]] = ()
    architecture: str | None = None
    firmware: str | None = None
    checksum_type: str = "sha256"
    checksum_file: bool | str | os.PathLike[str] = False
    name: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    sign_key: str | os.PathLike[str] | None = None

    def compression_of(self, threads: int) -> Compression:
        """The one Compression value every part of the run compresses with."""
        return Compression(self.compression == "gzip", self.level, self.fast, threads)

    def check(self) -> None:
        """Raise BadOption for the first option that cannot work, before any disk is read."""
        if not self.providers:
            raise BadOption(f"no provider given; use --provider ({', '.join(PROVIDERS)})")
        for setting in SETTINGS:
            wrong = problem(setting, getattr(self, setting.name))
            if wrong:
                raise BadOption(wrong)
        if self.checksum_file is True and is_stream(self.output):
            raise BadOption("a box written to stdout has no file name to put the checksum beside; give --checksum-file PATH")
        if self.sign_key and is_stream(self.output):
            raise BadOption("a box written to stdout has no file name to put its signature beside; write it with -o FILE")
        for p in self.providers:
            PROVIDERS[p].check_settings(self.settings)


@dataclass(eq=False)
class BoxResult:
    """A box written by pack(): where, how big, and its digest."""

    provider: str
    path: Path | None  # None when written to a stream
    size: int
    checksum_type: str
    checksum: str
    seconds: float  # from the start of the run to this box's last byte
    firmware: str  # "bios" or "efi"
    firmware_reason: str  # "as asked", or "detected: " and what on the disk said so
    architecture: str | None
    architecture_reason: str  # "as asked", "from the source box's metadata.json", "detected: ..." or "unknown: ..."
    disks: list[tuple[str, int]]  # each disk in the box: its format ("qcow2", "vmdk streamOptimized", ...) and size in bytes


COMPRESSED_SUFFIXES = (".gz", ".xz", ".zst", ".bz2")


def _stem(source: Path) -> str:
    """The source's name without its suffixes (disk.raw.zst: disk), and without a provider suffix when it is a
    box (x-libvirt.box)."""
    name = source.name
    if name.endswith(COMPRESSED_SUFFIXES):
        name = name.rpartition(".")[0]
    if name.endswith(".tar"):
        name = name.removesuffix(".tar")
    stem = Path(name).stem or name
    if source.suffix == ".box":
        for provider in PROVIDERS:
            stem = stem.removesuffix(f"-{provider}")
    return stem


def _option_file(path: str | os.PathLike[str], what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise BadOption(f"{p}: {what} not found or not a regular file")
    if not os.access(p, os.R_OK):
        raise BadOption(f"{p}: {what} is not readable")
    return p


def _user_vagrantfile(path: str | os.PathLike[str]) -> bytes:
    """The user's Vagrantfile, refused when `ruby -c` says it is not Ruby: Vagrant would fail on every `vagrant up`."""
    data = _option_file(path, "Vagrantfile").read_bytes()
    problem = ruby_syntax(data)
    if problem:
        raise BadOption(f"{path}: {problem}")
    if not ruby_available():
        log.warning("%s: not syntax-checked (ruby is not installed)", path)
    return data


def _includes(paths: Sequence[str | os.PathLike[str]], providers: Sequence[str]) -> list[Path]:
    reserved = ["metadata.json", "Vagrantfile", *(m for p in providers for m in PROVIDERS[p].MEMBERS)]
    includes = [_option_file(p, "included file") for p in paths]
    for p in includes:
        if p.stat().st_size == 0:  # procfs and sysfs files say 0 bytes and hold more: a tar member needs its size first
            with open(p, "rb") as f:
                if f.read(1):
                    raise BadOption(f"--include {p}: says it is empty but is not (a /proc or /sys file?); "
                                       "copy it to a regular file first")
    names = [p.name for p in includes]
    for p in includes:
        try:
            p.name.encode("utf-8")
        except UnicodeEncodeError:
            raise BadOption(f"--include {os.fsdecode(p)!r}: a box member's name must be UTF-8") from None
        if any(fnmatch.fnmatchcase(p.name, r) for r in reserved) or names.count(p.name) > 1:
            raise BadOption(f"--include {p.name}: the box already has a file of that name")
    return includes


def _disk_id(size: int, crc: int, clusters: array, index: int) -> bytes:
    """32 bytes that identify the disk's content: seeds UUIDs, CID and MAC, so output is reproducible.
    A disk after the first also hashes its place, so two identical data disks get different UUIDs
    (VirtualBox refuses an appliance whose disks share one)."""
    h = hashlib.sha256(b"boxpack-disk-id\0")
    h.update(size.to_bytes(8, "little"))
    h.update(crc.to_bytes(4, "little"))
    h.update(clusters.tobytes())
    if index:
        h.update(index.to_bytes(4, "little"))
    return h.digest()


@dataclass(frozen=True)
class Fact:
    """What the scan found a box to be (firmware, architecture), and why."""

    value: str | None
    reason: str  # "as asked", "detected: ...", "from the source box's metadata.json", "unknown: ..."


@dataclass(frozen=True)
class Scan:
    """What one read of every disk found: the disks with their data maps, the boot disk's facts."""

    disks: tuple[Disk, ...]
    firmware: Fact
    architecture: Fact


@dataclass(frozen=True)
class _Plan:
    """A run's options, checked and read before any disk is: every provider once, the one Compression value."""

    paths: list[str | os.PathLike[str]]
    providers: list[type[Provider]]
    compression: Compression
    vagrantfile: bytes | None
    include: tuple[Path, ...]
    settings: dict[str, Any]  # the providers' options by name, defaults filled in

    @classmethod
    def of(cls, source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], o: PackOptions,
           destination: Destination | None) -> _Plan:
        o.check()
        paths = [source] if isinstance(source, (str, os.PathLike)) else list(source)
        if not paths:
            raise BadOption("no disk given")
        if destination is not None and (o.output is not None or o.checksum_file or o.sign_key):
            raise BadOption("boxes streamed into uploads get their checksum files and signatures on the target; drop -o, "
                            "--checksum-file and the pack options' sign_key")
        providers = [PROVIDERS[p] for p in dict.fromkeys(o.providers)]
        for p in providers:
            p.check_disks(len(paths))
        return cls(paths, providers, o.compression_of(o.threads or default_threads()),
                   _user_vagrantfile(o.vagrantfile) if o.vagrantfile else None,
                   tuple(_includes(o.include, [p.NAME for p in providers])),
                   {opt.name: o.settings.get(opt.name, opt.default) for p in providers for opt in p.OPTIONS})


def pack(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    options: PackOptions | None = None,
    progress=None,
    on_box: Callable[[BoxResult], None] | None = None,
    destination: Destination | None = None,
) -> list[BoxResult]:
    """Pack the disk image `source` (or several: the first boots) into one Vagrant box per provider.

    A source is a raw disk (also compressed), a disk image, or a box (its
    disks are read straight from the archive; its architecture carries
    over). progress, if given, is a boxpack.progress.Progress-like object;
    on_box is called with each box as soon as it is complete (so a caller
    knows what exists if a later one fails). destination is where the boxes
    go (output/destinations.py); by default options.output says. Raises
    BoxpackError.
    """
    started = time.monotonic()
    o = options or PackOptions()
    plan = _Plan.of(source, o, destination)
    results: list[BoxResult] = []
    with contextlib.ExitStack() as stack:
        sources = [stack.enter_context(open_source(p, plan.compression.threads)) for p in plan.paths]
        stem = o.name or _stem(sources[0].path)
        where = destination or Files([p.NAME for p in plan.providers], stem, o.output, [s.path for s in sources],
                                     o.force, o.checksum_file, o.checksum_type, o.sign_key)
        listeners = {p.NAME: p.listener(plan.compression, where.spool_dir) for p in plan.providers}
        for listener in filter(None, listeners.values()):
            stack.callback(listener.close)
        scan = _scan(sources, plan, listeners, where.spool_dir, o, progress, stack)
        job = Job(scan.disks, stem, plan.settings, str(scan.firmware.value), scan.architecture.value, plan.vagrantfile,
                  plan.include)
        for cls in plan.providers:
            listened = listeners[cls.NAME]
            results.append(_write(cls(job, listened), where, scan, plan.compression, o.checksum_type, progress, started))
            if listened:
                listened.close()  # what it spooled goes as soon as its box is written (closing again is harmless)
            if on_box:
                on_box(results[-1])
        where.done([(r.path, r.checksum_type, r.checksum) for r in results])
    return results


def _write(provider: Provider, where: Destination, scan: Scan, compression: Compression, checksum_type: str,
           progress, started: float) -> BoxResult:
    """One box, from its provider's members to its destination, whole or not at all."""
    job = provider.job
    members = provider.members()
    if progress:
        progress.phase(f"writing {provider.NAME}", sum(m.size for m in members))
    box = where.open(provider.NAME, job.architecture)
    try:
        digest = write_archive(box.out, members, compression, checksum_type, progress)
    except OSError as e:
        box.abort()
        raise box.failed(e) from None
    except BaseException:
        box.abort()
        raise
    path = box.finish(digest.size, checksum_type, digest.hexdigest())
    if progress:
        progress.finish()
    return BoxResult(provider.NAME, path, digest.size, checksum_type, digest.hexdigest(), time.monotonic() - started,
                     job.firmware, scan.firmware.reason, job.architecture, scan.architecture.reason,
                     [(provider.DISK_FORMAT, d.source.size) for d in job.disks])


def _scan(sources: list[Source], plan: _Plan, listeners: dict[str, Listener | None], spool_dir: Path | None,
          o: PackOptions, progress, stack: contextlib.ExitStack) -> Scan:
    """Read each disk once for every provider, in order (a box's other disks join after its first); then
    firmware and architecture from the boot disk."""
    probe = EspProbe()
    fed = [listener for listener in listeners.values() if listener]
    providers, compression = plan.providers, plan.compression
    readers = sum(p.PIECES for p in providers)
    disks: list[Disk] = []
    queue = list(sources)
    while queue:
        source = queue.pop(0)
        i = len(disks)
        if progress:
            progress.phase("reading disk" if len(sources) == 1 and not i else f"reading disk {i + 1}", source.progress_total())
        spool = PieceSpool.for_disk(compression.member() if compression.gzip else None, compression.threads, spool_dir,
                                    readers, source.rereadable)
        if spool:
            stack.enter_context(contextlib.closing(spool))
        clusters, crc = array("Q"), 0
        for cluster, data in source.scan(progress):
            clusters.append(cluster)
            crc = deflate.crc32(data, crc)
            for listener in fed:
                listener.feed(i, cluster, data)
            if spool and spool.during_scan:
                spool.feed(cluster, data)
            if i == 0:
                probe.feed(cluster, data)
        if spool and spool.during_scan:
            spool.finish()
        _check_scanned(source, providers)
        disks.append(Disk(source, clusters, _disk_id(source.size, crc, clusters, i), spool))
        others = [stack.enter_context(s) for s in source.other_disks()]
        queue[:0] = others
        if others:
            for p in providers:
                p.check_disks(len(disks) + len(queue))
    firmware, architecture = _facts(disks[0].source, probe, o)
    return Scan(tuple(disks), firmware, architecture)


def _check_scanned(source: Source, providers: list[type[Provider]]) -> None:
    if source.size == 0:  # as an empty raw file is: no format makes a usable disk of nothing
        raise BadInput(f"{source.path}: the disk's virtual size is 0, so there is no disk to pack")
    for p in providers:
        p.check_size(source.size, source.path)
    if source.padded:
        log.warning("%s: size %d is not a multiple of 512; padded with zeros to %d", source.path, source.file_size, source.size)


def _facts(boot: Source, probe: EspProbe, o: PackOptions) -> tuple[Fact, Fact]:
    """Firmware and architecture: as asked, else from the source box, else what the boot disk says. The
    partition table is read after the scan: a disk inside a box can only be streamed."""
    table = read_partition_table(boot)
    fw, reason = table.firmware()
    firmware = Fact(o.firmware, "as asked") if o.firmware else Fact(fw, f"detected: {reason}")
    arch, why = architecture(table, probe)
    chosen = o.architecture or boot.architecture or arch
    said = "as asked" if o.architecture else "from the source box's metadata.json" if boot.architecture else None
    if said and arch and arch != chosen:
        log.warning("%s: the box says architecture %s (%s), but the disk is %s (%s)", boot.path, chosen,
                    "--architecture" if o.architecture else "the source box's metadata.json", arch, why)
    return firmware, Fact(chosen, said or (f"detected: {why}" if arch else f"unknown: {why}"))
