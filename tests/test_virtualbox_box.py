"""VirtualBox boxes: the VMDK by qemu-img and VirtualBox's sequential rules, the OVF by VirtualBox's."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
from conftest import bsdtar_list, extract, make_disk, qemu_check, qemu_compare, qemu_info, run_boxpack
from disks import CASES
from lxml import etree
from vbox_sequential import SequentialError, check_footer, read_grains

from boxpack.descriptors import ovf
from boxpack.metadata import validate

OVF = {"ovf": ovf.OVF_NS, "rasd": ovf.RASD_NS}
VMDK = "box-disk001.vmdk"
GRAIN = 64 * 1024
ZERO_GRAIN = bytes(GRAIN)


def _data_grains(raw: Path) -> dict[int, bytes]:
    """The source's non-zero 64 KiB grains, found by walking its data extents (holes read as zero)."""
    grains = {}
    with open(raw, "rb") as f:
        fd, end, pos = f.fileno(), raw.stat().st_size, 0
        while pos < end:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            stop = os.lseek(fd, start, os.SEEK_HOLE)
            for g in range(start // GRAIN * GRAIN, stop, GRAIN):
                data = os.pread(fd, GRAIN, g)
                data += bytes(GRAIN - len(data))
                if data != ZERO_GRAIN:
                    grains[g] = data
            pos = stop
    return grains


def sequential_equals(vmdk: bytes, raw: Path) -> None:
    """What VirtualBox's importer reads is exactly the source: the same grains, nothing else."""
    read = dict(read_grains(vmdk))
    assert read == _data_grains(raw)


@pytest.mark.parametrize("case", CASES)
def test_virtualbox_box_equals_source(tmp_path: Path, case: str) -> None:
    raw = CASES[case](tmp_path / f"{case}.img")
    box = tmp_path / "out.box"
    run_boxpack(raw, "--provider", "virtualbox", "-o", box)
    assert bsdtar_list(box) == ["metadata.json", "Vagrantfile", "box.ovf", VMDK]
    d = extract(box, tmp_path / "x")
    image = d / VMDK
    qemu_check(image, "vmdk")
    qemu_compare(image, "vmdk", raw)
    vmdk = image.read_bytes()
    sequential_equals(vmdk, raw)
    check_footer(vmdk)
    capacity = struct.unpack_from("<Q", vmdk, 12)[0] * 512
    assert capacity == -(-raw.stat().st_size // GRAIN) * GRAIN == qemu_info(image)["virtual-size"]
    root = etree.parse(str(d / "box.ovf"))
    assert int(root.find("ovf:DiskSection/ovf:Disk", OVF).get(f"{{{ovf.OVF_NS}}}capacity")) == capacity
    assert root.find("ovf:References/ovf:File", OVF).get(f"{{{ovf.OVF_NS}}}href") == VMDK
    assert not ovf.check((d / "box.ovf").read_bytes(), {VMDK: image.stat().st_size})
    meta = json.loads((d / "metadata.json").read_text())
    validate(meta, "metadata.schema.json", "metadata.json")
    assert meta["provider"] == "virtualbox"


def test_header_and_descriptor_follow_virtualbox_and_qemu(tmp_path: Path, sample_disk: Path) -> None:
    box = tmp_path / "out.box"
    run_boxpack(sample_disk, "--provider", "virtualbox", "-o", box)
    vmdk = (extract(box, tmp_path / "x") / VMDK).read_bytes()
    version, flags, _cap, grain, desc_off, desc_size, gtes, _rgd, gd_off, overhead = struct.unpack_from("<IIQQQQIQQQ", vmdk, 4)
    assert (version, flags, grain, desc_off, desc_size, gtes, overhead) == (3, 0x30001, 128, 1, 20, 512, 128)
    assert gd_off == 0xFFFFFFFFFFFFFFFF
    text = vmdk[512 : 21 * 512].rstrip(b"\0").decode()
    for line in ("version=1", "parentCID=ffffffff", 'createType="streamOptimized"', 'ddb.adapterType = "ide"',
                 'ddb.toolsVersion = "2147483647"', 'ddb.geometry.heads = "16"'):
        assert line in text.splitlines()
    assert any(line.startswith("CID=") and len(line) == 12 for line in text.splitlines())
    # The first marker sits exactly at overHead, and every grain is zlib-wrapped.
    lba, size = struct.unpack_from("<QI", vmdk, overhead * 512)
    assert size > 0 and vmdk[overhead * 512 + 12] == 0x78


def test_sequential_reader_refuses_what_virtualbox_refuses(tmp_path: Path, sample_disk: Path) -> None:
    """The test reader is not a rubber stamp: swapping two grains or truncating must fail it."""
    box = tmp_path / "out.box"
    run_boxpack(sample_disk, "--provider", "virtualbox", "-o", box)
    vmdk = bytearray((extract(box, tmp_path / "x") / VMDK).read_bytes())
    first = 128 * 512
    lba0 = struct.unpack_from("<Q", vmdk, first)[0]
    size0 = struct.unpack_from("<I", vmdk, first + 8)[0]
    second = first + -(-(12 + size0) // 512) * 512
    struct.pack_into("<Q", vmdk, second, lba0)  # second grain claims the first grain's LBA
    with pytest.raises(SequentialError, match="strictly increasing"):
        list(read_grains(bytes(vmdk)))
    with pytest.raises(SequentialError):
        list(read_grains(bytes(vmdk[: len(vmdk) // 2])))


def test_both_providers_in_one_run_match_separate_runs(tmp_path: Path, sample_disk: Path) -> None:
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    both = tmp_path / "both"
    both.mkdir()
    run_boxpack(sample_disk, "--provider", "libvirt", "--provider", "virtualbox", "-o", both, env=env)
    assert sorted(p.name for p in both.iterdir()) == ["sample-libvirt.box", "sample-virtualbox.box"]
    for provider in ("libvirt", "virtualbox"):
        alone = run_boxpack(sample_disk, "--provider", provider, "-o", "-", env=env).stdout
        assert (both / f"sample-{provider}.box").read_bytes() == alone


def test_virtualbox_box_is_reproducible(tmp_path: Path, sample_disk: Path) -> None:
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    a = run_boxpack(sample_disk, "--provider", "virtualbox", "-o", "-", "--threads", "1", env=env).stdout
    b = run_boxpack(sample_disk, "--provider", "virtualbox", "-o", "-", "--threads", "2", env=env).stdout
    assert a == b


def _vagrantfiles(tmp_path: Path, disk: Path, *extra: str) -> dict[str, str]:
    out = tmp_path / "boxes"
    out.mkdir(exist_ok=True)
    proc = run_boxpack(disk, "--provider", "libvirt", "--provider", "virtualbox", "-o", out, "--force", *extra)
    files = {p: (extract(out / f"{disk.stem}-{p}.box", tmp_path / p) / "Vagrantfile").read_text() for p in ("libvirt", "virtualbox")}
    files["summary"] = proc.stderr.decode()
    return files


@pytest.mark.parametrize(
    "layout, firmware",
    [("efi", "efi"), ("bios", "bios"), ("hybrid", "bios")],
)
def test_firmware_detected_from_the_partition_table(tmp_path: Path, layout: str, firmware: str) -> None:
    disk = make_disk.make(tmp_path / f"{layout}.img", layout, size=256 * 1024 * 1024, data=1024 * 1024)
    files = _vagrantfiles(tmp_path, disk)
    efi = firmware == "efi"
    assert ('"--firmware", "efi"' in files["virtualbox"]) is efi
    assert ("libvirt.loader = ovmf" in files["libvirt"]) is efi
    assert f"firmware {firmware} (detected" in files["summary"]


def test_firmware_override(tmp_path: Path) -> None:
    disk = make_disk.make(tmp_path / "bios.img", "bios", size=256 * 1024 * 1024, data=1024 * 1024)
    files = _vagrantfiles(tmp_path, disk, "--firmware", "efi")
    assert '"--firmware", "efi"' in files["virtualbox"] and "firmware efi (as asked)" in files["summary"]


def test_base_mac_is_off_by_default_and_derived_with_auto(tmp_path: Path, sample_disk: Path) -> None:
    assert "base_mac" not in _vagrantfiles(tmp_path, sample_disk)["virtualbox"]
    auto = _vagrantfiles(tmp_path, sample_disk, "--base-mac", "auto")["virtualbox"]
    again = _vagrantfiles(tmp_path, sample_disk, "--base-mac", "auto")["virtualbox"]
    assert auto == again and 'config.vm.base_mac = "080027' in auto
    assert 'base_mac = "080027AABBCC"' in _vagrantfiles(tmp_path, sample_disk, "--base-mac", "080027aabbcc")["virtualbox"]
    bad = run_boxpack(sample_disk, "--provider", "virtualbox", "--base-mac", "08:00:27:aa:bb:cc", "-o", "-", check=False)
    assert bad.returncode == 2 and "12 hex digits" in bad.stderr.decode()


def test_hardware_options_reach_the_ovf(tmp_path: Path, sample_disk: Path) -> None:
    box = tmp_path / "out.box"
    run_boxpack(sample_disk, "--provider", "virtualbox", "-o", box, "--cpus", "4", "--memory", "2048",
                "--os-type", "Debian_64", "--vm-name", "debian-12")
    root = etree.parse(str(extract(box, tmp_path / "x") / "box.ovf"))
    vs = root.find("ovf:VirtualSystem", OVF)
    assert vs.get(f"{{{ovf.OVF_NS}}}id") == "debian-12"
    assert vs.find("ovf:OperatingSystemSection", OVF).get(f"{{{ovf.OVF_NS}}}id") == "96"
    items = {i.findtext("rasd:ResourceType", namespaces=OVF): i for i in vs.iterfind(".//ovf:Item", OVF)}
    assert items["3"].findtext("rasd:VirtualQuantity", namespaces=OVF) == "4"
    assert items["4"].findtext("rasd:VirtualQuantity", namespaces=OVF) == "2048"
    assert items["20"].findtext("rasd:ResourceSubType", namespaces=OVF) == "AHCI"
    assert items["10"].findtext("rasd:Connection", namespaces=OVF) == "NAT"
    bad = run_boxpack(sample_disk, "--provider", "virtualbox", "--os-type", "Windows", "-o", "-", check=False)
    assert bad.returncode == 2 and "--os-type 'Windows': is unknown" in bad.stderr.decode()


def test_architecture_detected_from_gpt(tmp_path: Path) -> None:
    for arch, expected in (("arm64", "arm64"), ("x86-64", "amd64"), ("generic", None)):
        disk = make_disk.make(tmp_path / f"{arch}.img", size=256 * 1024 * 1024, data=1024 * 1024, arch=arch)
        box = tmp_path / f"{arch}.box"
        run_boxpack(disk, "--provider", "virtualbox", "-o", box)
        meta = json.loads((extract(box, tmp_path / arch) / "metadata.json").read_text())
        assert meta.get("architecture") == expected
