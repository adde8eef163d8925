"""The OVF checker mirrors VirtualBox's reader: each rule, broken once, is reported."""

from __future__ import annotations

import pytest

from boxpack.descriptors import ovf

DISK = "box-disk001.vmdk"


def good() -> str:
    return ovf.build(ovf.Hardware("vm"), [ovf.DiskFile(DISK, 100, 1 << 30, "01234567-89ab-cdef-0123-456789abcdef")]).decode()


def test_boxpack_ovf_passes() -> None:
    assert not ovf.check(good().encode(), {DISK: 100})


@pytest.mark.parametrize(
    "old, new, finding",
    [
        ('ovf:capacity="1073741824"', 'ovf:capacity="1 GB"', "whole number of bytes"),
        ('ovf:diskId="vmdisk1" ', "", "needs ovf:diskId"),
        ("<rasd:AllocationUnits>MegaBytes", "<rasd:AllocationUnits>MiB", "AllocationUnits"),
        ("<rasd:Parent>3</rasd:Parent>", "<rasd:Parent>9</rasd:Parent>", "not a controller"),
        ("<rasd:HostResource>/disk/vmdisk1", "<rasd:HostResource>/disk/vmdisk2", "names no Disk"),
        ("<rasd:ResourceSubType>AHCI", "<rasd:ResourceSubType>PIIX9", "subtype"),
        ("<rasd:Connection>NAT", "<rasd:Connection>Bridged", "not NAT"),
        ('<OperatingSystemSection ovf:id="101">', '<OperatingSystemSection ovf:id="linux">', "integer ovf:id"),
        (f'ovf:href="{DISK}"', 'ovf:href="other.vmdk"', "not in the box"),
        ("<rasd:InstanceID>3</rasd:InstanceID>", "", "no InstanceID"),
    ],
)
def test_each_rule(old: str, new: str, finding: str) -> None:
    text = good()
    assert old in text
    problems = [f.message for f in ovf.check(text.replace(old, new, 1).encode(), {DISK: 100})]
    assert any(finding in p for p in problems), problems


def test_vbox_machine_uuid_mismatch() -> None:
    machine = (
        '<vbox:Machine ovf:required="false"><StorageControllers><StorageController><AttachedDevice type="HardDisk">'
        '<Image uuid="{ffffffff-0000-0000-0000-000000000000}"/></AttachedDevice>'
        '<AttachedDevice type="DVD"><Image uuid="{eeeeeeee-0000-0000-0000-000000000000}"/></AttachedDevice>'
        "</StorageController></StorageControllers></vbox:Machine>"
    )
    text = good().replace("</VirtualSystem>", machine + "</VirtualSystem>")  # <Image> in the OVF namespace, as VirtualBox writes it
    assert any("does not describe" in f.message for f in ovf.check(text.encode(), {DISK: 100}))
    ok = text.replace("ffffffff-0000-0000-0000-000000000000", "01234567-89ab-cdef-0123-456789abcdef")
    assert not ovf.check(ok.encode(), {DISK: 100})  # the DVD's image is not exported: VirtualBox drops it


def test_not_xml() -> None:
    assert "not well-formed" in next(iter(ovf.check(b"<Envelope", None))).message


def test_disk_formats_as_virtualbox_takes_them() -> None:
    """VMDK, ISO and VHD URIs are known; any other URI is accepted when the file's extension is one VirtualBox reads."""
    text = good()
    for uri in ("http://www.vmware.com/interfaces/specifications/vmdk.html#flat", "http://www.ecma-international.org/publications/standards/Ecma-119.htm"):
        assert not ovf.check(text.replace(ovf.STREAM_OPTIMIZED, uri).encode(), {DISK: 100})
    unknown = text.replace(ovf.STREAM_OPTIMIZED, "http://example.org/raw").replace(DISK, "disk.bin")
    assert any("nor is the file's extension" in f.message for f in ovf.check(unknown.encode(), {"disk.bin": 100}))


def test_nat_is_a_warning_and_case_of_subtypes_does_not_matter() -> None:
    bridged = [f for f in ovf.check(good().replace("<rasd:Connection>NAT", "<rasd:Connection>Bridged").encode(), {DISK: 100})]
    assert [(f.code, f.severity) for f in bridged] == [("ovf-nat", "warning")]
    assert not ovf.check(good().replace("<rasd:Connection>NAT", "<rasd:Connection>nat").encode(), {DISK: 100})
    assert not ovf.check(good().replace("<rasd:ResourceSubType>AHCI", "<rasd:ResourceSubType>ahci").encode(), {DISK: 100})


def test_ovf_2_0_namespace_reads_like_1_0() -> None:
    """VirtualBox looks attributes up by local name (ovfreader.cpp), so an OVF 2.0 envelope checks the same."""
    v2 = good().replace("http://schemas.dmtf.org/ovf/envelope/1", "http://schemas.dmtf.org/ovf/envelope/2")
    assert not ovf.check(v2.encode(), {DISK: 100})
    assert ovf.facts(v2.encode())["capacity"] == 1 << 30 and ovf.facts(v2.encode())["files"] == [DISK]


def test_v1_box_is_old_not_broken(tmp_path) -> None:
    """No metadata.json but a box.ovf: Vagrant 2.3 adds it (box_collection.rb, v1_box?), so verify says it is old."""
    import json
    import tarfile

    from conftest import extract, make_disk, run_boxpack

    disk = make_disk.make(tmp_path / "d.img", size=64 * 1024 * 1024, data=1024 * 1024)
    run_boxpack(disk, "--provider", "virtualbox", "-o", tmp_path / "v2.box")
    d = extract(tmp_path / "v2.box", tmp_path / "x")
    (d / "metadata.json").unlink()
    with tarfile.open(tmp_path / "v1.box", "w:gz") as t:
        for p in sorted(d.iterdir()):
            t.add(p, p.name)
    report = json.loads(run_boxpack("verify", tmp_path / "v1.box", "--json", check=False).stdout)
    assert [(f["code"], f["severity"]) for f in report["findings"]] == [("box-v1", "info")]
    assert report["exit_code"] == 0


def test_capacity_units_as_virtualbox_reads_them() -> None:
    """ovfreader.cpp reads ovf:capacity as a number and never its units; the disk is sized from its image. So
    VMware's `capacity="1" capacityAllocationUnits="byte * 2^30"` is no error, and its size is what is compared."""
    gib = good().replace('ovf:capacity="1073741824"', 'ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^30"')
    findings = list(ovf.check(gib.encode(), {DISK: 100}))
    assert [(f.code, f.severity) for f in findings] == [("ovf-capacity-units", "info")]
    assert ovf.facts(gib.encode())["disks"] == [{"file": DISK, "capacity": 1 << 30}]
    odd = good().replace('ovf:capacity="1073741824"', 'ovf:capacity="1" ovf:capacityAllocationUnits="percent"')
    assert [(f.code, f.severity) for f in ovf.check(odd.encode(), {DISK: 100})] == [("ovf-capacity-units", "warning")]


def ovf_09() -> str:
    """The same appliance in OVF 0.9's spelling (VBoxManage export --legacy09): Section and Content elements
    typed with xsi:type, InstanceId, the 0.9 envelope namespace."""
    text = good().replace("http://schemas.dmtf.org/ovf/envelope/1", "http://www.vmware.com/schema/ovf/1/envelope")
    text = text.replace("<DiskSection>", '<Section xsi:type="ovf:DiskSection_Type">').replace("</DiskSection>", "</Section>")
    text = text.replace("<NetworkSection>", '<Section xsi:type="ovf:NetworkSection_Type">').replace("</NetworkSection>", "</Section>")
    text = text.replace("<VirtualHardwareSection>", '<Section xsi:type="ovf:VirtualHardwareSection_Type">').replace("</VirtualHardwareSection>", "</Section>")
    text = text.replace('<OperatingSystemSection ovf:id="101">', '<Section xsi:type="ovf:OperatingSystemSection_Type" ovf:id="101">').replace("</OperatingSystemSection>", "</Section>")
    text = text.replace("<VirtualSystem ", '<Content xsi:type="ovf:VirtualSystem_Type" ').replace("</VirtualSystem>", "</Content>")
    text = text.replace("InstanceID>", "InstanceId>").replace("<vssd:InstanceId>", "<vssd:InstanceID>").replace("</vssd:InstanceId>", "</vssd:InstanceID>")
    assert 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"' in text
    return text


def test_ovf_0_9_reads_like_1_0() -> None:
    text = ovf_09()
    assert "<VirtualSystem" not in text and "rasd:InstanceId" in text
    assert not ovf.check(text.encode(), {DISK: 100})
    facts = ovf.facts(text.encode())
    assert facts["disks"] == [{"file": DISK, "capacity": 1 << 30}] and facts["cpus"] == "2" and facts["controllers"] == ["AHCI"]
    assert ovf.disk_files(text.encode()) == [DISK]
    broken = text.replace('xsi:type="ovf:VirtualSystem_Type"', 'xsi:type="ovf:Other_Type"')
    assert any("exactly one VirtualSystem" in f.message for f in ovf.check(broken.encode(), {DISK: 100}))
