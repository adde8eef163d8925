"""config.pvs, a Parallels VM's configuration (XML): what boxpack writes and what vagrant-parallels reads.

vagrant-parallels reads one value from it: the VM's identity,
//ParallelsVirtualMachine/Identification/VmUuid, braces stripped
(lib/vagrant-parallels/action/box_register.rb, box_id), then registers the
bundle with `prlctl register --preserve-uuid`: every box needs a VmUuid of its
own. Parallels Desktop reads the rest. The elements written are those of
AlmaLinux's template, cut from a Parallels Desktop 26.3.2 VM
(AlmaLinux/cloud-images tpl/vagrant/parallels/box-aarch64.pvs); elements left
out take Parallels' defaults. Codes, as in that VM: OsType 9 and OsNumber 2317
for a Linux guest; Hdd InterfaceType 2 (SATA), EmulatedType 1 (an image
file), DiskType 1 (expanding); NetworkAdapter AdapterType 3 (virtio),
EmulatedType 1 (shared networking, vagrant-parallels' adapter 0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lxml import etree

from ..errors import BadInput
from .xmltree import add, parse

NAME = "config.pvs"
UUID = re.compile(r"\{[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}")
MAC = re.compile(r"[0-9A-F]{12}")
SATA, VIRTIO_NET = 2, 3
LINUX, LINUX_NUMBER = 9, 2317



@dataclass
class Hdd:
    system_name: str  # the .hdd directory, relative to the .pvm
    uuid: str
    size_mb: int
    interface: int = SATA


@dataclass
class Pvs:
    vm_uuid: str
    name: str
    cpus: int
    memory_mb: int
    efi: bool
    disks: list[Hdd] = field(default_factory=list)
    macs: list[str] = field(default_factory=list)


def write(vm: Pvs) -> bytes:
    root = etree.Element("ParallelsVirtualMachine", schemaVersion="1.0")
    ident = add(root, "Identification")
    add(ident, "VmUuid", vm.vm_uuid)
    add(ident, "VmType", 0)
    add(ident, "SourceVmUuid", vm.vm_uuid)
    add(ident, "LinkedVmUuid", "")
    add(ident, "LinkedSnapshotUuid", "")
    add(ident, "VmName", vm.name)
    settings = add(root, "Settings")
    general = add(settings, "General")
    add(general, "OsType", LINUX)
    add(general, "OsNumber", LINUX_NUMBER)
    bios = add(add(settings, "Startup"), "Bios")
    add(bios, "EfiEnabled", int(vm.efi))
    add(bios, "EfiSecureBoot", 0)
    hardware = add(root, "Hardware")
    cpu = add(hardware, "Cpu")
    add(cpu, "Number", vm.cpus)
    add(cpu, "AutoCountEnabled", 0)
    memory = add(hardware, "Memory")
    add(memory, "RAM", vm.memory_mb)
    add(memory, "RamAutoSizeEnabled", 0)
    for index, disk in enumerate(vm.disks):
        hdd = add(hardware, "Hdd", id=str(index))
        for name, value in (("Uuid", disk.uuid), ("Index", index), ("Enabled", 1), ("Connected", 1), ("EmulatedType", 1),
                            ("SystemName", disk.system_name), ("UserFriendlyName", disk.system_name), ("Remote", 0),
                            ("InterfaceType", disk.interface), ("StackIndex", index), ("DiskType", 1),
                            ("Size", disk.size_mb), ("SizeOnDisk", 0), ("Passthrough", 0), ("SubType", 0),
                            ("Splitted", 0), ("DiskVersion", 2), ("CompatLevel", "level2")):
            add(hdd, name, value)
    for index, mac in enumerate(vm.macs):
        nic = add(hardware, "NetworkAdapter", id=str(index))
        for name, value in (("Index", index), ("Enabled", 1), ("Connected", 1), ("EmulatedType", 1),
                            ("SystemName", f"eth{index}"), ("UserFriendlyName", f"eth{index}"), ("MAC", mac),
                            ("HostMAC", mac[:6] + "%06X" % (int(mac[6:], 16) ^ 0x800000)), ("AdapterType", VIRTIO_NET)):
            add(nic, name, value)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _int(el: etree._Element, path: str, default: int = 0) -> int:
    try:
        return int(el.findtext(path) or default)
    except ValueError:
        raise BadInput(f"{path} is not a number ({el.findtext(path)!r})") from None


def read(xml: bytes) -> Pvs:
    """The fields boxpack and vagrant-parallels use; BadInput when it is not a Parallels VM's config.pvs."""
    root = parse(xml, "ParallelsVirtualMachine")
    hw = root.find("Hardware")
    vm = Pvs(root.findtext("Identification/VmUuid") or "", root.findtext("Identification/VmName") or "",
             _int(root, "Hardware/Cpu/Number"), _int(root, "Hardware/Memory/RAM"),
             _int(root, "Settings/Startup/Bios/EfiEnabled") != 0)
    if hw is not None:
        vm.disks = [Hdd(h.findtext("SystemName") or "", h.findtext("Uuid") or "", _int(h, "Size"), _int(h, "InterfaceType"))
                    for h in hw.iterfind("Hdd") if h.findtext("EmulatedType") in (None, "1")]
        vm.macs = [n.findtext("MAC") or "" for n in hw.iterfind("NetworkAdapter")]
    return vm
