"""Files other tools wrote (fixtures/third-party-ovf, source and licence in its SOURCES.md): the OVF
descriptors VirtualBox's own import test imports must verify without errors, and boxes built around them
(disks made at the sizes they declare) must convert disk for disk."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import GIB, ROOT, extract, qemu_compare, run_boxpack, write_box

from boxpack.descriptors import ovf

CORPUS = ROOT / "fixtures/third-party-ovf"
# descriptor -> (qemu-img options for its disks' format, whether it carries metadata.json)
BOXES = {
    "joomla-1.1.4-ovf.ovf": (["-O", "vmdk"], False),  # vmdk.html#sparse: monolithicSparse; a V1 box
    "winxp.ovf": (["-O", "vmdk", "-o", "subformat=streamOptimized"], True),
}


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.ovf")))
def test_virtualbox_test_descriptors_verify_without_errors(name: str) -> None:
    findings = ovf.check((CORPUS / name).read_bytes())
    assert not [f for f in findings if f.severity == "error"], [f.message for f in findings]


def _disk(path: Path, size: int, seed: int) -> Path:
    """A sparse raw disk of exactly size bytes with data at its start, middle and end."""
    with open(path, "wb") as f:
        f.truncate(size)
        for offset in (0, size // 2 // 65536 * 65536, size - 4096):
            f.seek(offset)
            f.write(bytes([seed]) + os.urandom(4095))
    return path


@pytest.mark.parametrize("name", BOXES)
def test_boxes_around_them_verify_and_convert_disk_for_disk(tmp_path: Path, name: str) -> None:
    xml = (CORPUS / name).read_bytes()
    qemu_opts, with_metadata = BOXES[name]
    disks = ovf.facts(xml)["disks"]
    assert len(disks) == 2 and all(d["capacity"] >= GIB for d in disks)
    raws, members = [], [("box.ovf", xml)]
    if with_metadata:
        members.insert(0, ("metadata.json", json.dumps({"provider": "virtualbox"}).encode()))
    for i, d in enumerate(disks):
        raw = _disk(tmp_path / f"d{i}.raw", d["capacity"], i)
        vmdk = tmp_path / f"d{i}.vmdk"
        subprocess.run(["qemu-img", "convert", *qemu_opts, str(raw), str(vmdk)], check=True)
        raws.append(raw)
        members.append((d["file"], vmdk.read_bytes()))
    box = write_box(tmp_path / "third-party.box", members)
    report = json.loads(run_boxpack("verify", box, "--json", check=False).stdout)
    errors = [f for f in report["findings"] if f["severity"] == "error"]
    assert not errors and report["unreadable"] is None, report["findings"]
    assert [d["member"] for d in report["disks"]] == [d["file"] for d in disks]
    run_boxpack(box, "--provider", "libvirt", "-o", tmp_path / "out.box")
    out = extract(tmp_path / "out.box", tmp_path / "x")
    for member, raw in zip(["box.img", "box_2.img"], raws):
        qemu_compare(out / member, "qcow2", raw)
