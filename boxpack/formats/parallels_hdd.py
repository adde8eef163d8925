"""A Parallels disk directory, `<disk>.hdd/`, opened as dissect.hypervisor's HDD(path) opens it: its
DiskDescriptor.xml read, and the image a VM runs from (or a split disk's pieces, read as one disk) found.

References: qemu docs/interop/prl-xml.rst (the elements, the geometry rule, the default top GUID, how a split
disk's storages tile it); dissect.hypervisor disk/hdd.py (HDD, StorageStream). The .hds image itself is
parallels.py's; the descriptor boxpack writes is descriptors/parallels_disk.py's.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from ..disk.bytesource import FileBytes
from ..disk.source import SECTOR, ImageSource, Source
from ..errors import BadInput
from ..xmltree import parse
from .parallels import ParallelsReader, SplitReader
from .raw import RawDisk

NAME = "DiskDescriptor.xml"
ROOT_PARENT = "{00000000-0000-0000-0000-000000000000}"
DEFAULT_TOP_GUID = "{5fbaabe3-6958-40ff-92a7-860e329aab41}"  # the image Parallels opens (prl-xml.rst, Top Snapshot)
DESCRIPTOR_LIMIT = 1024 * 1024  # a DiskDescriptor.xml larger than this is not one


@dataclass
class Storage:
    start: int
    end: int
    blocksize: int
    images: dict[str, tuple[str, str]]  # GUID (lower case) -> (Type, File)


@dataclass
class Descriptor:
    """What prl-xml.rst says a reader must take from the file."""

    size: int  # sectors
    cylinders: int
    heads: int
    sectors: int
    padding: int
    storages: list[Storage] = field(default_factory=list)
    parents: dict[str, str] = field(default_factory=dict)  # Shot GUID -> ParentGUID, lower case
    top: str = DEFAULT_TOP_GUID

    def _check_top(self) -> None:
        parent = self.parents.get(self.top)
        if parent is None or not self.storages or any(self.top not in s.images for s in self.storages):
            raise BadInput(f"its top image {self.top} is not among its images and snapshots")
        if parent != ROOT_PARENT:
            raise BadInput("a Parallels disk with snapshots, whose data is spread over several images; delete or "
                           "merge the snapshots in Parallels first")

    def parts(self) -> list[tuple[int, int, str, str]]:
        """(Start, End sector, Type, File) of the image a VM runs from in each storage, in disk order, for a disk
        without snapshots: one storage, or a split disk's pieces, each its own image of sectors Start to End
        (prl-xml.rst; dissect.hypervisor's disk/hdd.py, StorageStream, reads them so). A snapshot chain is
        refused by name: its data is spread over several images."""
        self._check_top()
        storages = sorted(self.storages, key=lambda s: s.start)
        if len(storages) > 1 and ([s.start for s in storages] != [0] + [s.end for s in storages[:-1]]
                                  or storages[-1].end != self.size):
            raise BadInput(f"its storages span {[(s.start, s.end) for s in storages]}, not sectors 0 to Disk_size "
                           f"{self.size} end to end")
        return [(s.start, s.end, *s.images[self.top]) for s in storages]

    def top_image(self) -> tuple[str, str]:
        """(Type, File) of the image a VM runs from, for a disk of one storage and no snapshots: what a box's
        disk is read from. A split disk is refused by name there."""
        if len(self.storages) != 1:
            raise BadInput(f"a split Parallels disk ({len(self.storages)} storages); merge it with prl_disk_tool first")
        self._check_top()
        return self.storages[0].images[self.top]


def _int(el: etree._Element | None, path: str) -> int:
    text = el.findtext(path) if el is not None else None
    try:
        return int(text or "")
    except ValueError:
        raise BadInput(f"{path} is not a number ({text!r})") from None


def read(xml: bytes) -> Descriptor:
    """The descriptor, or BadInput naming what is missing."""
    root = parse(xml, "Parallels_disk_image")
    params = root.find("Disk_Parameters")
    d = Descriptor(_int(params, "Disk_size"), _int(params, "Cylinders"), _int(params, "Heads"), _int(params, "Sectors"),
                   _int(params, "Padding"))
    for s in root.iterfind("StorageData/Storage"):
        images = {(i.findtext("GUID") or "").lower(): (i.findtext("Type") or "", i.findtext("File") or "")
                  for i in s.iterfind("Image")}
        d.storages.append(Storage(_int(s, "Start"), _int(s, "End"), _int(s, "Blocksize"), images))
    for shot in root.iterfind("Snapshots/Shot"):
        d.parents[(shot.findtext("GUID") or "").lower()] = (shot.findtext("ParentGUID") or "").lower()
    d.top = (root.findtext("Snapshots/TopGUID") or DEFAULT_TOP_GUID).lower()
    return d


def image_path(descriptor: str, file: str) -> str:
    """The path an image's File names: relative to the descriptor's directory; an absolute path (left by a VM
    that was never exported) is looked for in that directory, as dissect.hypervisor's HDD does."""
    return posixpath.join(posixpath.dirname(descriptor), posixpath.basename(file) if file.startswith("/") else file)


def is_disk_directory(path: str | os.PathLike[str]) -> bool:
    """A directory that holds a DiskDescriptor.xml: a Parallels disk, opened through the image it names."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, NAME))


def parts_in(directory: Path) -> list[tuple[int, int, str, Path]]:
    """The images a Parallels disk directory runs from, as its DiskDescriptor.xml names them: (Start, End
    sector, Type, path) of each storage, one for most disks, several for a split one."""
    descriptor = directory / NAME
    try:
        if descriptor.stat().st_size > DESCRIPTOR_LIMIT:
            raise BadInput(f"{descriptor.stat().st_size} bytes is not a disk descriptor")
        parts = read(descriptor.read_bytes()).parts()
    except BadInput as e:
        raise BadInput(f"{descriptor}: {e}") from None
    except OSError as e:
        raise BadInput(f"{descriptor}: cannot be read ({e.strerror})") from None
    return [(start, end, kind, directory / image_path(NAME, file)) for start, end, kind, file in parts]


def open_split(directory: Path, parts: list[tuple[int, int, str, Path]], threads: int) -> Source:
    """A split Parallels disk directory: its pieces' images read as one disk."""
    files: list[RawDisk] = []
    try:
        for _, _, kind, path in parts:
            if kind != "Compressed":
                raise BadInput(f"{directory}: a split disk with a {kind} piece ({path.name}); boxpack reads split disks "
                               "of expanding images")
            files.append(RawDisk(path))

        def reader() -> SplitReader:
            return SplitReader([(start * SECTOR, end * SECTOR, ParallelsReader(
                FileBytes(f.fd, f.file_size, str(f.path)), str(f.path))) for (start, end, _, _), f in zip(parts, files)],
                str(directory))

        def close() -> None:
            for f in files:
                f.close()

        return ImageSource(directory, reader(), reader, threads, close=close)
    except BaseException:
        for f in files:
            f.close()
        raise
