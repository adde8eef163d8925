"""The OVF checker mirrors VirtualBox's reader: each rule, broken once, is reported."""

from __future__ import annotations

import pytest

from boxpack import ovf

DISK = "box-disk001.vmdk"


def good() -> str:
    return ovf.build(ovf.Hardware("vm"), DISK, 100, 1 << 30, "01234567-89ab-cdef-0123-456789abcdef").decode()


def test_boxpack_ovf_passes() -> None:
    assert not ovf.check(good().encode(), {DISK: 100})


@pytest.mark.parametrize(
    "old, new, finding",
    [
        ('ovf:capacity="1073741824"', 'ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^30"', "ignores"),
        ('ovf:capacity="1073741824"', 'ovf:capacity="1 GB"', "whole number of bytes"),
        ('ovf:diskId="vmdisk1" ', "", "needs ovf:diskId"),
        ("vmdk.html#streamOptimized", "vmdk.html#flat", "not a VMDK format"),
        ("<rasd:AllocationUnits>MegaBytes", "<rasd:AllocationUnits>MiB", "AllocationUnits"),
        ("<rasd:Parent>3</rasd:Parent>", "<rasd:Parent>9</rasd:Parent>", "not a controller"),
        ("<rasd:HostResource>/disk/vmdisk1", "<rasd:HostResource>/disk/vmdisk2", "names no Disk"),
        ("<rasd:ResourceSubType>AHCI", "<rasd:ResourceSubType>PIIX9", "subtype"),
        ("<rasd:Connection>NAT", "<rasd:Connection>Bridged", "must be NAT"),
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
        '<vbox:Machine ovf:required="false"><StorageControllers><StorageController><AttachedDevice>'
        '<Image uuid="{ffffffff-0000-0000-0000-000000000000}"/></AttachedDevice></StorageController>'
        "</StorageControllers></vbox:Machine>"
    )
    text = good().replace("</VirtualSystem>", machine.replace("<Image", "<vbox:Image") + "</VirtualSystem>")
    assert any("does not describe" in f.message for f in ovf.check(text.encode(), {DISK: 100}))
    ok = text.replace("ffffffff-0000-0000-0000-000000000000", "01234567-89ab-cdef-0123-456789abcdef")
    assert not ovf.check(ok.encode(), {DISK: 100})


def test_not_xml() -> None:
    assert "not well-formed" in next(iter(ovf.check(b"<Envelope", None))).message
