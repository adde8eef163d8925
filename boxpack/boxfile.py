"""Reading box files (tar, tar.gz, ...): streamed, never extracted to disk.

read_metadata() finds the root metadata.json; box_source() makes the box's
disk a source for packing, so a libvirt box can become a VirtualBox box and
back without unpacking anything.
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path
from typing import Any
from zlib import error as zlib_error

from .errors import BoxpackError
from .source import CLUSTER, ImageSource, StreamBytes

try:
    from isal import igzip_threaded
except ImportError:  # pragma: no cover - platforms without ISA-L wheels
    igzip_threaded = None

METADATA_LIMIT = 1024 * 1024  # a metadata.json larger than this is not one


def read_metadata(box: str | os.PathLike[str]) -> dict[str, Any]:
    """The box's root metadata.json, read by streaming the archive until it is found."""
    box = Path(box)
    try:
        with tarfile.open(box, "r|*") as tar:
            for member in tar:
                if member.name.removeprefix("./") != "metadata.json":
                    continue
                if not member.isfile() or member.size > METADATA_LIMIT:
                    raise BoxpackError(f"{box}: metadata.json is not a regular file of sane size")
                data = tar.extractfile(member).read()
                try:
                    meta = json.loads(data)
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    raise BoxpackError(f"{box}: metadata.json is not valid JSON: {e}") from None
                if not isinstance(meta, dict):
                    raise BoxpackError(f"{box}: metadata.json is not a JSON object")
                return meta
    except FileNotFoundError:
        raise BoxpackError(f"{box}: no such file") from None
    except IsADirectoryError:
        raise BoxpackError(f"{box}: is a directory, expected a box file") from None
    except (tarfile.TarError, EOFError, OSError) as e:
        raise BoxpackError(f"{box}: not a readable box archive ({e})") from None
    raise BoxpackError(f"{box}: has no metadata.json at its root")


DISK_SUFFIXES = (".img", ".qcow2", ".vmdk", ".raw")


def open_tar(box: Path) -> tarfile.TarFile:
    """The box as a tar stream; gzip is inflated on another thread with ISA-L where it is available."""
    with open(box, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    if gzipped and igzip_threaded is not None:
        return tarfile.open(fileobj=igzip_threaded.open(box, "rb", threads=1), mode="r|")
    return tarfile.open(box, "r|*")


def _find_disk(box: Path) -> tuple[dict[str, Any], str, bytes]:
    """(metadata, disk member name, its first 512 bytes), in one pass over the archive."""
    meta: dict[str, Any] = {}
    href = None
    candidates: dict[str, bytes] = {}
    try:
        with open_tar(box) as tar:
            for m in tar:
                name = m.name.removeprefix("./")
                if not m.isfile():
                    continue
                if name == "metadata.json" and m.size <= METADATA_LIMIT:
                    try:
                        meta = json.loads(tar.extractfile(m).read())
                    except ValueError:
                        raise BoxpackError(f"{box}: metadata.json is not valid JSON") from None
                elif name == "box.ovf" and m.size <= METADATA_LIMIT:
                    from lxml import etree

                    root = etree.fromstring(tar.extractfile(m).read(), etree.XMLParser(resolve_entities=False))
                    href = next((e.get("{http://schemas.dmtf.org/ovf/envelope/1}href") for e in root.iter("{*}File")), None)
                elif name.endswith(DISK_SUFFIXES) or (meta.get("provider") == "libvirt" and name == _libvirt_disk(meta)):
                    candidates[name] = tar.extractfile(m).read(512)
    except (tarfile.TarError, EOFError, OSError, zlib_error) as e:
        raise BoxpackError(f"{box}: not a readable box archive ({e})") from None
    wanted = _libvirt_disk(meta) if meta.get("provider") == "libvirt" else href
    name = wanted if wanted in candidates else next(iter(candidates), None)
    if name is None:
        raise BoxpackError(f"{box}: holds no disk image ({', '.join(DISK_SUFFIXES)})")
    return meta, name, candidates[name]


def _libvirt_disk(meta: dict[str, Any]) -> str:
    """box.img in vagrant-libvirt's format v1; the first of `disks` in v2."""
    disks = meta.get("disks")
    if isinstance(disks, list) and disks and isinstance(disks[0], dict):
        return str(disks[0].get("path", "box.img")).removeprefix("./")
    return "box.img"


class RawReader:
    """A raw disk streamed from a box, in 4 MiB pieces."""

    format = "raw"

    def __init__(self, data: StreamBytes, name: str) -> None:
        self.data, self.name = data, name
        self.size = -(-data.size // 512) * 512
        self.data_estimate = data.size

    def pieces(self):
        for off in range(0, self.data.size, 64 * CLUSTER):
            yield off, self.data.pread(off, 64 * CLUSTER)

    def close(self) -> None:
        self.data.close()


def box_source(box: Path, threads: int) -> ImageSource:
    """The disk inside a box as a source; each scan streams it out of the archive again."""
    from .qcow2 import Qcow2Reader
    from .vmdk import VmdkReader

    meta, member, magic = _find_disk(box)
    cls = Qcow2Reader if magic[:4] == b"QFI\xfb" else VmdkReader if magic[:4] == b"KDMV" else RawReader

    def open_reader():
        tar = open_tar(box)
        for m in tar:
            if m.name.removeprefix("./") == member:
                return cls(StreamBytes(tar.extractfile(m), m.size, f"{box}:{member}", owner=tar), f"{box}:{member}")
        tar.close()
        raise BoxpackError(f"{box}: {member} vanished between two reads")

    source = ImageSource(box, open_reader, threads)
    source.format = f"{source.format} in a {meta.get('provider', 'unknown')} box"
    arch = meta.get("architecture")
    source.architecture = arch if isinstance(arch, str) else None
    return source
