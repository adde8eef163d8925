"""A streamOptimized VMDK whose grains are out of order but whose grain tables are right (what open-vmdk's
`vmdk-convert --noreorder` writes): qemu reads it, so boxpack converts it from a file; VirtualBox's sequential
import refuses it, so verify says so of a VirtualBox box, and a box member (a stream) is refused. inspect and
conversion agree: same grain count, readable, one finding."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import MIB, extract, make_disk, qemu_compare, run_boxpack, write_box

SECTOR = 512


def _record_sectors(vmdk: bytes, pos: int) -> int:
    return -(-(12 + struct.unpack_from("<I", vmdk, pos + 8)[0]) // SECTOR)


def swap_first_grains(vmdk: bytes) -> bytes:
    """Swap the first two grain records in the file and point their grain table entries at the new places."""
    out = bytearray(vmdk)
    overhead = struct.unpack_from("<Q", vmdk, 0x40)[0]
    grain_size = struct.unpack_from("<Q", vmdk, 0x14)[0]
    gtes = struct.unpack_from("<I", vmdk, 0x2C)[0]
    a = overhead * SECTOR
    b = a + _record_sectors(vmdk, a) * SECTOR
    end = b + _record_sectors(vmdk, b) * SECTOR
    rec_a, rec_b = vmdk[a:b], vmdk[b:end]
    out[a:end] = rec_b + rec_a
    gd = struct.unpack_from("<Q", vmdk, 0x38)[0]
    if gd == 2**64 - 1:  # GD_AT_END: in the footer, before the end-of-stream marker
        gd = struct.unpack_from("<Q", vmdk, len(vmdk) - 2 * SECTOR + 0x38)[0]
    gd *= SECTOR
    for record, new_sector in ((rec_a, a // SECTOR + len(rec_b) // SECTOR), (rec_b, a // SECTOR)):
        lba = struct.unpack_from("<Q", record, 0)[0]
        gt = struct.unpack_from("<I", vmdk, gd + 4 * (lba // grain_size // gtes))[0] * SECTOR
        struct.pack_into("<I", out, gt + 4 * (lba // grain_size % gtes), new_sector)
    return bytes(out)


@pytest.fixture(scope="module")
def disks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(raw, qemu-img's streamOptimized, the same with its first two grains swapped)"""
    d = tmp_path_factory.mktemp("order")
    raw = make_disk.make(d / "raw.img", size=64 * MIB, data=4 * MIB)
    ordered = d / "ordered.vmdk"
    subprocess.run(["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", str(raw), str(ordered)], check=True)
    shuffled = d / "shuffled.vmdk"
    shuffled.write_bytes(swap_first_grains(ordered.read_bytes()))
    return raw, ordered, shuffled


def test_the_shuffled_file_is_one_qemu_reads(disks) -> None:
    raw, _, shuffled = disks
    qemu_compare(shuffled, "vmdk", raw)


def test_converts_exactly_from_a_file(tmp_path: Path, disks) -> None:
    raw, _, shuffled = disks
    run_boxpack(shuffled, "--provider", "libvirt", "--provider", "virtualbox", "-o", f"{tmp_path}/")
    qemu_compare(extract(tmp_path / "shuffled-libvirt.box", tmp_path / "l") / "box.img", "qcow2", raw)
    qemu_compare(extract(tmp_path / "shuffled-virtualbox.box", tmp_path / "v") / "box-disk001.vmdk", "vmdk", raw)


def test_inspect_agrees_with_conversion(disks) -> None:
    _, ordered, shuffled = disks
    before = json.loads(run_boxpack("inspect", ordered, "--json").stdout)
    proc = run_boxpack("inspect", shuffled, "--json", check=False)
    after = json.loads(proc.stdout)
    assert proc.returncode == 0 and after["unreadable"] is None
    assert after["disk"]["grains"] == before["disk"]["grains"] > 2
    assert [f["code"] for f in after["findings"]] == ["vmdk-order", *(f["code"] for f in before["findings"])]


def test_in_a_virtualbox_box_it_is_a_sequential_import_problem(tmp_path: Path, disks) -> None:
    _, _, shuffled = disks
    good = tmp_path / "good.box"
    run_boxpack(disks[1], "--provider", "virtualbox", "-o", good)
    with tarfile.open(good) as t:
        members = {m.name: t.extractfile(m).read() for m in t}
    members["box-disk001.vmdk"] = shuffled.read_bytes()
    box = write_box(tmp_path / "bad.box", list(members.items()))
    report = json.loads(run_boxpack("verify", box, "--json", check=False).stdout)
    assert {f["code"]: f["severity"] for f in report["findings"]}.get("vmdk-order") == "error"
    proc = run_boxpack(box, "--provider", "libvirt", "-o", tmp_path / "x.box", check=False)
    assert proc.returncode == 1 and "out of order" in proc.stderr.decode() and "only a file" in proc.stderr.decode()


def test_qemu_stream_without_end_marker_converts_and_a_cut_one_is_refused(tmp_path: Path) -> None:
    """qemu-img writes no end-of-stream marker when data reaches the disk's last grain (its grain tables, before
    overHead, map every grain and qemu reads through them). Whole, it converts; cut at a grain boundary, the
    walk finds fewer grains than the tables map and it is refused, never read as zeros."""
    raw = tmp_path / "full.raw"
    raw.write_bytes(os.urandom(2 * MIB))
    vmdk = tmp_path / "full.vmdk"
    subprocess.run(["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", str(raw), str(vmdk)], check=True)
    data = vmdk.read_bytes()
    assert data[-SECTOR:] != bytes(SECTOR)  # the last sector is grain data, not an end-of-stream marker
    run_boxpack(vmdk, "--provider", "libvirt", "-o", tmp_path / "ok.box")
    qemu_compare(extract(tmp_path / "ok.box", tmp_path / "x") / "box.img", "qcow2", raw)
    report = json.loads(run_boxpack("inspect", vmdk, "--json").stdout)
    assert [(f["code"], f["severity"]) for f in report["findings"]] == [("vmdk-no-eos", "warning")]
    pos, last = 128 * SECTOR, 0
    while pos < len(data):  # the start of the last grain record
        last, pos = pos, pos + _record_sectors(data, pos) * SECTOR
    cut = tmp_path / "cut.vmdk"
    cut.write_bytes(data[:last])
    proc = run_boxpack(cut, "--provider", "libvirt", "-o", tmp_path / "cut.box", check=False)
    assert proc.returncode == 1 and "no end-of-stream marker" in proc.stderr.decode()
    assert "vmdk-truncated" in {f["code"] for f in json.loads(run_boxpack("inspect", cut, "--json", check=False).stdout)["findings"]}
