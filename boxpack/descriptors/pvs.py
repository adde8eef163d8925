"""config.pvs, a Parallels VM's configuration (XML): what boxpack writes and what vagrant-parallels reads.

vagrant-parallels reads one value from it: the VM's identity,
//ParallelsVirtualMachine/Identification/VmUuid, braces stripped
(lib/vagrant-parallels/action/box_register.rb, box_id), then registers the
bundle with `prlctl register --preserve-uuid`: every box needs a VmUuid of its
own. Parallels Desktop reads the rest, with the XML model Parallels
open-sourced for Virtuozzo (OpenVZ/libprlxmlmodel): a simple element of
Schema/VmConfig.xsd without minOccurs is mandatory, and the loader that
Utils/xsd2src generates fails on a missing one (CodeTemplates.h,
UNIT_CHECK_MIN_OCCURS_ERROR: PRL_ERR_PARSE_VM_CONFIG); MANDATORY lists them
for the sections boxpack writes. Values are those Parallels Desktop writes,
from AlmaLinux's template cut from a Parallels Desktop 26.3.2 arm64 VM
(AlmaLinux/cloud-images tpl/vagrant/parallels/box-aarch64.pvs) and, where the
architecture matters, the CoreOS image scripts' x86-64 template from
Parallels Desktop 10.3.0 (its AppVersion 10.3.0-29227); elements left out take
Parallels' defaults. Codes, as in those VMs: OsType 9 and OsNumber 2317 for a
Linux guest; Hdd InterfaceType 2 (SATA), EmulatedType 1 (an image file),
DiskType 1 (expanding); NetworkAdapter AdapterType 3 (virtio), EmulatedType 1
(shared networking, vagrant-parallels' adapter 0), AdapterNumber -1 and
AdapterName "Default Adapter" (bound to no host adapter).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lxml import etree

from ..errors import BadInput
from ..xmltree import add, parse

NAME = "config.pvs"
UUID = re.compile(r"\{[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}")
MAC = re.compile(r"[0-9A-F]{12}")
SATA, VIRTIO_NET = 2, 3
LINUX, LINUX_NUMBER = 9, 2317
APP_VERSION = "26.3.2-57398"  # the Parallels Desktop that wrote AlmaLinux's template

# VmConfig.xsd's mandatory simple elements in each section boxpack writes (a section itself may be left out:
# its class is "single_fixed" and takes defaults). AppVersion may be the root's appVersion attribute, and a
# device's Index its index attribute (the schema's attribute=).
MANDATORY = {
    "": ("AppVersion",),
    "Identification": ("VmUuid", "VmName", "ServerUuid", "ServerHost"),
    "Settings/General": ("OsType", "OsNumber", "IsTemplate"),
    "Settings/Startup": ("AutoStart", "WindowMode"),
    "Hardware/Cpu": ("Number", "Mode", "AccelerationLevel", "EnableVTxSupport"),
    "Hardware/Chipset": ("Type",),
    "Hardware/Memory": ("RAM",),
    "Hardware/Hdd": ("Index", "Enabled", "Connected", "EmulatedType", "SystemName", "UserFriendlyName", "Remote",
                     "InterfaceType", "StackIndex", "DiskType", "Size", "SizeOnDisk", "Passthrough", "Splitted"),
    "Hardware/NetworkAdapter": ("Index", "Enabled", "Connected", "EmulatedType", "SystemName", "UserFriendlyName",
                                "Remote", "AdapterNumber", "AdapterName"),
}
AS_ATTRIBUTE = {"AppVersion": "appVersion", "Index": "index"}


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
    arm64: bool = False
    disks: list[Hdd] = field(default_factory=list)
    macs: list[str] = field(default_factory=list)


def write(vm: Pvs) -> bytes:
    root = etree.Element("ParallelsVirtualMachine", schemaVersion="1.0")
    add(root, "AppVersion", APP_VERSION)
    ident = add(root, "Identification")
    for name, value in (("VmUuid", vm.vm_uuid), ("VmType", 0), ("SourceVmUuid", vm.vm_uuid), ("LinkedVmUuid", ""),
                        ("LinkedSnapshotUuid", ""), ("VmName", vm.name), ("ServerUuid", ""), ("ServerHost", "")):
        add(ident, name, value)
    settings = add(root, "Settings")
    general = add(settings, "General")
    add(general, "OsType", LINUX)
    add(general, "OsNumber", LINUX_NUMBER)
    add(general, "IsTemplate", 0)
    startup = add(settings, "Startup")
    add(startup, "AutoStart", 0)
    add(startup, "WindowMode", 5)
    bios = add(startup, "Bios")
    # Parallels Desktop 26 writes 5 for an arm64 VM's EFI (the Virtuozzo schema's boolean is wider there).
    add(bios, "EfiEnabled", (5 if vm.arm64 else 1) if vm.efi else 0)
    add(bios, "EfiSecureBoot", 0)
    hardware = add(root, "Hardware")
    cpu = add(hardware, "Cpu")
    add(cpu, "Number", vm.cpus)
    add(cpu, "Mode", 0)
    if vm.arm64:
        add(cpu, "Type", 1)  # Parallels Desktop 26's arm64 VM; its x86-64 VMs have none
    add(cpu, "AutoCountEnabled", 0)
    add(cpu, "AccelerationLevel", 2)
    add(cpu, "EnableVTxSupport", 1)
    if vm.arm64:  # Parallels Desktop 26's arm64 VM; an x86-64 VM takes the default chipset
        chipset = add(hardware, "Chipset")
        add(chipset, "Type", 2)
        add(chipset, "Version", 2)
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
                            ("SystemName", f"eth{index}"), ("UserFriendlyName", f"eth{index}"), ("Remote", 0),
                            ("AdapterNumber", -1), ("AdapterName", "Default Adapter"), ("MAC", mac),
                            ("HostMAC", mac[:6] + "%06X" % (int(mac[6:], 16) ^ 0x800000)), ("AdapterType", VIRTIO_NET)):
            add(nic, name, value)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def missing(xml: bytes) -> list[str]:
    """The mandatory elements (MANDATORY) missing from the sections the config has."""
    root = parse(xml, "ParallelsVirtualMachine")
    gone = []
    for section, names in MANDATORY.items():
        for el in root.findall(section) if section else [root]:
            gone += [f"{section}/{n}".lstrip("/") for n in names
                     if el.find(n) is None and not (n in AS_ATTRIBUTE and el.get(AS_ATTRIBUTE[n]) is not None)]
    return list(dict.fromkeys(gone))


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
