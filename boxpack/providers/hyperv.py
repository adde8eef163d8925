"""The Hyper-V box, made on any machine: Virtual Hard Disks/<name>.vhdx, Virtual Machines/box.xml, metadata.json.

Vagrant's hyperv provider (plugins/providers/hyperv/action/import.rb) takes
the first .xml or .vmcx in `Virtual Machines/` and the first .vhd or .vhdx in
`Virtual Hard Disks/`, and for an .xml creates the VM with New-VM from what
New-VagrantVMXML (scripts/utils/VagrantVM/VagrantVM.psm1) reads through
PowerShell's XML adapter. That adapter returns a plain string for an element
without attributes, so `$x.a."#text"` is $null for `<a>1</a>`: every value is
written with a `type` attribute, as Hyper-V's own XML and Packer's box.xml
are, or the generation silently becomes 1 and the disk is silently left off.

A UEFI-only (or arm64) disk gets a generation 2 VM with the disk on SCSI,
a BIOS disk generation 1 with the disk on IDE controller 0. Secure Boot is
off: New-VagrantVMXML can turn it on but not choose the Microsoft UEFI CA
template that Linux shims are signed for.
"""

from __future__ import annotations

import codecs
import re
import uuid
from dataclasses import dataclass, field

from lxml import etree

from ..archive import Member
from ..errors import BadInput, BoxpackError
from ..formats.vhdx import DEFAULT_BLOCK, MAX_VIRTUAL_SIZE, VhdxLayout
from ..metadata import metadata_json
from ..report import Report
from .base import HARDWARE, Option, Provider, vm_name

MIB = 1024 * 1024
CONFIG = "Virtual Machines/box.xml"
DISKS = "Virtual Hard Disks/"
IDE_SETTINGS = "_83f8638b-8dca-4152-9eda-2ca8b33039b4_"  # the element names Hyper-V's own XML uses
SCSI_SETTINGS = "_d422512d-2bf2-4752-809d-7b82b5fcb1b4_"


def _block_size(mib: int) -> str | None:
    return None if 1 <= mib <= 256 and not mib & (mib - 1) else "must be a power of two from 1 to 256"


def _typed(parent: etree._Element, name: str, kind: str, value: str) -> etree._Element:
    el = etree.SubElement(parent, name, type=kind)
    el.text = value
    return el


@dataclass
class VmXml:
    """What New-VagrantVMXML reads from the XML, read the way PowerShell reads it."""

    generation: int = 1
    name: str | None = None
    boot_device: str | None = None
    secure_boot: bool = False
    processors: str | None = None
    memory_mb: str | None = None
    drives: list[tuple[str, int]] = field(default_factory=list)  # (IDE or SCSI, controller number)
    untyped: list[str] = field(default_factory=list)  # elements PowerShell reads as nothing


def _decode(xml: bytes) -> bytes:
    """The XML as UTF-8 bytes, decoded as `Get-Content` decodes a file: by its byte order mark (Hyper-V writes
    UTF-16LE with one), else as UTF-8. `[xml]` then parses the text, so a declaration's encoding="UTF-16"
    over UTF-8 bytes (a real export reused as a template) is never consulted."""
    for bom, codec in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if xml.startswith(bom):
            try:
                return xml.decode(codec).encode("utf-8")
            except UnicodeDecodeError as e:
                raise BadInput(f"not {codec.upper().removesuffix('-SIG')} text: {e.reason}") from None
    return xml


def _child(el: etree._Element | None, name: str) -> etree._Element | None:
    """`$el.name` for a child element: PowerShell's XML adapter matches names case-insensitively."""
    if el is None:
        return None
    return next((c for c in el if isinstance(c.tag, str) and c.tag.lower() == name.lower()), None)


def _path(el: etree._Element | None, *names: str) -> etree._Element | None:
    for name in names:
        el = _child(el, name)
    return el


def _has(el: etree._Element | None, name: str) -> bool:
    """`if ($el.name)`: an attribute with a value or a child element of that name, in any case."""
    if el is None:
        return False
    return any(k.lower() == name.lower() and v for k, v in el.attrib.items()) or _child(el, name) is not None


def read_vm_xml(xml: bytes) -> VmXml:
    """New-VagrantVMXML's reading of the XML (plugins/providers/hyperv/scripts/utils/VagrantVM.psm1):
    `[xml](Get-Content ...)`, then property paths (case-insensitive) and Select-Xml XPaths (case-sensitive,
    as XPath is). BoxpackError when it is not XML."""
    try:
        root = etree.fromstring(_decode(xml), etree.XMLParser(resolve_entities=False, no_network=True, encoding="utf-8"))
    except (etree.XMLSyntaxError, ValueError) as e:
        raise BadInput(f"not well-formed XML: {str(e)[:200]}") from None
    vm = VmXml()

    def text(el: etree._Element | None, where: str) -> str | None:
        """`$el."#text"`: the text of an element that has attributes; $null for one that has none."""
        if el is None:
            return None
        if not el.attrib:
            vm.untyped.append(where)
            return None
        return (el.text or "").strip()

    first = lambda path: next(iter(root.xpath(path)), None)  # noqa: E731
    top = root if root.tag.lower() == "configuration" else None  # $VMConfig.configuration
    subtype = text(_path(top, "properties", "subtype"), "properties/subtype")
    vm.generation = (int(subtype) if subtype and subtype.isdigit() else 0) + 1
    vm.name = text(_path(top, "properties", "name"), "properties/name")
    vm.boot_device = text(_child(first("//boot"), "device0"), "boot/device0")
    vm.secure_boot = text(first("//secure_boot_enabled"), "secure_boot_enabled") == "True"
    vm.processors = text(_path(top, "settings", "processors", "count"), "settings/processors/count")
    bank = _child(first("//memory"), "Bank")  # (Select-Xml -XPath "//memory").node.Bank
    vm.memory_mb = text(_child(bank, "size"), "memory/Bank/size") if bank is not None else None
    for controller in root.xpath("//*[starts-with(name(.),'controller')]"):
        kind = "SCSI" if _has(controller.getparent(), "ChannelInstanceGuid") else "IDE"  # $Node.ParentNode.ChannelInstanceGuid
        number = re.search(r"\d", controller.tag)
        for drive in controller:
            if not isinstance(drive.tag, str):
                continue
            where = f"{controller.tag}/{drive.tag}"
            if text(_child(drive, "pathname"), f"{where}/pathname") and text(_child(drive, "type"), f"{where}/type") == "VHD":
                vm.drives.append((kind, int(number.group()) if number else -1))
    return vm


class HyperV(Provider):
    NAME = "hyperv"
    DISK_FORMAT = "vhdx"
    OPTIONS = (
        *HARDWARE,
        Option("vhdx_block_size", "--vhdx-block-size", "Hyper-V: VHDX block size in MiB, a power of two from 1 to 256 "
               "(default: 1, Microsoft's recommendation for Linux guests)", default=DEFAULT_BLOCK // MIB, type=int,
               metavar="MIB", check=_block_size),
    )
    MEMBERS = (CONFIG,)
    TEXTS = (".xml",)
    MAX_DISKS = 1
    MAX_DISK_SIZE = MAX_VIRTUAL_SIZE  # 64 TiB: the VHDX specification's, and Hyper-V's
    DISK_LIMIT = ("Vagrant's Hyper-V import copies the first disk of Virtual Hard Disks/ and attaches that copy for "
                  "every drive of the VM (import.rb; VagrantVM.psm1, New-VagrantVMXML), so a second disk would be "
                  "the first again")

    def generation(self) -> int:
        return 2 if self.job.firmware == "efi" or self.job.architecture == "arm64" else 1

    def vm_xml(self, disk_path: str) -> bytes:
        s, gen = self.job.settings, self.generation()
        root = etree.Element("configuration")
        props = etree.SubElement(root, "properties")
        _typed(props, "subtype", "integer", str(gen - 1))
        _typed(props, "name", "string", vm_name(self.job))
        settings = etree.SubElement(root, "settings")
        _typed(etree.SubElement(settings, "boot"), "device0", "string", "HardDrive")
        _typed(etree.SubElement(settings, "processors"), "count", "integer", str(s["cpus"]))
        _typed(settings, "secure_boot_enabled", "bool", "False")
        bank = etree.SubElement(etree.SubElement(root, "memory"), "Bank")
        _typed(bank, "dynamic_memory_enabled", "bool", "False")
        for name in ("limit", "reservation", "size"):
            _typed(bank, name, "integer", str(s["memory"]))
        if gen == 2:
            channel = str(uuid.UUID(bytes=self.job.disk_id[:16]))
            parent = etree.SubElement(root, SCSI_SETTINGS, ChannelInstanceGuid=channel)
        else:
            parent = etree.SubElement(root, IDE_SETTINGS)
        drive = etree.SubElement(etree.SubElement(parent, "controller0"), "drive0")
        _typed(drive, "pathname", "string", disk_path.replace("/", "\\"))
        _typed(drive, "type", "string", "VHD")
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)

    def members(self) -> list[Member]:
        job = self.job
        disk = f"{DISKS}{vm_name(job)}.vhdx"
        (boot,) = job.disks  # MAX_DISKS
        layout = VhdxLayout(boot.source.size, boot.clusters, boot.disk_id, job.settings["vhdx_block_size"] * MIB)
        block = "  # Hyper-V reads the VM's generation, CPUs, memory and disk from Virtual Machines/box.xml.\n"
        return [
            Member.from_bytes("metadata.json", metadata_json(self.metadata())),
            Member.from_bytes("Vagrantfile", self.vagrantfile(block)),
            Member.from_bytes(CONFIG, self.vm_xml(disk)),
            Member(disk, layout.image_size, lambda: layout.stream(boot.source)),
            *self.include_members(),
        ]

    @classmethod
    def check_box(cls, report: Report, texts: dict[str, bytes]) -> None:
        """import.rb's folder rules, then the XML as New-VagrantVMXML reads it, then the disk's format."""
        names = [m["name"].removeprefix("./") for m in report.members]
        configs = [n for n in names if n.startswith("Virtual Machines/") and n.lower().endswith((".xml", ".vmcx"))]
        disks = [n for n in names if n.startswith(DISKS) and n.lower().endswith((".vhd", ".vhdx"))]
        if not configs:
            report.add("hyperv-layout", "error", "no .xml or .vmcx in Virtual Machines/; Vagrant says BoxInvalid")
        if not disks:
            report.add("hyperv-layout", "error", "no .vhd or .vhdx in Virtual Hard Disks/; Vagrant says BoxInvalid")
        if len(configs) > 1:
            report.add("hyperv-layout", "warning", f"{len(configs)} VM configurations; which one Vagrant takes depends on directory order")
        xmls = [c for c in configs if c.lower().endswith(".xml")]
        if not xmls or xmls[0] not in texts:
            return
        try:
            vm = read_vm_xml(texts[xmls[0]])
        except BoxpackError as e:
            report.add("hyperv-xml", "error", f"{xmls[0]}: {e}")
            return
        for where in vm.untyped[:3]:
            report.add("hyperv-xml-untyped", "error", f"{xmls[0]}: <{where}> has no attribute, so PowerShell reads it as nothing (write it with a type attribute)")
        if not vm.drives:
            report.add("hyperv-xml-disk", "error", f"{xmls[0]}: no controller drive with a pathname and type VHD: Vagrant would attach no disk")
        for kind, number in vm.drives:
            if vm.generation == 2 and kind == "IDE":
                report.add("hyperv-xml-disk", "error", f"{xmls[0]}: a generation 2 VM has no IDE controller (disk on IDE {number})")
        if len(vm.drives) > 1:
            report.add("hyperv-xml-disk", "error", f"{xmls[0]}: {len(vm.drives)} drives, but Vagrant attaches its copy of "
                       "the box's first disk for every drive (VagrantVM.psm1, New-VagrantVMXML)")
        if len(disks) > 1:
            report.add("hyperv-layout", "warning", f"{len(disks)} disks in {DISKS}; Vagrant copies only the first it finds "
                       "(import.rb), the others are ignored")
        if vm.generation == 1 and vm.drives and all(kind == "SCSI" for kind, _ in vm.drives):
            report.add("hyperv-xml-disk", "error", f"{xmls[0]}: a generation 1 VM boots from IDE, but the disk is on SCSI")
        if vm.processors is None or vm.memory_mb is None:
            report.add("hyperv-xml", "error", f"{xmls[0]}: settings/processors/count or memory/Bank/size is missing")
        fmt = str(report.disk.get("format", ""))
        if report.disk and not fmt.startswith(("VHD", "VHDX")):
            report.add("hyperv-disk-format", "error", f"{report.disk.get('member')} is {fmt}, not a VHD or VHDX")
