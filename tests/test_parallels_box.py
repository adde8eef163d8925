"""Parallels boxes: the .hds read by qemu-img and dissect.hypervisor, config.pvs as vagrant-parallels reads it,
DiskDescriptor.xml by prl-xml.rst's rules, and Parallels disks as sources."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import disks
import pytest
from lxml import etree
from conftest import (MIB, box_members, extract, make_disk, qemu_check, qemu_compare, qemu_info, run_boxpack,
                      verify_codes, write_box)
from dissect.hypervisor.descriptor.pvs import PVS
from dissect.hypervisor.disk.hdd import HDD

from boxpack.descriptors import pvs
from boxpack.formats import parallels_hdd
from boxpack.inspect import boottest

HDS = "harddisk.hdd/harddisk.hdd.0.{5fbaabe3-6958-40ff-92a7-860e329aab41}.hds"


def _pack(raw: Path, tmp: Path, *args: str, name: str = "p.box") -> tuple[Path, Path]:
    box = tmp / name
    run_boxpack(raw, "--provider", "parallels", "-o", box, *args)
    return box, extract(box, tmp / f"x-{name}")


def _digest(f, size: int, chunk: int = 4 * MIB) -> str:
    h, left = hashlib.sha256(), size
    while left:
        data = f.read(min(chunk, left))
        assert data, "cut short"
        h.update(data)
        left -= len(data)
    return h.hexdigest()


@pytest.mark.first_case_quick
@pytest.mark.parametrize("case", disks.CASES)
def test_hds_is_identical_for_qemu_and_dissect(tmp_path: Path, case: str) -> None:
    raw = disks.CASES[case](tmp_path / "src.img")
    _, d = _pack(raw, tmp_path)
    [vm] = d.glob("*.pvm")
    hds = vm / HDS
    qemu_check(hds, "parallels")
    qemu_compare(hds, "parallels", raw)
    size = -(-raw.stat().st_size // (256 * 1024)) * 256 * 1024  # whole 16 x 32 cylinders
    assert qemu_info(hds)["virtual-size"] == size
    assert hds.read_bytes()[:16] == b"WithoutFreeSpace"  # Parallels Desktop's own variant, below 2 TiB
    stream = HDD(vm / "harddisk.hdd").open()  # through DiskDescriptor.xml, as dissect.hypervisor opens a .hdd
    with open(raw, "rb") as r:
        # One cluster per read: dissect.hypervisor 3.21's HDS._iter_runs joins a run of unallocated clusters to
        # an allocated one whose file offset happens to equal the run's length, and reads zeros for it.
        assert _digest(stream, raw.stat().st_size, MIB) == _digest(r, raw.stat().st_size)
    assert stream.read(size) == bytes(size - raw.stat().st_size)
    with open(vm / "config.pvs") as f:
        assert list(PVS(f).disks()) == ["harddisk.hdd"]


def test_a_2_tib_disk_takes_the_64_bit_variant(tmp_path: Path) -> None:
    """2 TiB is 2^32 sectors, one more than WithoutFreeSpace's 32-bit size holds: WithouFreSpacExt, as qemu-img
    writes. qemu-img 7.2's compare aborts on Parallels images of 1 TiB and more, its own included
    (bdrv_co_block_status assertion), so dissect.hypervisor reads the data back, and the image converted
    to qcow2 by boxpack is compared."""
    raw = tmp_path / "big.img"
    end = 2 * 1024**4
    with open(raw, "wb") as f:
        f.truncate(end)
        f.seek(end - 512)
        f.write(b"\xee" * 512)
        f.seek(MIB)
        f.write(b"start" * 100)
    _, d = _pack(raw, tmp_path)
    [vm] = d.glob("*.pvm")
    hds = vm / HDS
    assert hds.read_bytes()[:16] == b"WithouFreSpacExt"
    qemu_check(hds, "parallels")
    assert qemu_info(hds)["virtual-size"] == end
    stream = HDD(vm / "harddisk.hdd").open()
    stream.seek(MIB)
    assert stream.read(500) == b"start" * 100
    stream.seek(end - 1024)
    assert stream.read(1024) == bytes(512) + b"\xee" * 512
    out = tmp_path / "back.box"
    run_boxpack(hds, "--provider", "libvirt", "-o", out)
    qemu_compare(extract(out, tmp_path / "back") / "box.img", "qcow2", raw)


def test_config_pvs_and_descriptor_as_vagrant_parallels_and_prl_xml_read_them(tmp_path: Path) -> None:
    raw = make_disk.make(tmp_path / "d.img", layout="efi", size=64 * MIB, data=2 * MIB)
    box, d = _pack(raw, tmp_path, "--cpus", "3", "--memory", "1536", "--vm-name", "debian")
    assert json.loads((d / "metadata.json").read_text())["provider"] == "parallels"
    vm = pvs.read((d / "debian.pvm" / "config.pvs").read_bytes())
    assert (vm.name, vm.cpus, vm.memory_mb, vm.efi) == ("debian", 3, 1536, True)
    assert pvs.UUID.fullmatch(vm.vm_uuid) and vm.macs[0].startswith("001C42")
    desc = parallels_hdd.read((d / "debian.pvm" / "harddisk.hdd" / "DiskDescriptor.xml").read_bytes())
    assert desc.cylinders * desc.heads * desc.sectors == desc.size == -(-raw.stat().st_size // (256 * 1024)) * 512
    assert desc.storages[0].blocksize == 2048 and desc.top_image() == ("Compressed", HDS.split("/")[1])
    assert (d / "debian.pvm" / "harddisk.hdd" / "harddisk.hdd").stat().st_size == 0  # as Parallels Desktop writes it
    bios = make_disk.make(tmp_path / "b.img", layout="bios", size=64 * MIB, data=2 * MIB)
    _, b = _pack(bios, tmp_path, name="b.box")
    other = pvs.read(next(b.glob("*.pvm")).joinpath("config.pvs").read_bytes())
    assert not other.efi and other.vm_uuid != vm.vm_uuid  # --preserve-uuid: each box registers as its own VM
    arm = make_disk.make(tmp_path / "a.img", layout="bios", size=64 * MIB, data=2 * MIB)
    _, a = _pack(arm, tmp_path, "--architecture", "arm64", name="a.box")
    assert pvs.read(next(a.glob("*.pvm")).joinpath("config.pvs").read_bytes()).efi  # Apple Silicon boots EFI only
    assert run_boxpack("verify", box, check=False).returncode == 0


def test_same_disk_same_box_bytes(tmp_path: Path) -> None:
    raw = make_disk.make(tmp_path / "d.img", size=64 * MIB, data=4 * MIB)
    one, _ = _pack(raw, tmp_path, name="1.box")
    two, _ = _pack(raw, tmp_path, "--threads", "1", name="2.box")
    assert one.read_bytes() == two.read_bytes()


def test_verify_catches_what_parallels_would_refuse(tmp_path: Path) -> None:
    raw = make_disk.make(tmp_path / "d.img", layout="efi", size=64 * MIB, data=2 * MIB)
    box, _ = _pack(raw, tmp_path, "--vm-name", "vm")
    members = box_members(box)
    config, descriptor = "vm.pvm/config.pvs", "vm.pvm/harddisk.hdd/DiskDescriptor.xml"

    def codes(name: str, changes: dict[str, bytes | None]) -> set[str]:
        changed = {**members, **changes}
        return verify_codes(write_box(tmp_path / name, [(k, v) for k, v in changed.items() if v is not None]))

    pvs_xml, desc_xml = members[config], members[descriptor]
    uuid = pvs_xml.split(b"<VmUuid>")[1].split(b"</VmUuid>")[0]
    assert "parallels-pvs" in codes("a.box", {config: pvs_xml.replace(uuid, b"not-a-uuid")})
    assert "parallels-layout" in codes("b.box", {config: None})
    assert "parallels-hdd" in codes("c.box", {descriptor: desc_xml.replace(b"<Heads>16</Heads>", b"<Heads>15</Heads>")})
    assert "parallels-hdd" in codes("d.box", {descriptor: desc_xml.replace(b"<Blocksize>2048</Blocksize>", b"<Blocksize>256</Blocksize>")})
    assert "parallels-hdd" in codes("e.box", {descriptor: desc_xml.replace(b"<File>harddisk", b"<File>/Users/me/vm.pvm/harddisk.hdd/x")})
    assert "parallels-hdd" in codes("f.box", {descriptor: None})
    # The disk boots with UEFI only: a VM set to BIOS would not boot it (inspect says what config.pvs says).
    assert "firmware-mismatch" in codes("h.box", {config: pvs_xml.replace(b"<EfiEnabled>1</EfiEnabled>",
                                                                         b"<EfiEnabled>0</EfiEnabled>")})
    assert "firmware efi (vm.pvm/config.pvs)" in run_boxpack("inspect", box).stdout.decode()
    renamed = {k.replace("vm.pvm/", "vm.vmwarevm/"): v for k, v in members.items()}
    assert "parallels-layout" in verify_codes(write_box(tmp_path / "g.box", renamed.items()))


XSD = Path(__file__).parent.parent / "fixtures" / "libprlxmlmodel" / "VmConfig.xsd"  # SOURCES.md beside it
XS = "{http://www.w3.org/2001/XMLSchema}"


def _schema_mandatory(config: etree._Element | None = None) -> tuple[dict[str, set[str]], list[str]]:
    """Walk VmConfig.xsd as libprlxmlmodel's generated loader reads (Utils/xsd2src): the mandatory simple
    elements of each section, and (given a config) those missing from it, neither given as the attribute
    the schema's attribute= names. A section left out is a single_fixed class that takes defaults."""
    import re

    xsd = etree.parse(str(XSD)).getroot()
    elements = {e.get("name"): e for e in xsd.findall(XS + "element")}
    types = {c.get("name"): c for c in xsd.findall(XS + "complexType")}

    def notes(el: etree._Element) -> str:
        return " ".join(d.text or "" for d in el.findall(f"{XS}annotation/{XS}documentation") if d.get("source") is None)

    def children(ct: etree._Element) -> list[etree._Element]:
        ext = ct.find(f"{XS}complexContent/{XS}extension")
        if ext is not None:
            return children(types[ext.get("base")]) + children(ext)
        seq = ct.find(XS + "sequence")
        return [c for c in seq if c.tag == XS + "element"] if seq is not None else []

    table: dict[str, set[str]] = {}
    missing: list[str] = []

    def walk(ct: etree._Element, path: str, nodes: list[etree._Element]) -> None:
        for decl in children(ct):
            target = elements[decl.get("ref")] if decl.get("ref") else decl
            name, doc = target.get("name"), notes(decl) + notes(target)
            sub = target.find(XS + "complexType")
            sub = types.get(target.get("type", "")) if sub is None else sub
            where = f"{path}/{name}".lstrip("/")
            if sub is None:
                if int(decl.get("minOccurs", "1")) > 0:
                    table.setdefault(path, set()).add(name)
                    attribute = re.search(r"attribute=(\w+)", doc)
                    missing.extend(where for n in nodes
                                   if n.find(name) is None and not (attribute and n.get(attribute[1]) is not None))
            elif where.count("/") < 2:  # the sections boxpack writes lie two deep at most
                walk(sub, where, [c for n in nodes for c in n.findall(name)])

    walk(elements["VirtuozzoVirtualMachine"].find(XS + "complexType"), "", [] if config is None else [config])
    return table, missing


def test_config_pvs_has_every_element_parallels_schema_requires(tmp_path: Path) -> None:
    """Against Parallels' own VM config schema (libprlxmlmodel), for x86-64 and arm64; verify checks the same
    elements, from a table the schema is checked against."""
    table, _ = _schema_mandatory()
    for section, names in pvs.MANDATORY.items():
        assert set(names) == table[section], section
    raw = make_disk.make(tmp_path / "d.img", layout="efi", size=64 * MIB, data=2 * MIB)
    for arch in ("amd64", "arm64"):
        (tmp_path / arch).mkdir()
        _, d = _pack(raw, tmp_path / arch, "--architecture", arch, "--vm-name", "vm")
        config = (d / "vm.pvm" / "config.pvs").read_bytes()
        assert _schema_mandatory(etree.fromstring(config))[1] == [], arch
        root = etree.fromstring(config)
        efi, chipset, cpu_type = (root.findtext("Settings/Startup/Bios/EfiEnabled"), root.findtext("Hardware/Chipset/Type"),
                                  root.findtext("Hardware/Cpu/Type"))
        # What Parallels Desktop 26 writes for an arm64 VM (AlmaLinux's template); an x86-64 VM has neither.
        assert (efi, chipset, cpu_type) == (("5", "2", "1") if arch == "arm64" else ("1", None, None)), arch
    members = box_members(tmp_path / "amd64" / "p.box")
    config_xml = members["vm.pvm/config.pvs"]
    for element in (b"<ServerUuid></ServerUuid>", b"<AdapterName>Default Adapter</AdapterName>"):
        cut = write_box(tmp_path / "cut.box", {**members, "vm.pvm/config.pvs": config_xml.replace(element, b"")}.items())
        out = run_boxpack("verify", cut, check=False).stdout.decode()
        name = element.split(b">")[0].strip(b"<").decode()
        assert f"parallels-pvs: vm.pvm/config.pvs: no {name}" in out.replace("Identification/", "").replace(
            "Hardware/NetworkAdapter/", ""), out
        assert _schema_mandatory(etree.fromstring(config_xml.replace(element, b"")))[1][0].endswith(name)


def test_a_config_pvs_parallels_desktop_wrote_has_no_element_missing(tmp_path: Path) -> None:
    """AlmaLinux's template, cut from a Parallels Desktop 26.3.2 VM: the schema's rules and verify's table
    find nothing missing in it, and a box carrying it (filled in as AlmaLinux's build does) verifies clean."""
    template = (XSD.parent.parent / "parallels-templates" / "almalinux-box-aarch64.pvs").read_bytes()
    assert _schema_mandatory(etree.fromstring(template))[1] == [] and pvs.missing(template) == []
    raw = make_disk.make(tmp_path / "d.img", layout="efi", size=64 * MIB, data=2 * MIB)
    box, d = _pack(raw, tmp_path, "--architecture", "arm64", "--vm-name", "vm")
    ours = pvs.read((d / "vm.pvm" / "config.pvs").read_bytes())
    filled = template
    for name, value in (("VM_UUID", ours.vm_uuid.strip("{}")), ("VM_NAME", "vm"), ("CREATION_DATE", "2026-12-04 00:00:00"),
                        ("TOOLS_VERSION", ""), ("NUMVCPUS", "2"), ("MEMSIZE", "1024"), ("HDD_UUID", ours.disks[0].uuid.strip("{}")),
                        ("DISK_SIZE_MB", str(ours.disks[0].size_mb)), ("DISK_SIZE_ON_DISK_MB", "0"), ("MAC", ours.macs[0]),
                        ("HOST_MAC", ours.macs[0])):
        filled = filled.replace(f"@{name}@".encode(), value.encode())
    filled = filled.replace(b"harddisk1.hdd", b"harddisk.hdd")
    members = box_members(box)
    theirs = write_box(tmp_path / "theirs.box", {**members, "vm.pvm/config.pvs": filled}.items())
    assert verify_codes(theirs) & {"parallels-pvs", "parallels-hdd", "parallels-layout", "firmware-mismatch"} == set()


def test_a_split_disk_and_padding_1_are_warnings_as_parallels_desktop_runs_them(tmp_path: Path) -> None:
    """qemu's docs/interop/prl-xml.rst: Parallels Desktop may write Padding 1 and split images; boxpack does not
    convert them, but a box that holds them is what Parallels Desktop runs."""
    import json

    raw = make_disk.make(tmp_path / "d.img", size=64 * MIB, data=2 * MIB)
    box, _ = _pack(raw, tmp_path, "--vm-name", "vm")
    members = box_members(box)
    descriptor = "vm.pvm/harddisk.hdd/DiskDescriptor.xml"
    xml = members[descriptor]
    storage = xml[xml.index(b"<Storage>"):xml.index(b"</Storage>") + len(b"</Storage>")]
    for name, changed in (("split.box", xml.replace(storage, storage + storage)),
                          ("padding.box", xml.replace(b"<Padding>0</Padding>", b"<Padding>1</Padding>"))):
        out = run_boxpack("verify", write_box(tmp_path / name, {**members, descriptor: changed}.items()), "--json",
                          check=False)
        found = [(f["severity"], f["message"]) for f in json.loads(out.stdout)["findings"] if f["code"] == "parallels-hdd"]
        assert [s for s, _ in found] == ["warning"], (name, found, out.stderr)
        assert out.returncode == 0, out.stderr


def test_a_split_disk_directory_is_read_as_one_disk(tmp_path: Path) -> None:
    """A split disk's pieces, each an expanding image of its own storage's sectors (made here by qemu-img from
    the raw disk's halves), read as dissect.hypervisor's HDD reads them: the box holds the whole disk."""
    raw = make_disk.make(tmp_path / "d.img", size=64 * MIB, data=8 * MIB)
    box, d = _pack(raw, tmp_path, "--vm-name", "vm")
    hdd = tmp_path / "split.hdd"
    hdd.mkdir()
    xml = (d / "vm.pvm" / "harddisk.hdd" / "DiskDescriptor.xml").read_bytes()
    storage = xml[xml.index(b"<Storage>"):xml.index(b"</Storage>") + len(b"</Storage>")]
    cut = 40 * MIB - 512 * 7  # a boundary inside a cluster, at a sector as prl-xml.rst allows
    data = raw.read_bytes()
    pieces = []
    for i, (start, end) in enumerate(((0, cut), (cut, len(data)))):
        (tmp_path / f"p{i}.raw").write_bytes(data[start:end])
        name = f"split.hdd.{i}.{{5fbaabe3-6958-40ff-92a7-860e329aab41}}.hds"
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "parallels", tmp_path / f"p{i}.raw", hdd / name], check=True)
        pieces.append(storage.replace(b"<Start>0</Start>", b"<Start>%d</Start>" % (start // 512))
                      .replace(b"<End>%d</End>" % (len(data) // 512), b"<End>%d</End>" % (end // 512))
                      .replace(b"harddisk.hdd.0.", f"split.hdd.{i}.".encode()))
    (hdd / "DiskDescriptor.xml").write_bytes(xml.replace(storage, b"".join(pieces)))
    assert HDD(hdd).open().read(len(data)) == data  # dissect.hypervisor reads the split disk as the raw one
    run_boxpack(hdd, "--provider", "libvirt", "-o", tmp_path / "l.box")
    qemu_compare(extract(tmp_path / "l.box", tmp_path / "l") / "box.img", "qcow2", raw)
    gap = xml.replace(storage, b"".join(pieces).replace(b"<Start>%d</Start>" % (cut // 512), b"<Start>%d</Start>" % (cut // 512 + 8)))
    (hdd / "DiskDescriptor.xml").write_bytes(gap)
    proc = run_boxpack(hdd, "--provider", "libvirt", "-o", tmp_path / "g.box", check=False)
    assert proc.returncode == 1 and b"not sectors 0 to Disk_size" in proc.stderr, proc.stderr


def test_parallels_boxes_and_disks_convert_to_the_other_providers(tmp_path: Path) -> None:
    raw = make_disk.make(tmp_path / "d.img", size=256 * MIB, data=8 * MIB)
    box, d = _pack(raw, tmp_path)
    run_boxpack(box, "--provider", "libvirt", "--provider", "virtualbox", "-o", f"{tmp_path}/out/")
    qemu_compare(extract(tmp_path / "out" / "p-libvirt.box", tmp_path / "l") / "box.img", "qcow2", raw)
    [vm] = d.glob("*.pvm")
    for source in (vm / "harddisk.hdd", vm / HDS):  # a Parallels disk directory, and its image alone
        out = tmp_path / f"{source.name}.box"
        run_boxpack(source, "--provider", "libvirt", "-o", out)
        qemu_compare(extract(out, tmp_path / f"y-{source.name}") / "box.img", "qcow2", raw)


def test_a_parallels_box_with_snapshots_is_refused(tmp_path: Path) -> None:
    """The top image of a disk with snapshots is an overlay of the others: read alone it would be a wrong disk."""
    raw = make_disk.make(tmp_path / "d.img", size=64 * MIB, data=2 * MIB)
    box, _ = _pack(raw, tmp_path, "--vm-name", "vm")
    members = box_members(box)
    descriptor = "vm.pvm/harddisk.hdd/DiskDescriptor.xml"
    parent = b"{00000000-0000-0000-0000-000000000000}</ParentGUID>"
    members[descriptor] = members[descriptor].replace(parent, b"{11111111-1111-1111-1111-111111111111}</ParentGUID>")
    proc = run_boxpack(write_box(tmp_path / "s.box", members.items()), "--provider", "libvirt", "-o", tmp_path / "o.box", check=False)
    assert proc.returncode == 1 and "snapshots" in proc.stderr.decode() and proc.stderr.decode().count("\n") == 1
    assert not (tmp_path / "o.box").exists()


def test_qemu_made_parallels_images_are_sources(tmp_path: Path) -> None:
    raw = make_disk.make(tmp_path / "d.img", size=64 * MIB, data=4 * MIB)
    image = tmp_path / "q.hds"
    subprocess.run(["qemu-img", "convert", "-O", "parallels", str(raw), str(image)], check=True)
    out = tmp_path / "q.box"
    run_boxpack(image, "--provider", "vmware_desktop", "-o", out)
    [vmdk] = extract(out, tmp_path / "v").glob("*.vmdk")
    qemu_compare(vmdk, "vmdk", raw)
    report = json.loads(run_boxpack("inspect", image, "--json").stdout)
    assert report["disks"][0]["format"] == "Parallels expanding (WithouFreSpacExt)"


def test_boxpack_test_boots_the_hds_itself() -> None:
    vm = boottest.provider_class("parallels").test_vm({})
    cmd = boottest.qemu_command(Path("/w/disk.parallels"), "amd64", vm, None, "tcg", 2222, Path("/w"), boottest.TestOptions())
    drive = cmd[cmd.index("-drive") + 1]
    assert drive.startswith("file=/w/disk.parallels,format=parallels,") and "ide-hd,drive=disk0,bus=ahci0.0" in cmd
    assert "virtio-net-pci,netdev=net0" in cmd
