"""vmware_desktop boxes: the monolithicSparse VMDK read by qemu-img and libvmdk, the .vmx as VMware reads it, verify's rules."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import disks
import pytest
import pyvmdk
from conftest import (MIB, box_members, extract, make_disk, qemu_check, qemu_compare, qemu_info, run_boxpack,
                      verify_codes, write_box)

from boxpack.descriptors.vmx import parse_vmx


def libvmdk_sha256(vmdk: Path) -> tuple[int, str]:
    """An independent reader (libyal's libvmdk): the disk's size and the sha256 of every byte it reads."""
    handle = pyvmdk.handle()
    handle.open(str(vmdk))
    handle.open_extent_data_files()
    digest = hashlib.sha256()
    while data := handle.read_buffer(4 * MIB):
        digest.update(data)
    size = handle.get_media_size()
    handle.close()
    return size, digest.hexdigest()


def _raw_sha256(raw: Path) -> str:
    digest = hashlib.sha256()
    with open(raw, "rb") as f:
        while data := f.read(4 * MIB):
            digest.update(data)
    return digest.hexdigest()


def _pack(raw: Path, tmp: Path, *args: str) -> tuple[Path, Path]:
    box = tmp / "vm.box"
    run_boxpack(raw, "--provider", "vmware_desktop", "-o", box, *args)
    return box, extract(box, tmp / "x")


@pytest.mark.first_case_quick
@pytest.mark.parametrize("case", disks.CASES)
def test_vmdk_is_identical_for_qemu_and_libvmdk(tmp_path: Path, case: str) -> None:
    raw = disks.CASES[case](tmp_path / "src.img")
    _, d = _pack(raw, tmp_path)
    [vmdk] = d.glob("*.vmdk")
    qemu_check(vmdk, "vmdk")
    qemu_compare(vmdk, "vmdk", raw)
    info = qemu_info(vmdk)
    assert info["format-specific"]["data"]["create-type"] == "monolithicSparse"
    assert info["virtual-size"] == -(-raw.stat().st_size // 512) * 512  # the exact size, not rounded to a grain
    if raw.stat().st_size % 512 == 0:
        assert libvmdk_sha256(vmdk) == (raw.stat().st_size, _raw_sha256(raw))


@pytest.mark.parametrize("layout,arch", [("bios", None), ("efi", None), ("efi", "arm64")])
def test_vmx_has_what_vmware_reads(tmp_path: Path, layout: str, arch: str | None) -> None:
    raw = make_disk.make(tmp_path / "debian.img", layout=layout, size=64 * MIB, data=2 * MIB)
    box, d = _pack(raw, tmp_path, "--os-type", "Debian_64", "--cpus", "4", "--memory", "2048",
                   *(["--architecture", arch] if arch else []))
    [vmx_file] = d.glob("*.vmx")
    settings, bad = parse_vmx(vmx_file.read_text())
    assert not bad
    assert settings["config.version"] == "8" and settings["numvcpus"] == "4" and settings["memsize"] == "2048"
    assert (d / settings["sata0:0.filename"]).is_file() and settings["sata0:0.filename"].endswith(".vmdk")
    assert settings["ethernet0.present"] == "TRUE" and "ethernet0.address" not in settings and "uuid.bios" not in settings
    arm = arch == "arm64"
    assert settings["guestos"] == ("arm-debian12-64" if arm else "debian12-64")
    assert settings["virtualhw.version"] == ("20" if arm else "19")
    assert settings.get("firmware") == (None if layout == "bios" and not arm else "efi")
    assert ("usb_xhci.present" in settings) == arm
    meta = json.loads((d / "metadata.json").read_text())
    assert meta["provider"] == "vmware_desktop" and meta.get("architecture") == ("arm64" if arm else "amd64" if layout == "efi" else None)
    assert run_boxpack("verify", box, check=False).returncode == 0


def test_verify_knows_vmware_boxes(tmp_path: Path) -> None:
    raw = make_disk.make(tmp_path / "d.img", size=64 * MIB, data=2 * MIB)
    box, _ = _pack(raw, tmp_path)
    good = box_members(box)
    vmx = next(n for n in good if n.endswith(".vmx"))
    vmdk = next(n for n in good if n.endswith(".vmdk"))
    wrong_disk = dict(good, **{vmx: good[vmx].replace(vmdk.encode(), b"other.vmdk")})
    assert "vmx-disk" in verify_codes(write_box(tmp_path / "a.box", wrong_disk.items()))
    no_vmx = {k: v for k, v in good.items() if k != vmx}
    assert "vmware-no-vmx" in verify_codes(write_box(tmp_path / "b.box", no_vmx.items()))
    run_boxpack(raw, "--provider", "virtualbox", "-o", tmp_path / "vb.box")
    stream_optimized = dict(good, **{vmdk: box_members(tmp_path / "vb.box")["box-disk001.vmdk"]})
    assert "vmware-disk-format" in verify_codes(write_box(tmp_path / "c.box", stream_optimized.items()))
    image = bytearray(good[vmdk])
    rgd = struct.unpack_from("<Q", image, 48)[0]
    first_rgt = struct.unpack_from("<I", image, rgd * 512)[0]
    struct.pack_into("<I", image, first_rgt * 512, 0x12345)  # a redundant grain table entry the primary lacks
    assert "vmdk-redundant" in verify_codes(write_box(tmp_path / "d.box", dict(good, **{vmdk: bytes(image)}).items()))


def test_vmware_box_converts_to_the_other_providers(tmp_path: Path) -> None:
    raw = make_disk.make(tmp_path / "d.img", size=256 * MIB, data=8 * MIB)
    box, _ = _pack(raw, tmp_path)
    run_boxpack(box, "--provider", "libvirt", "--provider", "virtualbox", "-o", f"{tmp_path}/out/")
    qemu_compare(extract(tmp_path / "out" / "vm-libvirt.box", tmp_path / "l") / "box.img", "qcow2", raw)
    qemu_compare(extract(tmp_path / "out" / "vm-virtualbox.box", tmp_path / "v") / "box-disk001.vmdk", "vmdk", raw)


# What Packer's EncodeVMX writes (packer-plugin-vmware builder/vmware/common/vmx.go): keys sorted, values
# quoted except the noQuotes keys (".virtualssd").
PACKER_VMX = '''.encoding = "UTF-8"
config.version = "8"
displayname = "packer-debian"
scsi0:0.filename = "disk.vmdk"
scsi0:0.present = "TRUE"
scsi0:0.virtualSSD = 1
virtualhw.version = "19"
'''


def _vmx_findings(vmx: str) -> list[tuple[str, str]]:
    from boxpack.providers.vmware_desktop import VmwareDesktop
    from boxpack.report import Report

    report = Report("b.box", members=[{"name": "packer.vmx"}, {"name": "disk.vmdk"}], metadata={"provider": "vmware_desktop"})
    VmwareDesktop.check_box(report, {"packer.vmx": vmx.encode()})
    return [(f.code, f.message) for f in report.findings]


def test_unquoted_values_as_packer_writes_them_are_read() -> None:
    settings, bad = parse_vmx(PACKER_VMX)
    assert not bad and settings["scsi0:0.virtualssd"] == "1" and settings["scsi0:0.filename"] == "disk.vmdk"
    assert _vmx_findings(PACKER_VMX) == []
    assert [c for c, _ in _vmx_findings(PACKER_VMX + 'broken line\nkey = "open\n')] == ["vmx-syntax", "vmx-syntax"]


def test_an_encrypted_vmx_is_named_once() -> None:
    """VMware keeps an encrypted VM's settings, disks included, in encryption.data."""
    encrypted = '.encoding = "UTF-8"\nencryption.keySafe = "vmware:key/list/(pair/(phrase/abc))"\nencryption.data = "c2VjcmV0"\n'
    assert _vmx_findings(encrypted) == [("vmx-encrypted", "packer.vmx: an encrypted VM; boxpack cannot read it (decrypt it in VMware first)")]
