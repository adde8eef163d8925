"""box.ovf for VirtualBox: built with lxml, and checked by the rules VirtualBox's reader applies.

References: DMTF DSP0243 (OVF 1.0) and DSP8023 (envelope schema); VirtualBox
src/VBox/Main/xml/ovfreader.cpp (what it requires) and ApplianceImplExport.cpp
(what it writes); ApplianceImpl.cpp (the disk format URIs it accepts).

No vbox:Machine section: VirtualBox builds the VM from the OVF hardware items,
and a vbox:Machine whose image UUIDs do not match the DiskSection fails import.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lxml import etree

from ..errors import BadInput, BoxpackError
from ..findings import Findings

OVF_NS = "http://schemas.dmtf.org/ovf/envelope/1"
RASD_NS = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
VSSD_NS = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
VBOX_NS = "http://www.virtualbox.org/ovf/machine"
NSMAP = {None: OVF_NS, "ovf": OVF_NS, "rasd": RASD_NS, "vssd": VSSD_NS, "xsi": XSI_NS, "vbox": VBOX_NS}
STREAM_OPTIMIZED = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
# The disk format URIs VirtualBox maps to its VMDK backend (ApplianceImpl.cpp).
VMDK_FORMATS = {
    STREAM_OPTIMIZED,
    "http://www.vmware.com/interfaces/specifications/vmdk.html#sparse",
    "http://www.vmware.com/interfaces/specifications/vmdk.html#compressed",
    "http://www.vmware.com/specifications/vmdk.html#sparse",
    "http://www.vmware.com/specifications/vmdk.html#compressed",
}
# Other disk format URIs VirtualBox accepts (ApplianceImpl.cpp, i_initSetOfSupportedStandardsURI): ISO and VHD.
OTHER_FORMATS = {"http://www.ecma-international.org/publications/standards/Ecma-119.htm", "http://go.microsoft.com/fwlink/?LinkId=137171"}
# For any other URI VirtualBox goes by the file's extension (ApplianceImplImport.cpp, i_importMachineGeneric).
KNOWN_EXTENSIONS = (".vmdk", ".vhd", ".vdi", ".iso")
MEMORY_UNITS = {"MegaBytes", "MB", "byte * 2^20", "GigaBytes", "GB", "byte * 2^30"}
SATA_SUBTYPES = {"AHCI", "vmware.sata.ahci"}
OTHER_STORAGE_SUBTYPES = SATA_SUBTYPES | {"VirtioSCSI", "virtio-scsi", "NVMe", "vmware.nvme.controller"}
CONTROLLER_TYPES = {5, 6, 20}  # IDE, SCSI, other storage (SATA, virtio-scsi, NVMe)
KNOWN_TYPES = {1, 3, 4, 5, 6, 10, 14, 15, 16, 17, 20, 23, 35}

# VirtualBox OS type names and the CIM OS type id VirtualBox maps each to.
OS_TYPES = {
    "Linux_64": 101,
    "Linux": 36,
    "Linux26_64": 100,
    "Linux26": 99,
    "Debian_64": 96,
    "Debian": 95,
    "Ubuntu_64": 94,
    "Ubuntu": 93,
    "RedHat_64": 80,
    "RedHat": 79,
    "Oracle_64": 109,
    "Oracle": 108,
    "Fedora_64": 101,
    "OpenSUSE_64": 101,
    "ArchLinux_64": 101,
    "Gentoo_64": 101,
    "FreeBSD_64": 78,
    "FreeBSD": 42,
    "Other_64": 102,
    "Other": 1,
}
DEFAULT_OS_TYPE = "Linux_64"


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


@dataclass
class Hardware:
    vm_name: str
    os_type: str = DEFAULT_OS_TYPE
    cpus: int = 2
    memory_mb: int = 1024


@dataclass(frozen=True)
class DiskFile:
    """One disk of the appliance: its VMDK's name and size, the guest's capacity in bytes, its UUID."""

    name: str
    size: int
    capacity: int
    uuid: str


def build(hw: Hardware, disks: Sequence[DiskFile]) -> bytes:
    """The OVF 1.0 envelope for one VM with its disks on one SATA controller, in order (port 0 boots)."""
    o, r, v = (lambda n: _q(OVF_NS, n)), (lambda n: _q(RASD_NS, n)), (lambda n: _q(VSSD_NS, n))
    env = etree.Element(o("Envelope"), nsmap=NSMAP)
    env.set(o("version"), "1.0")
    env.set("{http://www.w3.org/XML/1998/namespace}lang", "en-US")

    refs = etree.SubElement(env, o("References"))
    for i, d in enumerate(disks, 1):
        etree.SubElement(refs, o("File"), {o("id"): f"file{i}", o("href"): d.name, o("size"): str(d.size)})

    section = etree.SubElement(env, o("DiskSection"))
    etree.SubElement(section, o("Info")).text = "List of the virtual disks used in the package"
    for i, d in enumerate(disks, 1):
        etree.SubElement(
            section,
            o("Disk"),
            {
                o("capacity"): str(d.capacity),
                o("diskId"): f"vmdisk{i}",
                o("fileRef"): f"file{i}",
                o("format"): STREAM_OPTIMIZED,
                _q(VBOX_NS, "uuid"): d.uuid,
            },
        )

    nets = etree.SubElement(env, o("NetworkSection"))
    etree.SubElement(nets, o("Info")).text = "Logical networks used in the package"
    nat = etree.SubElement(nets, o("Network"), {o("name"): "NAT"})
    etree.SubElement(nat, o("Description")).text = "Logical network used by this appliance."

    vs = etree.SubElement(env, o("VirtualSystem"), {o("id"): hw.vm_name})
    etree.SubElement(vs, o("Info")).text = "A virtual machine"
    oss = etree.SubElement(vs, o("OperatingSystemSection"), {o("id"): str(OS_TYPES[hw.os_type])})
    etree.SubElement(oss, o("Info")).text = "The kind of installed guest operating system"
    etree.SubElement(oss, o("Description")).text = hw.os_type
    etree.SubElement(oss, _q(VBOX_NS, "OSType"), {o("required"): "false"}).text = hw.os_type

    vh = etree.SubElement(vs, o("VirtualHardwareSection"))
    etree.SubElement(vh, o("Info")).text = "Virtual hardware requirements for a virtual machine"
    system = etree.SubElement(vh, o("System"))
    for name, value in (
        ("ElementName", "Virtual Hardware Family"),
        ("InstanceID", "0"),
        ("VirtualSystemIdentifier", hw.vm_name),
        ("VirtualSystemType", "virtualbox-2.2"),
    ):
        etree.SubElement(system, v(name)).text = value

    def item(**fields: str | int) -> None:
        el = etree.SubElement(vh, o("Item"))
        for name in sorted(fields):  # rasd children in the schema's (alphabetical) order
            etree.SubElement(el, r(name)).text = str(fields[name])

    item(Caption=f"{hw.cpus} virtual CPU", Description="Number of virtual CPUs", ElementName=f"{hw.cpus} virtual CPU",
         InstanceID=1, ResourceType=3, VirtualQuantity=hw.cpus)
    item(AllocationUnits="MegaBytes", Caption=f"{hw.memory_mb} MB of memory", Description="Memory Size",
         ElementName=f"{hw.memory_mb} MB of memory", InstanceID=2, ResourceType=4, VirtualQuantity=hw.memory_mb)
    item(Address=0, Caption="sataController0", Description="SATA Controller", ElementName="sataController0",
         InstanceID=3, ResourceSubType="AHCI", ResourceType=20)
    def disk_item(i: int, instance: int) -> None:  # on port i-1 of the SATA controller
        item(AddressOnParent=i - 1, Caption=f"disk{i}", Description="Disk Image", ElementName=f"disk{i}",
             HostResource=f"/disk/vmdisk{i}", InstanceID=instance, Parent=3, ResourceType=17)

    disk_item(1, 4)
    item(AutomaticAllocation="true", Caption="Ethernet adapter on 'NAT'", Connection="NAT",
         ElementName="Ethernet adapter on 'NAT'", InstanceID=5, ResourceSubType="E1000", ResourceType=10)
    for i in range(2, len(disks) + 1):
        disk_item(i, 4 + i)
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _attr(el: etree._Element, name: str) -> str | None:
    """An OVF attribute by its local name, in any namespace or none, as VirtualBox's ovfreader.cpp looks it up."""
    for key, value in el.attrib.items():
        if etree.QName(key).localname == name:
            return value
    return None


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _children(el: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str) and _local(c) == name]


def _sections(el: etree._Element, name: str) -> list[etree._Element]:
    """Children named `name`, or (OVF 0.9) named Section or Content with xsi:type "ovf:<name>_Type": VirtualBox
    reads both spellings (ovfreader.cpp, LoopThruSections and HandleVirtualSystemContent)."""
    generic = "Content" if name == "VirtualSystem" else "Section"
    return [c for c in el if isinstance(c.tag, str)
            and (_local(c) == name or (_local(c) == generic and _attr(c, "type") == f"ovf:{name}_Type"))]


def capacity_bytes(disk: etree._Element) -> int | None:
    """A Disk's capacity in bytes, with its capacityAllocationUnits ("byte * 2^N"); None when unreadable."""
    cap, units = _attr(disk, "capacity") or "", _attr(disk, "capacityAllocationUnits")
    if not cap.isdigit():
        return None
    if units in (None, "byte"):
        return int(cap)
    m = re.fullmatch(r"byte\s*\*\s*2\^(\d{1,2})", units)
    return int(cap) << int(m.group(1)) if m else None


def _text(el: etree._Element, name: str) -> str | None:
    found = _children(el, name)
    return found[0].text.strip() if found and found[0].text else None


def parse(xml: bytes) -> etree._Element:
    """box.ovf as an element tree; BoxpackError when it is not XML. Entities are never resolved."""
    try:
        return etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False))
    except (etree.XMLSyntaxError, ValueError) as e:
        raise BadInput(f"box.ovf is not well-formed XML: {str(e)[:200]}") from None


def check(xml: bytes, members: Mapping[str, int] | None = None) -> Findings:
    """What VirtualBox's OVF import (or Vagrant's use of it) would trip on.

    members maps the box's file names to sizes; when given, every File href
    must name one of them.
    """
    findings = Findings()
    try:
        root = parse(xml)
    except BoxpackError as e:
        findings.add("ovf-xml", "error", str(e))
        return findings
    if _local(root) != "Envelope" or not etree.QName(root).namespace:
        findings.add("ovf-rule", "error", "box.ovf: the root element must be a namespaced Envelope")
        return findings
    problems = _Problems(findings)
    files: dict[str, str] = {}
    for refs in _children(root, "References"):
        for f in _children(refs, "File"):
            fid, href = _attr(f, "id"), _attr(f, "href")
            if not fid or not href:
                problems.append("References/File needs ovf:id and ovf:href")
                continue
            files[fid] = href
            if members is not None and href not in members:
                findings.add("ovf-missing-file", "error", f"File {fid} refers to {href!r}, which is not in the box")
    disk_ids: dict[str, etree._Element] = {}
    for section in _sections(root, "DiskSection"):
        for d in _children(section, "Disk"):
            did, fmt, cap, ref = (_attr(d, k) for k in ("diskId", "format", "capacity", "fileRef"))
            if not did or not fmt or cap is None:
                problems.append("DiskSection/Disk needs ovf:diskId, ovf:format and ovf:capacity")
                continue
            disk_ids[did] = d
            if not cap.isdigit():
                problems.append(f"Disk {did}: ovf:capacity {cap!r} is not a whole number of bytes")
            units = _attr(d, "capacityAllocationUnits")
            # ovfreader.cpp (HandleDiskSection) reads ovf:capacity as a number and never reads the units; the
            # imported disk takes its size from the image, so units only matter if the size they give is wrong
            # (the VirtualBox provider compares it with the VMDK's).
            if units not in (None, "byte") and cap.isdigit():
                if capacity_bytes(d) is None:
                    findings.add("ovf-capacity-units", "warning", f"Disk {did}: capacityAllocationUnits {units!r} is not "
                                 "byte * 2^N, so the disk's size cannot be checked")
                else:
                    findings.add("ovf-capacity-units", "info", f"Disk {did}: capacity in {units!r}; VirtualBox ignores "
                                 "the units and sizes the disk from its image")
            href = files.get(ref or "", "")
            if fmt not in VMDK_FORMATS | OTHER_FORMATS and not href.lower().endswith(KNOWN_EXTENSIONS):
                problems.append(f"Disk {did}: format {fmt!r} is not one VirtualBox imports, nor is the file's extension ({href!r})")
            if ref is not None and ref not in files:
                problems.append(f"Disk {did}: fileRef {ref!r} names no File")
    systems = _sections(root, "VirtualSystem")
    if len(systems) != 1:
        problems.append(f"box.ovf must hold exactly one VirtualSystem (Vagrant imports --vsys 0), not {len(systems)}")
    for vs in systems:
        _check_system(vs, disk_ids, problems)
    return findings


class _Problems:
    """The OVF rules' findings, under one code."""

    def __init__(self, findings: Findings) -> None:
        self.findings = findings

    def append(self, message: str) -> None:
        self.findings.add("ovf-rule", "error", message)


def _check_system(vs: etree._Element, disk_ids: Mapping[str, etree._Element], problems: _Problems) -> None:
    for oss in _sections(vs, "OperatingSystemSection"):
        if not (_attr(oss, "id") or "").isdigit():
            problems.append("OperatingSystemSection needs an integer ovf:id")
    hw = _sections(vs, "VirtualHardwareSection")
    if len(hw) != 1:
        problems.append("VirtualSystem needs one VirtualHardwareSection")
        return
    items = [i for kind in ("Item", "StorageItem", "EthernetPortItem") for i in _children(hw[0], kind)]
    controllers = set()
    nics = []
    for it in items:
        rtype = _text(it, "ResourceType")
        if rtype is None or not rtype.isdigit():
            problems.append("an Item has no integer rasd:ResourceType")
            continue
        t = int(rtype)
        iid = _text(it, "InstanceID") or _text(it, "InstanceId")
        if t not in KNOWN_TYPES and it.get(_q(OVF_NS, "required")) != "false":
            problems.append(f"Item {iid}: unknown ResourceType {t} without ovf:required=\"false\"")
        if t in CONTROLLER_TYPES:
            if not iid:
                problems.append(f"controller Item of type {t} has no InstanceID")
            controllers.add(iid)
        # VirtualBox compares controller subtypes case-insensitively (ovfreader.cpp, RTStrICmp).
        if t == 20 and (_text(it, "ResourceSubType") or "").lower() not in {x.lower() for x in OTHER_STORAGE_SUBTYPES}:
            problems.append(f"Item {iid}: storage controller subtype {_text(it, 'ResourceSubType')!r} is unknown to VirtualBox")
        if t == 3 and not 0 < _int(_text(it, "VirtualQuantity")) < 65535:
            problems.append(f"Item {iid}: CPU count must be 1..65534")
        if t == 4:
            if _text(it, "AllocationUnits") not in MEMORY_UNITS:
                problems.append(f"Item {iid}: memory AllocationUnits {_text(it, 'AllocationUnits')!r} is not one VirtualBox reads")
            if not (_text(it, "VirtualQuantity") or "").isdigit():
                problems.append(f"Item {iid}: memory VirtualQuantity is not a number")
        if t == 10:
            nics.append(it)
    for it in items:
        if _text(it, "ResourceType") != "17":
            continue
        iid = _text(it, "InstanceID") or _text(it, "InstanceId")  # OVF 0.9 spells it InstanceId (fillItem)
        if _text(it, "Parent") not in controllers:
            problems.append(f"disk Item {iid}: Parent {_text(it, 'Parent')!r} is not a controller's InstanceID")
        host = _text(it, "HostResource") or ""
        prefix = next((p for p in ("ovf://disk/", "ovf:/disk/", "/disk/") if host.startswith(p)), None)
        if prefix is None or host[len(prefix):] not in disk_ids:
            problems.append(f"disk Item {iid}: HostResource {host!r} names no Disk")
    # Vagrant sets adapter 1 to NAT itself (plugins/providers/virtualbox/config.rb, network_adapter 1 :nat),
    # so another connection there is only worth a warning, and a box without NICs is fine. VirtualBox names
    # networks case-insensitively (ApplianceImplImport.cpp, strNetwork.compare("NAT", Utf8Str::CaseInsensitive)):
    # open-vmdk's ova-compose writes "nat".
    if nics and (_text(nics[0], "Connection") or "").upper() != "NAT":
        problems.findings.add("ovf-nat", "warning", f"the first network adapter is {_text(nics[0], 'Connection')!r}, not NAT; Vagrant makes it NAT on import")
    _check_vbox_machine(vs, disk_ids, problems)


def _check_vbox_machine(vs: etree._Element, disk_ids: Mapping[str, etree._Element], problems: _Problems) -> None:
    """A vbox:Machine's hard disk UUIDs must match the DiskSection's vbox:uuid, or import fails
    (ApplianceImplImport.cpp, i_importVBoxMachine, looks each one up). DVD and floppy images are not
    exported: import drops those attachments or leaves the drive empty, so they are not checked."""
    uuids = {(d.get(_q(VBOX_NS, "uuid")) or "").strip("{}").lower() for d in disk_ids.values()}
    for machine in vs.iter(_q(VBOX_NS, "Machine")):
        for device in machine.iter("{*}AttachedDevice"):  # VirtualBox writes these in the OVF namespace, not vbox's
            if device.get("type") != "HardDisk":
                continue
            for image in device.iter("{*}Image"):
                u = (image.get("uuid") or "").strip("{}").lower()
                if u not in uuids:
                    problems.append(f"vbox:Machine attaches hard disk {u}, which the DiskSection does not describe")


def _int(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 0


ISO_FORMAT = "http://www.ecma-international.org/publications/standards/Ecma-119.htm"


def disks(root: etree._Element) -> list[tuple[str, int | None]]:
    """(file, capacity in bytes) of each hard disk, in DiskSection order (VirtualBox's export order);
    an ISO is not a hard disk. A Disk whose fileRef names no File is left out (the rules report it)."""
    files = {_attr(f, "id"): _attr(f, "href") for r in _children(root, "References") for f in _children(r, "File")}
    found = []
    for section in _sections(root, "DiskSection"):
        for d in _children(section, "Disk"):
            href = files.get(_attr(d, "fileRef"))
            if href and _attr(d, "format") != ISO_FORMAT:
                found.append((href, capacity_bytes(d)))
    return found


def disk_files(xml: bytes) -> list[str]:
    """The hard disks' files, in order; [] when box.ovf is not XML."""
    try:
        return [href for href, _ in disks(parse(xml))]
    except BoxpackError:
        return []


def facts(xml: bytes) -> dict[str, Any]:
    """What inspect shows of a box.ovf: disk capacity, files, CPUs, memory, controllers, OS type."""
    root = parse(xml)
    disk = next((d for s in _sections(root, "DiskSection") for d in _children(s, "Disk")), None)
    items = [i for vs in _sections(root, "VirtualSystem") for hw in _sections(vs, "VirtualHardwareSection") for i in _children(hw, "Item")]
    by_type: dict[str | None, list[etree._Element]] = {}
    for it in items:
        by_type.setdefault(_text(it, "ResourceType"), []).append(it)
    ostype = next(root.iter(_q(VBOX_NS, "OSType")), None)
    return {
        "capacity": capacity_bytes(disk) if disk is not None else None,
        "disks": [{"file": href, "capacity": cap} for href, cap in disks(root)],
        "files": [_attr(f, "href") for r in _children(root, "References") for f in _children(r, "File")],
        "cpus": next((_text(i, "VirtualQuantity") for i in by_type.get("3", [])), None),
        "memory_mb": next((_text(i, "VirtualQuantity") for i in by_type.get("4", [])), None),
        "controllers": [_text(i, "ResourceSubType") or _text(i, "ElementName") for t in ("5", "6", "20") for i in by_type.get(t, [])],
        "os_type": ostype.text if ostype is not None else None,
    }
