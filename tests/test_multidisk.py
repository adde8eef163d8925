"""Several disks in one box, and boxes for vagrant-qemu: every disk identical to its source in every provider's
box, in the order given; boxes other tools made with several disks convert and verify."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import (GIB, MIB, box_members, extract, make_disk, qemu_check, qemu_compare, run_boxpack, verify_codes,
                      write_box)
from lxml import etree

from boxpack.descriptors.vmx import disk_files, parse_vmx
from boxpack.metadata import validate

# Each provider's disk members, in order, and their format for qemu-img.
DISKS = {
    "libvirt": (["box.img", "box_2.img", "box_3.img"], "qcow2"),
    "qemu": (["box.img", "box_2.img", "box_3.img"], "qcow2"),
    "virtualbox": (["box-disk001.vmdk", "box-disk002.vmdk", "box-disk003.vmdk"], "vmdk"),
    "vmware_desktop": (["root.vmdk", "root-2.vmdk", "root-3.vmdk"], "vmdk"),
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[Path]]:
    """(what boxpack is given, the raw truth): a raw root disk, a 3 GiB data disk as qcow2, an empty 128 MiB xz'd one (xz reads every zero of it)."""
    d = tmp_path_factory.mktemp("disks")
    root = make_disk.make(d / "root.img", size=256 * MIB, data=8 * MIB)
    data_raw = make_disk.make(d / "data.raw", layout="bios", size=3 * GIB, data=4 * MIB, arch="generic")
    data = d / "data.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(data_raw), str(data)], check=True)
    empty_raw = d / "empty.raw"
    with open(empty_raw, "wb") as f:
        f.truncate(128 * MIB)
    subprocess.run(["xz", "-0", "-k", str(empty_raw)], check=True)
    return [root, data, d / "empty.raw.xz"], [root, data_raw, empty_raw]


@pytest.fixture(scope="module")
def boxes(sources, tmp_path_factory: pytest.TempPathFactory) -> Path:
    given, _ = sources
    out = tmp_path_factory.mktemp("boxes")
    run_boxpack(*given, *(a for p in DISKS for a in ("--provider", p)), "--vm-name", "root", "-o", f"{out}/")
    return out


@pytest.mark.first_case_quick
@pytest.mark.parametrize("provider", DISKS)
def test_every_disk_is_in_the_box_in_order_and_identical(tmp_path: Path, sources, boxes: Path, provider: str) -> None:
    _, truth = sources
    d = extract(boxes / f"root-{provider}.box", tmp_path)
    names, fmt = DISKS[provider]
    for name, raw in zip(names, truth):
        if fmt == "qcow2":
            qemu_check(d / name, fmt)
        qemu_compare(d / name, fmt, raw)
    meta = json.loads((d / "metadata.json").read_text())
    validate(meta, "metadata.schema.json", "metadata.json")
    assert meta["provider"] == provider
    assert verify_codes(boxes / f"root-{provider}.box") == set()


@pytest.mark.parametrize("provider", ["libvirt", "qemu"])
def test_libvirt_layout_keeps_box_img_and_lists_every_disk(tmp_path: Path, boxes: Path, provider: str) -> None:
    meta = json.loads(box_members(boxes / f"root-{provider}.box")["metadata.json"])
    assert meta["format"] == "qcow2" and meta["virtual_size"] == 1  # box.img, for vagrant-libvirt < 0.5
    assert meta["disks"] == [{"path": "box.img"}, {"path": "box_2.img"}, {"path": "box_3.img"}]


def test_virtualbox_attaches_every_disk_to_the_sata_controller_in_order(boxes: Path) -> None:
    ovf = etree.fromstring(box_members(boxes / "root-virtualbox.box")["box.ovf"])
    ns = {"o": "http://schemas.dmtf.org/ovf/envelope/1", "r": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"}
    files = [f.get(f"{{{ns['o']}}}href") for f in ovf.findall("o:References/o:File", ns)]
    assert files == DISKS["virtualbox"][0]
    capacities = [int(d.get(f"{{{ns['o']}}}capacity")) for d in ovf.findall("o:DiskSection/o:Disk", ns)]
    assert capacities == [256 * MIB, 3 * GIB, 128 * MIB]
    uuids = {d.get("{http://www.virtualbox.org/ovf/machine}uuid") for d in ovf.findall("o:DiskSection/o:Disk", ns)}
    assert len(uuids) == 3  # VirtualBox refuses an appliance whose disks share a UUID
    attached = sorted((int(i.findtext("r:AddressOnParent", namespaces=ns)), i.findtext("r:HostResource", namespaces=ns))
                      for i in ovf.iterfind(".//o:Item", ns) if i.findtext("r:ResourceType", namespaces=ns) == "17")
    assert attached == [(0, "/disk/vmdisk1"), (1, "/disk/vmdisk2"), (2, "/disk/vmdisk3")]


def test_vmware_attaches_every_disk_on_sata(boxes: Path) -> None:
    settings, bad = parse_vmx(box_members(boxes / "root-vmware_desktop.box")["root.vmx"].decode())
    assert not bad and disk_files(settings) == DISKS["vmware_desktop"][0]
    assert settings["sata0:2.present"] == "TRUE"


def test_hyperv_refuses_a_second_disk_naming_why(tmp_path: Path, sources) -> None:
    given, _ = sources
    proc = run_boxpack(*given[:2], "--provider", "hyperv", "--provider", "libvirt", "-o", f"{tmp_path}/", check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "hyperv boxes hold at most 1 disk, not 2" in err and "New-VagrantVMXML" in err
    assert len(err.splitlines()) == 1 and not list(tmp_path.iterdir())


@pytest.mark.parametrize("source_provider", ["libvirt", "virtualbox", "vmware_desktop"])
def test_multi_disk_boxes_convert_to_every_provider(tmp_path: Path, sources, boxes: Path, source_provider: str) -> None:
    _, truth = sources
    out = tmp_path / "out"
    run_boxpack(boxes / f"root-{source_provider}.box", "--provider", "libvirt", "--provider", "virtualbox", "-o", f"{out}/")
    for provider in ("libvirt", "virtualbox"):
        d = extract(out / f"root-{provider}.box", tmp_path / provider)
        names, fmt = DISKS[provider]
        for name, raw in zip(names, truth):
            qemu_compare(d / name, fmt, raw)
        assert not (d / names[-1]).with_name(names[-1].replace("3", "4")).exists()


def _libvirt_box(path: Path, images: dict[str, Path], meta: dict) -> Path:
    return write_box(path, [("metadata.json", json.dumps(meta).encode()), *((n, p.read_bytes()) for n, p in images.items())])


@pytest.mark.parametrize("layout", ["packer", "vagrant-package"])
def test_other_tools_multi_disk_libvirt_boxes_convert_and_verify(tmp_path: Path, sources, layout: str) -> None:
    """Packer's vagrant post-processor (>= 1.1): box_0.img, box_1.img and `disks` only; `vagrant package` of
    vagrant-libvirt (0.6.0 and later): box_1.img, box_2.img with `disks` and the top-level fields."""
    given, truth = sources
    qcow2 = []
    for i, raw in enumerate(truth[:2]):
        qcow2.append(tmp_path / f"q{i}.qcow2")
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(qcow2[-1])], check=True)
    first = 0 if layout == "packer" else 1
    names = [f"box_{first + i}.img" for i in range(2)]
    meta: dict = {"provider": "libvirt", "disks": [{"path": n} for n in names]}
    if layout == "vagrant-package":
        meta |= {"format": "qcow2", "virtual_size": 1}
    box = _libvirt_box(tmp_path / "other.box", dict(zip(names, qcow2)), meta)
    codes = verify_codes(box)
    assert not {"libvirt-disks", "libvirt-not-qcow2", "metadata-invalid"} & codes
    assert "libvirt-disks-only" in codes  # no box.img: old vagrant-libvirt cannot use either (an info, not a problem)
    run_boxpack(box, "--provider", "virtualbox", "-o", tmp_path / "vb.box")
    d = extract(tmp_path / "vb.box", tmp_path / "x")
    for name, raw in zip(DISKS["virtualbox"][0], truth[:2]):
        qemu_compare(d / name, "vmdk", raw)


def test_a_box_naming_a_disk_it_lacks_is_refused(tmp_path: Path, sources) -> None:
    _, truth = sources
    q = tmp_path / "q.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(truth[0]), str(q)], check=True)
    box = _libvirt_box(tmp_path / "bad.box", {"box.img": q}, {"provider": "libvirt", "disks": [{"path": "box.img"}, {"path": "gone.img"}]})
    proc = run_boxpack(box, "--provider", "virtualbox", "-o", tmp_path / "o.box", check=False)
    assert proc.returncode == 1 and "names the disk 'gone.img', which it does not hold" in proc.stderr.decode()
    assert "libvirt-disks" in verify_codes(box)


def test_qemu_box_vagrantfile_names_the_guest_and_its_firmware(tmp_path: Path, sources) -> None:
    given, _ = sources
    run_boxpack(given[0], "--provider", "qemu", "-o", tmp_path / "q.box")
    vagrantfile = box_members(tmp_path / "q.box")["Vagrantfile"].decode()
    assert 'config.vm.provider :qemu do |qe|' in vagrantfile and 'qe.arch = "x86_64"' in vagrantfile
    assert 'qe.extra_qemu_args = ["-bios", ovmf]' in vagrantfile  # the root disk boots with UEFI only
    assert 'qe.machine = "q35,accel=tcg"' in vagrantfile
    assert "vagrantfile-syntax" not in verify_codes(tmp_path / "q.box")
