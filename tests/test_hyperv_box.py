"""Hyper-V boxes: the VHDX read by qemu-img and dissect.hypervisor, box.xml as Vagrant's New-VagrantVMXML reads it."""

from __future__ import annotations

import codecs
import hashlib
import json
from pathlib import Path

import disks
import pytest
from conftest import (MIB, box_members, extract, make_disk, qemu_check, qemu_compare, qemu_info, run_boxpack,
                      verify_codes, write_box)
from dissect.hypervisor.disk.vhdx import VHDX

from boxpack.providers.hyperv import read_vm_xml


def _sha256(f, size: int) -> str:
    digest = hashlib.sha256()
    left = size
    while left:
        data = f.read(min(4 * MIB, left))
        if not data:
            break
        digest.update(data)
        left -= len(data)
    return digest.hexdigest()


def _pack(raw: Path, tmp: Path, *args: str) -> tuple[Path, Path, Path]:
    box = tmp / "hv.box"
    run_boxpack(raw, "--provider", "hyperv", "-o", box, *args)
    d = extract(box, tmp / "x")
    [vhdx] = (d / "Virtual Hard Disks").glob("*.vhdx")
    return box, d, vhdx


@pytest.mark.first_case_quick
@pytest.mark.parametrize("case", disks.CASES)
def test_vhdx_is_identical_for_qemu_and_dissect(tmp_path: Path, case: str) -> None:
    raw = disks.CASES[case](tmp_path / "src.img")
    _, _, vhdx = _pack(raw, tmp_path)
    qemu_check(vhdx, "vhdx")
    qemu_compare(vhdx, "vhdx", raw)
    size = -(-raw.stat().st_size // 512) * 512
    assert qemu_info(vhdx)["virtual-size"] == size
    with open(vhdx, "rb") as f, open(raw, "rb") as r:
        second = VHDX(f)
        assert second.size == size
        assert _sha256(second, raw.stat().st_size) == _sha256(r, raw.stat().st_size)


def test_block_size_option(tmp_path: Path) -> None:
    raw = make_disk.make(tmp_path / "d.img", size=256 * MIB, data=8 * MIB)
    _, _, vhdx = _pack(raw, tmp_path, "--vhdx-block-size", "32")
    assert qemu_info(vhdx)["cluster-size"] == 32 * MIB
    qemu_compare(vhdx, "vhdx", raw)
    bad = run_boxpack(raw, "--provider", "hyperv", "--vhdx-block-size", "3", "-o", tmp_path / "b.box", check=False)
    assert bad.returncode == 2 and "power of two" in bad.stderr.decode()


@pytest.mark.parametrize("layout,arch,generation,controller", [("bios", None, 1, "IDE"), ("efi", None, 2, "SCSI"), ("efi", "arm64", 2, "SCSI")])
def test_box_xml_as_vagrant_reads_it(tmp_path: Path, layout: str, arch: str | None, generation: int, controller: str) -> None:
    raw = make_disk.make(tmp_path / "d.img", layout=layout, size=64 * MIB, data=2 * MIB)
    box, d, vhdx = _pack(raw, tmp_path, "--cpus", "3", "--memory", "1536", "--vm-name", "debian", *(["--architecture", arch] if arch else []))
    vm = read_vm_xml((d / "Virtual Machines" / "box.xml").read_bytes())
    assert (vm.generation, vm.drives, vm.untyped) == (generation, [(controller, 0)], [])
    assert (vm.name, vm.processors, vm.memory_mb, vm.boot_device, vm.secure_boot) == ("debian", "3", "1536", "HardDrive", False)
    assert vhdx.name == "debian.vhdx"
    assert json.loads((d / "metadata.json").read_text())["provider"] == "hyperv"
    assert run_boxpack("verify", box, check=False).returncode == 0


def test_verify_catches_what_vagrant_would_get_wrong(tmp_path: Path) -> None:
    raw = make_disk.make(tmp_path / "d.img", layout="efi", size=64 * MIB, data=2 * MIB)
    box, d, _ = _pack(raw, tmp_path)
    xml = (d / "Virtual Machines" / "box.xml").read_bytes()
    members = box_members(box)

    def rebox(out: Path, changed: bytes) -> Path:
        return write_box(out, {**members, "Virtual Machines/box.xml": changed}.items())

    untyped = xml.replace(b'<subtype type="integer">1</subtype>', b"<subtype>1</subtype>")
    assert read_vm_xml(untyped).generation == 1  # what PowerShell makes of it
    assert "hyperv-xml-untyped" in verify_codes(rebox(tmp_path / "a.box", untyped))
    gen2_on_ide = xml.replace(b' ChannelInstanceGuid="', b' Other="')
    assert "hyperv-xml-disk" in verify_codes(rebox(tmp_path / "b.box", gen2_on_ide))
    gen1_on_scsi = xml.replace(b'<subtype type="integer">1</subtype>', b'<subtype type="integer">0</subtype>')
    assert "hyperv-xml-disk" in verify_codes(rebox(tmp_path / "c.box", gen1_on_scsi))
    no_drive_type = xml.replace(b'<type type="string">VHD</type>', b"<type>VHD</type>")
    assert "hyperv-xml-disk" in verify_codes(rebox(tmp_path / "d.box", no_drive_type))


def test_hyperv_box_converts_to_the_other_providers(tmp_path: Path) -> None:
    raw = make_disk.make(tmp_path / "d.img", size=256 * MIB, data=8 * MIB)
    box, _, _ = _pack(raw, tmp_path)
    run_boxpack(box, "--provider", "libvirt", "--provider", "vmware_desktop", "-o", f"{tmp_path}/out/")
    qemu_compare(extract(tmp_path / "out" / "hv-libvirt.box", tmp_path / "l") / "box.img", "qcow2", raw)


def _real_shapes(xml: bytes) -> dict[str, bytes]:
    """The box.xml boxpack writes, reshaped as Hyper-V's own exports and Packer's box.xml have it."""
    guid = xml.split(b'ChannelInstanceGuid="')[1].split(b'"')[0]
    child_guid = xml.replace(b' ChannelInstanceGuid="' + guid + b'">',
                             b'>\n    <ChannelInstanceGuid type="string">{' + guid + b'}</ChannelInstanceGuid>')
    utf16 = codecs.BOM_UTF16_LE + xml.replace(b"encoding='UTF-8'", b"encoding='UTF-16'").replace(b"\n", b"\r\n").decode().encode("utf-16-le")
    return {
        "lower-case bank": xml.replace(b"<Bank>", b"<bank>").replace(b"</Bank>", b"</bank>"),
        "ChannelInstanceGuid as a child element": child_guid,
        "UTF-16LE with a BOM and CRLF": utf16,
        "a UTF-16 declaration over UTF-8 bytes": xml.replace(b"encoding='UTF-8'", b"encoding='UTF-16'"),
        "upper-case element names": xml.replace(b"<count ", b"<Count ").replace(b"</count>", b"</Count>")
                                       .replace(b"<pathname ", b"<PathName ").replace(b"</pathname>", b"</PathName>"),
    }


@pytest.mark.parametrize("shape", ["lower-case bank", "ChannelInstanceGuid as a child element", "UTF-16LE with a BOM and CRLF",
                                   "a UTF-16 declaration over UTF-8 bytes", "upper-case element names"])
def test_box_xml_in_the_shapes_hyper_v_and_packer_write_reads_the_same(tmp_path: Path, shape: str) -> None:
    """PowerShell's XML adapter matches names case-insensitively and finds a child element as well as an
    attribute; `[xml](Get-Content ...)` decodes by the BOM and ignores the declaration (VagrantVM.psm1,
    New-VagrantVMXML). Each shape reads as the original does, and verifies clean."""
    raw = make_disk.make(tmp_path / "d.img", layout="efi", size=64 * MIB, data=2 * MIB)
    box, d, _ = _pack(raw, tmp_path, "--cpus", "3", "--memory", "1536")
    xml = (d / "Virtual Machines" / "box.xml").read_bytes()
    reshaped = _real_shapes(xml)[shape]
    want, got = read_vm_xml(xml), read_vm_xml(reshaped)
    assert got == want and (got.generation, got.drives, got.processors, got.memory_mb) == (2, [("SCSI", 0)], "3", "1536")
    members = box_members(box)
    assert verify_codes(write_box(tmp_path / "r.box", {**members, "Virtual Machines/box.xml": reshaped}.items())) == set()


def test_an_upper_case_xml_extension_is_checked(tmp_path: Path) -> None:
    """import.rb takes Virtual Machines/*.XML too (extname.downcase): verify reads it."""
    raw = make_disk.make(tmp_path / "d.img", layout="efi", size=64 * MIB, data=2 * MIB)
    box, _, _ = _pack(raw, tmp_path)
    members = box_members(box)
    xml = members.pop("Virtual Machines/box.xml")
    broken = xml.replace(b' ChannelInstanceGuid="', b' Other="')  # a generation 2 disk on IDE
    assert "hyperv-xml-disk" in verify_codes(write_box(tmp_path / "u.box", {**members, "Virtual Machines/vm.XML": broken}.items()))
