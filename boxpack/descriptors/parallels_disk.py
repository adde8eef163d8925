"""The DiskDescriptor.xml boxpack writes in a Parallels disk directory, `<disk>.hdd/`, and the box members it
names (reading one, and opening the directory, is formats/parallels_hdd.py's).

References: qemu docs/interop/prl-xml.rst (the elements, the geometry rule,
the default top GUID); dissect.hypervisor disk/hdd.py (how a reader opens the
images through it). The elements Parallels Desktop writes beyond the
specification (sector sizes, UID, Name, CompatLevel) are written as it
writes them (AlmaLinux/cloud-images tools/raw-to-vagrant-parallels.sh).
"""

from __future__ import annotations

from lxml import etree

from ..errors import BadInput
from ..formats.parallels_hdd import DEFAULT_TOP_GUID, ROOT_PARENT, image_path, read
from ..xmltree import add


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


def is_marker(member: str) -> bool:
    """Whether a box member is the empty file Parallels Desktop writes in a disk directory, named like it
    (harddisk.hdd/harddisk.hdd): not a disk, though its name ends in .hdd."""
    parts = member.split("/")
    return len(parts) >= 2 and parts[-1] == parts[-2] and parts[-1].lower().endswith(".hdd")


def member_path(descriptor: str, file: str) -> str:
    """The box member an image's File names (formats/parallels_hdd.py's rule, inside a box)."""
    return image_path(descriptor, file)


def member_disk_files(member: str, xml: bytes) -> list[str]:
    """The image a box's DiskDescriptor.xml runs from, as a path in the box. A descriptor that cannot say
    (snapshots, a split disk, broken XML) refuses the box: guessing by file name could take an overlay."""
    try:
        return [member_path(member, read(xml).top_image()[1])]
    except BadInput as e:
        raise BadInput(f"{member}: {e}") from None
