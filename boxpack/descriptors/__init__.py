"""The VM descriptors boxes carry, one module each, read and written: OVF (ovf.py), VMware's .vmx (vmx.py),
Hyper-V's VM XML (hyperv_xml.py), Parallels' config.pvs (pvs.py) and DiskDescriptor.xml (parallels_disk.py),
UTM's config.plist (utm_plist.py), and the disk list vagrant-libvirt reads from metadata.json (libvirt.py),
as dissect.hypervisor keeps its descriptor/ package.

DISK_LISTS tells the box reader which members name a box's disks in the order its consumer attaches them:
after metadata.json's list, the first of these a box holds gives the order.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable

from ..formats import parallels_hdd
from . import ovf, parallels_disk, utm_plist, vmx

DISK_LISTS: tuple[tuple[Callable[[str], bool], Callable[[str, bytes], list[str]]], ...] = (
    (lambda member: member == "box.ovf", lambda member, data: ovf.disk_files(data)),
    (lambda member: member.endswith(".vmx"), lambda member, data: vmx.member_disk_files(data)),
    (lambda member: posixpath.basename(member) == parallels_hdd.NAME, parallels_disk.member_disk_files),
    (lambda member: member.endswith(".utm/" + utm_plist.NAME), utm_plist.member_disk_files),
)


def names_disks(member: str) -> bool:
    """Whether the box member at this path is a descriptor that names the box's disks."""
    return any(matches(member) for matches, _ in DISK_LISTS)
