"""Hyper-V's VM configuration XML as Vagrant's hyperv provider reads it, and as boxpack writes it.

Vagrant (plugins/providers/hyperv/scripts/utils/VagrantVM.psm1, New-VagrantVMXML)
reads the file through PowerShell's XML adapter: `[xml](Get-Content ...)`, then
property paths, which match element names in any case, and Select-Xml XPaths,
which do not. That adapter returns a plain string for an element without
attributes, so `$x.a."#text"` is $null for `<a>1</a>`: every value is written
with a `type` attribute, as Hyper-V's own XML and Packer's box.xml are.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

from lxml import etree

from ..errors import BadInput

IDE_SETTINGS = "_83f8638b-8dca-4152-9eda-2ca8b33039b4_"  # the element names Hyper-V's own XML uses
SCSI_SETTINGS = "_d422512d-2bf2-4752-809d-7b82b5fcb1b4_"


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


def write_vm_xml(generation: int, name: str, cpus: int, memory_mb: int, disk_path: str, channel: str | None) -> bytes:
    """A VM of generation 1 (the disk on IDE controller 0) or 2 (on SCSI, whose controller needs a
    ChannelInstanceGuid, channel), with Secure Boot off: New-VagrantVMXML can turn it on but not choose
    the Microsoft UEFI CA template that Linux shims are signed for."""
    root = etree.Element("configuration")
    props = etree.SubElement(root, "properties")
    _typed(props, "subtype", "integer", str(generation - 1))
    _typed(props, "name", "string", name)
    settings = etree.SubElement(root, "settings")
    _typed(etree.SubElement(settings, "boot"), "device0", "string", "HardDrive")
    _typed(etree.SubElement(settings, "processors"), "count", "integer", str(cpus))
    _typed(settings, "secure_boot_enabled", "bool", "False")
    bank = etree.SubElement(etree.SubElement(root, "memory"), "Bank")
    _typed(bank, "dynamic_memory_enabled", "bool", "False")
    for key in ("limit", "reservation", "size"):
        _typed(bank, key, "integer", str(memory_mb))
    parent = etree.SubElement(root, SCSI_SETTINGS, ChannelInstanceGuid=channel) if channel else etree.SubElement(root, IDE_SETTINGS)
    drive = etree.SubElement(etree.SubElement(parent, "controller0"), "drive0")
    _typed(drive, "pathname", "string", disk_path.replace("/", "\\"))
    _typed(drive, "type", "string", "VHD")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
