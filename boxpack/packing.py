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

from .errors import BadInput, BadOption
from .disk.esp import EspProbe, architecture
from .output.gzip import DEFAULT_LEVEL, ParallelGzip, default_threads, member_compressor, zlib_compressor
from .output.write import (Output, Target, checksum_path, checksum_targets, is_stream, targets, write_box,
                           write_text_atomically)
from .disk.partitions import read_partition_table
from .providers import DEFAULT, PROVIDERS, Disk, Job, Provider
from .settings import SETTINGS, problem
from .sources.open import open_source
from .disk.pieces import PieceSpool
from .vagrantfile import ruby_available, ruby_syntax

log = logging.getLogger("boxpack")



@dataclass
class PackOptions:
    """What to make of a disk: one box per provider, and how it is written.

    output is None (``<stem>-<provider>.box`` in the current directory), a
    file path (one provider), a directory (existing, or any path ending in
    "/"), "-" / a binary stream (one provider), or a function of the provider
    and architecture that returns the stream each box is written to (what
    publish.pack_and_publish gives). level is libdeflate's 1-12;
    fast uses ISA-L instead (about twice as fast as level 1, boxes about 12%
    larger than gzip -6). architecture and firmware ("bios"/"efi") are
    detected from the partition table unless given. checksum_type names the
    digest computed while writing; checksum_file True writes
    ``<box>.<checksum_type>`` beside each box, a path writes all lines there
    (sha256sum format). name replaces the source's file name in the boxes'
    names (``<name>-<provider>.box``) and VM names. settings holds the providers' own options by name
    (see ``boxpack.providers.PROVIDERS[name].OPTIONS``); missing ones take
    their defaults.
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

    def check(self) -> None:
        """Raise BadOption for the first option that cannot work, before any disk is read."""
        if not self.providers:
            raise BadOption(f"no provider given; use --provider ({', '.join(PROVIDERS)})")
        for setting in SETTINGS:
            wrong = problem(setting, getattr(self, setting.name))
            if wrong:
                raise BadOption(wrong)
        if self.checksum_file and callable(self.output):
            raise BadOption("boxes streamed into uploads get their checksum files on the target; drop --checksum-file")
        if self.checksum_file is True and is_stream(self.output):
            raise BadOption("a box written to stdout has no file name to put the checksum beside; give --checksum-file PATH")
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


def pack(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    options: PackOptions | None = None,
    progress=None,
    on_box: Callable[[BoxResult], None] | None = None,
) -> list[BoxResult]:
    """Pack the disk image `source` (or several: the first boots) into one Vagrant box per provider.

    A source is a raw disk (also compressed), a disk image, or a box (its
    disks are read straight from the archive; its architecture carries
    over). progress, if given, is a boxpack.progress.Progress-like object;
    on_box is called with each box as soon as it is complete (so a caller
    knows what exists if a later one fails). Raises BoxpackError.
    """
    started = time.monotonic()
    o = options or PackOptions()
    o.check()
    paths = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    if not paths:
        raise BadOption("no disk given")
    providers = list(dict.fromkeys(o.providers))
    for p in providers:
        PROVIDERS[p].check_disks(len(paths))
    threads = o.threads or default_threads()
    vagrantfile = _user_vagrantfile(o.vagrantfile) if o.vagrantfile else None
    includes = _includes(o.include, providers)
    settings = {opt.name: o.settings.get(opt.name, opt.default) for p in providers for opt in PROVIDERS[p].OPTIONS}
    results: list[BoxResult] = []
    with contextlib.ExitStack() as stack:
        disks = [Disk(stack.enter_context(open_source(p, threads))) for p in paths]
        boot = disks[0].source
        stem = o.name or _stem(boot.path)
        opener = o.output if callable(o.output) else None
        names = [f"{stem}-{p}.box" for p in providers]
        sources = [d.source.path for d in disks]
        where: list[Target | None] = [None] * len(names) if opener else list(targets(names, o.output, sources, o.force))
        if o.checksum_file:  # checked now, like the boxes: never a source, a box, or a file there without force
            checksum_targets(o.checksum_file, where, o.checksum_type, sources, o.force)
        job = Job(
            disks=disks,
            name=stem,
            firmware=o.firmware,
            compress=zlib_compressor(o.level, o.fast),
            threads=threads,
            settings=settings,
            architecture=o.architecture,
            vagrantfile=vagrantfile,
            include=includes,
            spool_dir=next((t.parent for t in where if isinstance(t, Path)), None),
        )
        writers: list[Provider] = []
        stack.callback(_close_all, writers)
        for name in providers:
            writers.append(PROVIDERS[name](job))
        firmware, firmware_reason, architecture_reason = _scan(job, writers, o, progress, stack)
        for writer, target in zip(writers, where):
            if opener:  # the architecture is known now, after the scan
                target = opener(writer.NAME, job.architecture)
            assert target is not None
            members = writer.members()
            if progress:
                progress.phase(f"writing {writer.NAME}", sum(m.size for m in members))
            size, digest = write_box(
                target, members, o.compression, lambda sink: ParallelGzip(sink, o.level, threads, o.fast), o.force,
                o.checksum_type, progress,
            )
            writer.close()
            if progress:
                progress.finish()
            results.append(
                BoxResult(writer.NAME, target if isinstance(target, Path) else None, size, o.checksum_type, digest,
                          time.monotonic() - started, firmware, firmware_reason, job.architecture, architecture_reason,
                          [(writer.DISK_FORMAT, d.source.size) for d in job.disks])
            )
            if on_box:
                on_box(results[-1])
    if o.checksum_file:
        _write_checksum_files(results, o.checksum_file, o.force)
    return results


def _scan(job: Job, writers: list[Provider], o: PackOptions, progress, stack: contextlib.ExitStack) -> tuple[str, str, str]:
    """Read each disk once for every provider, in order (a box's other disks join after its first);
    then firmware and architecture from the boot disk. Returns the firmware, why it is that, and why the
    architecture is what it is."""
    probe = EspProbe()
    i = 0
    while i < len(job.disks):
        disk = job.disks[i]
        source = disk.source
        if progress:
            progress.phase("reading disk" if len(job.disks) == 1 else f"reading disk {i + 1}", source.progress_total())
        readers = sum(w.PIECES for w in writers)
        if o.compression == "gzip" and readers:  # the data compressed once, for every box (sources/pieces.py)
            disk.spool = stack.enter_context(contextlib.closing(PieceSpool(
                member_compressor(o.level, o.fast), job.threads, job.spool_dir, keep=readers > 1 or not source.rereadable)))
        feed = disk.spool if disk.spool and not source.rereadable else None
        crc = 0
        for cluster, data in source.scan(progress):
            disk.clusters.append(cluster)
            crc = deflate.crc32(data, crc)
            for w in writers:
                w.feed(i, cluster, data)
            if feed:
                feed.feed(cluster, data)
            if i == 0:
                probe.feed(cluster, data)
        if feed:
            feed.finish()
        if source.size == 0:  # as an empty raw file is: no format makes a usable disk of nothing
            raise BadInput(f"{source.path}: the disk's virtual size is 0, so there is no disk to pack")
        for w in writers:
            w.check_size(source.size, source.path)
        if source.padded:
            log.warning("%s: size %d is not a multiple of 512; padded with zeros to %d", source.path, source.file_size, source.size)
        disk.disk_id = _disk_id(source.size, crc, disk.clusters, i)
        others = [Disk(stack.enter_context(s)) for s in source.other_disks()]
        job.disks[i + 1 : i + 1] = others
        if others:
            for w in writers:
                w.check_disks(len(job.disks))
        i += 1
    # The partition table is read after the scan: a disk inside a box can only be streamed.
    boot = job.disk
    table = read_partition_table(boot)
    fw, reason = table.firmware()
    job.firmware = firmware = o.firmware or fw
    arch, why = architecture(table, probe)
    job.architecture = o.architecture or boot.architecture or arch
    said = "as asked" if o.architecture else "from the source box's metadata.json" if boot.architecture else None
    if said and arch and arch != job.architecture:
        log.warning("%s: the box says architecture %s (%s), but the disk is %s (%s)", boot.path, job.architecture,
                    "--architecture" if o.architecture else "the source box's metadata.json", arch, why)
    arch_reason = said or (f"detected: {why}" if arch else f"unknown: {why}")
    return firmware, "as asked" if o.firmware else f"detected: {reason}", arch_reason


def _close_all(writers: list[Provider]) -> None:
    for w in writers:
        w.close()


def _write_checksum_files(results: list[BoxResult], checksum_file: bool | str | os.PathLike[str], force: bool) -> None:
    """sha256sum-format lines: `<hex>  <box file name>`, "-" for a box written to a stream."""
    lines = {r: f"{r.checksum}  {r.path.name if r.path else '-'}\n" for r in results}
    if checksum_file is True:
        files = {checksum_path(r.path, r.checksum_type): lines[r] for r in results if r.path}
    elif checksum_file:
        files = {Path(checksum_file): "".join(lines.values())}
    else:
        return
    for path, text in files.items():
        write_text_atomically(path, text, "checksum file", force)
