"""pack(): the one entry point the CLI and image builders use to write boxes."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import deflate

from .archive import Member, source_date_epoch, tar_stream
from .catalog import CHECKSUM_TYPES
from .compress import DEFAULT_LEVEL, LEVELS, DigestWriter, ParallelGzip, default_threads, fast_available
from .errors import BoxpackError
from .ovf import DEFAULT_OS_TYPE, OS_TYPES, Hardware
from .partitions import read_partition_table
from .providers import PROVIDERS, Job
from .qcow2 import COMPAT_VERSIONS
from .source import open_source

log = logging.getLogger("boxpack")

COMPRESSIONS = ("gzip", "none")
RESERVED_NAMES = {"metadata.json", "Vagrantfile", "box.img", "box.ovf", "box.vmdk", "box-disk001.vmdk"}


@dataclass(eq=False)
class BoxResult:
    """A box written by pack(): where, how big, and its digest."""

    provider: str
    path: Path | None  # None when written to a stream
    size: int
    checksum_type: str
    checksum: str
    seconds: float
    firmware: str  # "bios" or "efi", and why
    architecture: str | None


Output = str | os.PathLike[str] | BinaryIO | None


def _stem(disk: Path) -> str:
    """The disk's name without its suffix, and without a provider suffix when it is a box (x-libvirt.box)."""
    stem = disk.stem or disk.name
    for provider in PROVIDERS:
        stem = stem.removesuffix(f"-{provider}") if disk.suffix == ".box" else stem
    return stem


def _default_name(disk: Path, provider: str) -> str:
    return f"{_stem(disk)}-{provider}.box"


def _targets(disk: Path, providers: Sequence[str], output: Output, force: bool) -> list[Path | BinaryIO]:
    """Where each provider's box goes, refusing to overwrite without force."""
    if output == "-" or hasattr(output, "write"):
        if len(providers) > 1:
            raise BoxpackError("-o - writes one box to stdout; give one --provider, or -o DIR for several")
        return [output]  # type: ignore[list-item]
    if output is None:
        targets = [Path.cwd() / _default_name(disk, p) for p in providers]
    else:
        out = Path(output)  # type: ignore[arg-type]
        if out.is_dir():
            targets = [out / _default_name(disk, p) for p in providers]
        elif len(providers) > 1:
            raise BoxpackError(f"{out}: is not a directory; with several providers -o names a directory")
        else:
            targets = [out]
    for t in targets:
        if t.exists() and t.resolve() == disk.resolve():
            raise BoxpackError(f"{t}: is the source itself; choose another output with -o")
        if not t.parent.is_dir():
            raise BoxpackError(f"{t.parent}: no such directory for the output box")
        if t.is_dir():
            raise BoxpackError(f"{t}: is a directory")
        if t.exists() and not force:
            raise BoxpackError(f"{t}: already exists; use --force to overwrite it")
    return targets


def _write_archive(
    out: BinaryIO, members: list[Member], compression: str, job: Job, checksum: str, progress=None
) -> DigestWriter:
    digest = DigestWriter(out, checksum)
    if compression == "none":
        for chunk, _ in tar_stream(members, source_date_epoch()):
            digest.write(chunk)
            if progress:
                progress(len(chunk))
        out.flush()
        return digest
    gz = ParallelGzip(digest, job.level, job.threads, job.fast)
    try:
        for chunk, stored in tar_stream(members, source_date_epoch()):
            gz.write(chunk, stored)
            if progress:
                progress(len(chunk))
        gz.close()
        out.flush()
    except BaseException:
        gz.abort()
        raise
    return digest


def _write_box(
    target: Path | BinaryIO, members: list[Member], compression: str, job: Job, force: bool, checksum: str, progress=None
) -> tuple[int, str]:
    """Write the archive to a stream, or to a temporary file renamed into place when complete."""
    if not isinstance(target, Path):
        try:
            digest = _write_archive(target, members, compression, job, checksum, progress)
        except BrokenPipeError:
            raise BoxpackError("output closed before the box was complete (broken pipe)") from None
        except OSError as e:
            raise BoxpackError(f"cannot write the box to the output stream: {e.strerror}") from None
        return digest.size, digest.hexdigest()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _write_archive(out, members, compression, job, checksum, progress)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if target.exists() and not force:
            raise BoxpackError(f"{target}: appeared while packing; use --force to overwrite it")
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise BoxpackError(f"{target}: cannot write: {e.strerror}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest.size, digest.hexdigest()


def _read_option_file(path: str | os.PathLike[str], what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise BoxpackError(f"{p}: {what} not found or not a regular file")
    if not os.access(p, os.R_OK):
        raise BoxpackError(f"{p}: {what} is not readable")
    return p


FIRMWARES = ("bios", "efi")
MAC_PATTERN = re.compile(r"^[0-9A-Fa-f]{12}$")


def _check_hardware(hw: Hardware, base_mac: str | None) -> None:
    if hw.os_type not in OS_TYPES:
        raise BoxpackError(f"unknown --os-type {hw.os_type!r}; choose from {', '.join(OS_TYPES)}")
    if not 1 <= hw.cpus <= 64:
        raise BoxpackError(f"--cpus {hw.cpus} is out of range 1..64")
    if not 4 <= hw.memory_mb <= 2**22:
        raise BoxpackError(f"--memory {hw.memory_mb} MiB is out of range 4..{2**22}")
    if not hw.vm_name or any(c in hw.vm_name for c in "<>&\"'/\0"):
        raise BoxpackError(f"--vm-name {hw.vm_name!r} must be a non-empty name without <>&\"'/")
    if base_mac and base_mac != "auto":
        if not MAC_PATTERN.match(base_mac):
            raise BoxpackError(f"--base-mac {base_mac!r} must be auto or 12 hex digits without separators")
        if int(base_mac[:2], 16) & 1:
            raise BoxpackError(f"--base-mac {base_mac}: a multicast address cannot be a NIC's MAC")


def _disk_id(size: int, crc: int, clusters: array) -> bytes:
    """32 bytes that identify the disk's content: seeds UUIDs, CID and MAC, so output is reproducible."""
    h = hashlib.sha256(b"boxpack-disk-id\0")
    h.update(size.to_bytes(8, "little"))
    h.update(crc.to_bytes(4, "little"))
    h.update(clusters.tobytes())
    return h.digest()


def pack(
    source: str | os.PathLike[str],
    providers: Sequence[str] = ("libvirt",),
    output: Output = None,
    *,
    force: bool = False,
    compression: str = "gzip",
    level: int = DEFAULT_LEVEL,
    fast: bool = False,
    threads: int | None = None,
    qcow2_compat: str = "1.1",
    vagrantfile: str | os.PathLike[str] | None = None,
    include: Sequence[str | os.PathLike[str]] = (),
    architecture: str | None = None,
    firmware: str | None = None,
    cpus: int = 2,
    memory: int = 1024,
    os_type: str = DEFAULT_OS_TYPE,
    vm_name: str | None = None,
    base_mac: str | None = None,
    checksum: str = "sha256",
    checksum_file: bool | str | os.PathLike[str] = False,
    progress: Callable[..., None] | None = None,
) -> list[BoxResult]:
    """Pack the disk image `source` into one Vagrant box per provider.

    source is a raw disk, a qcow2 or VMDK image, or a box (its disk is read
    straight from the archive; its architecture carries over).

    output is None (``<stem>-<provider>.box`` in the current directory), a
    file path (one provider), a directory, or "-" / a binary stream (one
    provider). level is libdeflate's 1-12; fast uses ISA-L instead (about
    twice as fast as level 1, boxes about 12% larger than gzip -6). Boxes
    are written under a temporary name and renamed when
    complete; an existing file is replaced only with force. architecture and
    firmware ("bios"/"efi") are detected from the partition table unless
    given. cpus, memory (MiB), os_type, vm_name and base_mac ("auto" or 12 hex
    digits) shape the VirtualBox box. checksum names the digest computed
    while writing (md5, sha1, sha256, sha384, sha512); checksum_file True
    writes ``<box>.<checksum>`` beside each box, a path writes all lines there
    (sha256sum format; "-" names a box written to a stream). progress, if
    given, is a boxpack.progress.Progress-like object. Raises BoxpackError.
    """
    providers = list(dict.fromkeys(providers))
    if not providers:
        raise BoxpackError("no provider given; use --provider libvirt and/or --provider virtualbox")
    for p in providers:
        if p not in PROVIDERS:
            raise BoxpackError(f"unknown provider {p!r}; choose from {', '.join(PROVIDERS)}")
    if compression not in COMPRESSIONS:
        raise BoxpackError(f"unknown compression {compression!r}; choose from {', '.join(COMPRESSIONS)}")
    if level not in LEVELS:
        raise BoxpackError(f"compression level {level} is out of range {LEVELS.start}..{LEVELS.stop - 1}")
    if fast and not fast_available():
        raise BoxpackError("--fast needs the isal package (ISA-L), which has wheels for x86-64 and aarch64 only")
    threads = threads or default_threads()
    if threads < 1:
        raise BoxpackError("--threads must be at least 1")
    if qcow2_compat not in COMPAT_VERSIONS:
        raise BoxpackError(f"unknown qcow2 compat {qcow2_compat!r}; choose from {', '.join(COMPAT_VERSIONS)}")
    if checksum not in CHECKSUM_TYPES:
        raise BoxpackError(f"unknown checksum {checksum!r}; choose from {', '.join(CHECKSUM_TYPES)}")
    if checksum_file is True and (output == "-" or hasattr(output, "write")):
        raise BoxpackError("a box written to stdout has no file name to put the checksum beside; give --checksum-file PATH")
    if firmware is not None and firmware not in FIRMWARES:
        raise BoxpackError(f"unknown firmware {firmware!r}; choose from {', '.join(FIRMWARES)}")
    if architecture is not None and not re.match(r"^[a-z0-9_]+$", architecture):
        raise BoxpackError(f"--arch {architecture!r} is not a Vagrant architecture name (amd64, arm64, i386, ...)")
    hardware = Hardware(vm_name or _default_vm_name(Path(source)), os_type, cpus, memory)
    _check_hardware(hardware, base_mac)
    vagrantfile_bytes = _read_option_file(vagrantfile, "Vagrantfile").read_bytes() if vagrantfile else None
    includes = [_read_option_file(p, "included file") for p in include]
    names = [p.name for p in includes]
    for name in names:
        if name in RESERVED_NAMES or names.count(name) > 1:
            raise BoxpackError(f"--include {name}: the box already has a file of that name")

    with open_source(source, threads) as disk:
        if disk.padded:
            log.warning(
                "%s: size %d is not a multiple of 512; padded with zeros to %d", disk.path, disk.file_size, disk.size
            )
        targets = _targets(disk.path, providers, output, force)
        job = Job(
            disk=disk,
            firmware=firmware or "bios",
            architecture=architecture,
            vagrantfile=vagrantfile_bytes,
            include=includes,
            qcow2_compat=qcow2_compat,
            level=level,
            fast=fast,
            threads=threads,
            spool_dir=next((t.parent for t in targets if isinstance(t, Path)), None),
            hardware=hardware,
            base_mac=base_mac,
        )
        writers = []
        try:
            for name in providers:
                writers.append(PROVIDERS[name](job))
            if progress:
                progress.phase("reading disk", disk.progress_total())
            crc = 0
            for cluster, data in disk.scan(progress):
                job.clusters.append(cluster)
                crc = deflate.crc32(data, crc)
                for w in writers:
                    w.feed(cluster, data)
            job.disk_id = _disk_id(disk.size, crc, job.clusters)
            # The partition table is read after the scan: a disk inside a box can only be streamed.
            table = read_partition_table(disk)
            detected, reason = table.firmware()
            job.firmware = firmware or detected
            job.architecture = architecture or getattr(disk, "architecture", None) or table.architecture()
            firmware_note = f"{job.firmware} ({'as asked' if firmware else 'detected: ' + reason})"
            results = []
            for writer, target in zip(writers, targets):
                started = time.monotonic()
                members = writer.members()
                if progress:
                    progress.phase(f"writing {writer.NAME}", sum(m.size for m in members))
                size, digest = _write_box(target, members, compression, job, force, checksum, progress)
                writer.close()
                if progress:
                    progress.finish()
                results.append(
                    BoxResult(
                        provider=writer.NAME,
                        path=target if isinstance(target, Path) else None,
                        size=size,
                        checksum_type=checksum,
                        checksum=digest,
                        seconds=time.monotonic() - started,
                        firmware=firmware_note,
                        architecture=job.architecture,
                    )
                )
        finally:
            for w in writers:
                w.close()
    if checksum_file:
        _write_checksum_files(results, checksum_file)
    return results


def _write_checksum_files(results: list[BoxResult], checksum_file: bool | str | os.PathLike[str]) -> None:
    """sha256sum-format lines: `<hex>  <box file name>`, "-" for a box written to a stream."""
    lines = {r: f"{r.checksum}  {r.path.name if r.path else '-'}\n" for r in results}
    if checksum_file is True:
        targets = {r.path.with_name(f"{r.path.name}.{r.checksum_type}"): lines[r] for r in results if r.path}
    else:
        targets = {Path(checksum_file): "".join(lines.values())}
    for path, text in targets.items():
        try:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
        except OSError as e:
            raise BoxpackError(f"{path}: cannot write the checksum file: {e.strerror}") from None


def _default_vm_name(source: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", _stem(source)).strip("-") or "boxpack"
