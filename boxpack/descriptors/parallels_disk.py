"""A Parallels disk directory, `<disk>.hdd/`: its DiskDescriptor.xml read and written, and the image it runs
from found (the .hds image itself is formats/parallels.py's).

References: qemu docs/interop/prl-xml.rst (the elements, the geometry rule,
the default top GUID); dissect.hypervisor disk/hdd.py (how a reader opens the
images through it). The elements Parallels Desktop writes beyond the
specification (sector sizes, UID, Name, CompatLevel) are written as it
writes them (AlmaLinux/cloud-images tools/raw-to-vagrant-parallels.sh).
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from ..errors import BadInput
from .xmltree import add, parse

NAME = "DiskDescriptor.xml"
ROOT_PARENT = "{00000000-0000-0000-0000-000000000000}"
DEFAULT_TOP_GUID = "{5fbaabe3-6958-40ff-92a7-860e329aab41}"  # the image Parallels opens (prl-xml.rst, Top Snapshot)
DESCRIPTOR_LIMIT = 1024 * 1024  # a DiskDescriptor.xml larger than this is not one


def image_name(disk: str) -> str:
    """The image file Parallels Desktop names for the disk directory `disk` (harddisk.hdd): it finds a base
    image only under the default top GUID (AlmaLinux's script, comment on the file name)."""
    return f"{disk}.0.{DEFAULT_TOP_GUID}.hds"



def write(disk: str, sectors: int, cylinders: int, heads: int, per_track: int, cluster_sectors: int, uid: str) -> bytes:
    """The descriptor of one expanding image, no snapshots, as Parallels Desktop writes a new disk's."""
    root = etree.Element("Parallels_disk_image", Version="1.0")
    params = add(root, "Disk_Parameters")
    for name, value in (("Disk_size", sectors), ("Cylinders", cylinders), ("PhysicalSectorSize", 4096),
                        ("LogicSectorSize", 512), ("Heads", heads), ("Sectors", per_track), ("Padding", 0)):
        add(params, name, value)
    encryption = add(params, "Encryption")
    add(encryption, "Engine", ROOT_PARENT)
    add(encryption, "Data", "")
    add(params, "UID", uid)
    add(params, "Name", disk.removesuffix(".hdd"))
    misc = add(params, "Miscellaneous")
    add(misc, "CompatLevel", "level2")
    add(misc, "Bootable", 1)
    add(misc, "SuspendState", 0)
    storage = add(add(root, "StorageData"), "Storage")
    add(storage, "Start", 0)
    add(storage, "End", sectors)
    add(storage, "Blocksize", cluster_sectors)
    image = add(storage, "Image")
    add(image, "GUID", DEFAULT_TOP_GUID)
    add(image, "Type", "Compressed")
    add(image, "File", image_name(disk))
    shot = add(add(root, "Snapshots"), "Shot")
    add(shot, "GUID", DEFAULT_TOP_GUID)
    add(shot, "ParentGUID", ROOT_PARENT)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


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


def is_marker(member: str) -> bool:
    """Whether a box member is the empty file Parallels Desktop writes in a disk directory, named like it
    (harddisk.hdd/harddisk.hdd): not a disk, though its name ends in .hdd."""
    parts = member.split("/")
    return len(parts) >= 2 and parts[-1] == parts[-2] and parts[-1].lower().endswith(".hdd")


def member_path(descriptor: str, file: str) -> str:
    """The box member an image's File names: relative to the descriptor's directory; an absolute path (left
    by a VM that was never exported) is looked for in that directory, as dissect.hypervisor's HDD does."""
    return posixpath.join(posixpath.dirname(descriptor), posixpath.basename(file) if file.startswith("/") else file)


def member_disk_files(member: str, xml: bytes) -> list[str]:
    """The image a box's DiskDescriptor.xml runs from, as a path in the box. A descriptor that cannot say
    (snapshots, a split disk, broken XML) refuses the box: guessing by file name could take an overlay."""
    try:
        return [member_path(member, read(xml).top_image()[1])]
    except BadInput as e:
        raise BadInput(f"{member}: {e}") from None


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
    return [(start, end, kind, directory / member_path(NAME, file)) for start, end, kind, file in parts]
