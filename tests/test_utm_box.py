"""UTM boxes: config.plist as UTM's decoder reads it, the layout vagrant_utm imports, the qcow2 qemu-img reads,
and the VM boxpack test makes of config.plist as UTM would."""

from __future__ import annotations

import json
import plistlib
from pathlib import Path

import disks
import pytest
from conftest import MIB, box_members, extract, make_disk, qemu_check, qemu_compare, run_boxpack, verify_codes, write_box

from boxpack.descriptors import utm_plist
from boxpack.inspect import boottest

CONFIG = "box.utm/config.plist"


def _pack(raw: Path, tmp: Path, *args: str, name: str = "u.box") -> tuple[Path, Path]:
    box = tmp / name
    run_boxpack(raw, "--provider", "utm", "-o", box, *args)
    return box, extract(box, tmp / f"x-{name}")


def _config(d: Path) -> dict:
    return plistlib.loads((d / CONFIG).read_bytes())


@pytest.mark.first_case_quick
@pytest.mark.parametrize("case", disks.CASES)
def test_the_drive_is_the_disk_for_qemu_img(tmp_path: Path, case: str) -> None:
    raw = disks.CASES[case](tmp_path / "src.img")
    _, d = _pack(raw, tmp_path)
    [drive] = _config(d)["Drive"]
    image = d / "box.utm" / "Data" / drive["ImageName"]
    assert drive["ImageName"] == f"{drive['Identifier']}.qcow2"  # as UTM names a new drive's image
    qemu_check(image, "qcow2")
    qemu_compare(image, "qcow2", raw)


@pytest.mark.parametrize("layout,arch,machine,uefi", [("bios", None, ("x86_64", "q35"), False),
                                                      ("efi", None, ("x86_64", "q35"), True),
                                                      ("bios", "arm64", ("aarch64", "virt"), True)])
def test_config_plist_holds_what_utm_decodes(tmp_path: Path, layout: str, arch: str | None, machine: tuple, uefi: bool) -> None:
    raw = make_disk.make(tmp_path / "d.img", layout=layout, size=64 * MIB, data=2 * MIB)
    box, d = _pack(raw, tmp_path, "--cpus", "3", "--memory", "1536", "--vm-name", "debian", *(["--architecture", arch] if arch else []))
    config = _config(d)
    assert utm_plist.problems(config) == []
    assert (config["Backend"], config["ConfigurationVersion"]) == ("QEMU", 4)
    assert (config["System"]["Architecture"], config["System"]["Target"]) == machine
    assert (config["System"]["CPUCount"], config["System"]["MemorySize"], config["QEMU"]["UEFIBoot"]) == (3, 1536, uefi)
    assert config["Information"]["Name"] == "debian"
    assert [n["Mode"] for n in config["Network"]] == ["Shared", "Emulated"]  # vagrant_utm's two adapters
    assert len({n["MacAddress"] for n in config["Network"]}) == 2
    assert sorted(p.name for p in (d / "box.utm").iterdir()) == ["Data", "config.plist"]  # UTM makes efi_vars.fd itself
    assert run_boxpack("verify", box, check=False).returncode == 0


def test_same_disk_same_box_other_disk_other_vm(tmp_path: Path) -> None:
    raw = make_disk.make(tmp_path / "d.img", size=64 * MIB, data=4 * MIB)
    one, a = _pack(raw, tmp_path, name="1.box")
    two, _ = _pack(raw, tmp_path, "--threads", "1", name="2.box")
    assert one.read_bytes() == two.read_bytes()
    other = make_disk.make(tmp_path / "o.img", size=64 * MIB, data=5 * MIB)
    _, b = _pack(other, tmp_path, name="3.box")
    assert _config(a)["Information"]["UUID"] != _config(b)["Information"]["UUID"]


def test_verify_catches_what_utm_and_vagrant_utm_would_refuse(tmp_path: Path) -> None:
    raw = make_disk.make(tmp_path / "d.img", layout="efi", size=64 * MIB, data=2 * MIB)
    box, _ = _pack(raw, tmp_path)
    members = box_members(box)
    config = plistlib.loads(members[CONFIG])

    def codes(name: str, change) -> set[str]:
        changed = plistlib.loads(members[CONFIG])
        change(changed)
        return verify_codes(write_box(tmp_path / name, {**members, CONFIG: plistlib.dumps(changed)}.items()))

    assert "utm-plist" in codes("a.box", lambda c: c["Information"].pop("UUID"))
    assert "utm-plist" in codes("b.box", lambda c: c["System"].update(CPUCount="2"))
    assert "utm-plist" in codes("c.box", lambda c: c.update(Backend="qemu"))  # UTMBackend's raw value is "QEMU"
    assert "utm-plist" in codes("d.box", lambda c: c.update(ConfigurationVersion=5))
    assert "utm-network" in codes("e.box", lambda c: c["Network"].reverse())
    assert "utm-drive" in codes("f.box", lambda c: c["Drive"][0].update(ImageName="other.qcow2"))
    assert "utm-firmware" in codes("g.box", lambda c: (c["System"].update(Architecture="aarch64", Target="virt"),
                                                       c["QEMU"].update(UEFIBoot=False)))
    assert "utm-plist" not in codes("h.box", lambda c: c["QEMU"].pop("TSO"))  # decodeIfPresent: optional
    binary = {**members, CONFIG: plistlib.dumps(config, fmt=plistlib.FMT_BINARY)}  # PropertyListDecoder reads both
    assert verify_codes(write_box(tmp_path / "i.box", binary.items())) == set()
    assert "utm-layout" in verify_codes(write_box(tmp_path / "j.box", [(k, v) for k, v in members.items() if k != CONFIG]))


def _findings(box: Path) -> dict[str, list[tuple[str, str]]]:
    import json

    found: dict[str, list[tuple[str, str]]] = {}
    for f in json.loads(run_boxpack("verify", box, "--json", check=False).stdout)["findings"]:
        found.setdefault(f["code"], []).append((f["severity"], f["message"]))
    return found


def test_what_utm_accepts_is_no_error_and_what_stops_vagrant_utm_is(tmp_path: Path) -> None:
    """Issue 43's false alarms and misses, each against the UTM or vagrant_utm source it comes from."""
    raw = make_disk.make(tmp_path / "d.img", layout="efi", size=64 * MIB, data=2 * MIB)
    box, _ = _pack(raw, tmp_path)
    members = box_members(box)
    config = plistlib.loads(members[CONFIG])
    [image] = [k for k in members if k.startswith("box.utm/Data/")]

    def findings(name: str, change=None, files: dict | None = None) -> dict:
        changed = plistlib.loads(members[CONFIG])
        if change:
            change(changed)
        return _findings(write_box(tmp_path / name, {**members, **(files or {}), CONFIG: plistlib.dumps(changed)}.items()))

    # A legacy file (no Backend, version 3, one network as UTM 3 wrote it): migrated on load, not refused for
    # missing version-4 keys; what stops vagrant_utm is its single network.
    legacy = findings("legacy.box", lambda c: (c.pop("Backend"), c.update(ConfigurationVersion=3), c.pop("Network"),
                                               c.update(Networking={"NetworkEnabled": True, "NetworkMode": "shared"})))
    assert "utm-plist" not in legacy and "legacy configuration" in legacy["utm-network"][0][1]
    # An Apple-backend VM has no emulated network, so no SSH forward: an error, not an info.
    assert "no emulated network" in findings("apple.box", lambda c: c.update(Backend="Apple"))["utm-network"][0][1]
    # Swift's UUID takes the hyphenated form only.
    braces = findings("uuid.box", lambda c: c["Information"].update(UUID="{" + config["Information"]["UUID"] + "}"))
    assert any("as Swift reads one" in m for _, m in braces["utm-plist"])
    # A raw disk runs (QEMU probes it): a warning naming what needs qcow2.
    disk = extract(box, tmp_path / "x") / image
    raw_image = tmp_path / "raw.img"
    import subprocess

    subprocess.run(["qemu-img", "convert", "-O", "raw", str(disk), str(raw_image)], check=True)
    raw_box = findings("raw.box", files={image: raw_image.read_bytes()})
    assert [s for s, m in raw_box["utm-drive"] if "is raw" in m] == ["warning"]
    # vagrant snapshot looks for exactly one Data/<UUID>.qcow2.
    renamed = {k if k != image else "box.utm/Data/disk-0.qcow2": v for k, v in members.items()}
    snap = _findings(write_box(tmp_path / "snap.box", {**renamed, CONFIG: plistlib.dumps(
        {**config, "Drive": [{**config["Drive"][0], "ImageName": "disk-0.qcow2"}]})}.items()))
    assert [s for s, m in snap["utm-drive"] if "exactly one <UUID>.qcow2" in m] == ["warning"]
    # Every enumerated key against UTM's own raw values; Target is any string to UTM's decoder (AnyQEMUConstant).
    for key, change in {"Drive[0]/Interface": lambda c: c["Drive"][0].update(Interface="virtio"),
                        "System/Architecture": lambda c: c["System"].update(Architecture="x86-64"),
                        "Input/UsbBusSupport": lambda c: c["Input"].update(UsbBusSupport="3"),
                        "Display[0]/UpscalingFilter": lambda c: c["Display"][0].update(UpscalingFilter="nearest"),
                        "Sharing/DirectoryShareMode": lambda c: c["Sharing"].update(DirectoryShareMode="none"),
                        "Network[1]/Mode": lambda c: c["Network"][1].update(Mode="emulated")}.items():
        assert any(m.startswith(f"{CONFIG}: {key} is ") for _, m in findings("enum.box", change)["utm-plist"]), key
    assert "utm-plist" not in findings("target.box", lambda c: c["System"].update(Target="pc-q35-99.0"))
    # The other decode failures, and a Disk drive without its image.
    for what, change in {"Information/Icon is missing": lambda c: (c["Information"].update(IconCustom=True),
                                                                     c["Information"].pop("Icon")),
                         "AdditionalArguments[0] is not a string": lambda c: c["QEMU"].update(AdditionalArguments=[1]),
                         "PortForward[0] needs": lambda c: c["Network"][1].update(PortForward=[{"Protocol": "TCP"}]),
                         "HostNetUuid": lambda c: c["Network"][0].update(HostNetUuid="not-a-uuid")}.items():
        assert any(what in m for _, m in findings("decode.box", change)["utm-plist"]), what
    assert "no ImageName" in findings("noimage.box", lambda c: c["Drive"][0].pop("ImageName"))["utm-drive"][0][1]
    # A UEFI-only disk (this one) in an x86_64 VM that boots with BIOS does not boot.
    assert "firmware-mismatch" in findings("bios.box", lambda c: c["QEMU"].update(UEFIBoot=False))
    assert "firmware efi (box.utm/config.plist)" in run_boxpack("inspect", box).stdout.decode()
    assert _findings(box) == {}  # boxpack's own box stays clean


def test_utm_boxes_convert_to_the_other_providers(tmp_path: Path) -> None:
    raw = make_disk.make(tmp_path / "d.img", size=256 * MIB, data=8 * MIB)
    box, _ = _pack(raw, tmp_path)
    run_boxpack(box, "--provider", "libvirt", "--provider", "parallels", "-o", f"{tmp_path}/out/")
    qemu_compare(extract(tmp_path / "out" / "u-libvirt.box", tmp_path / "l") / "box.img", "qcow2", raw)


def test_a_legacy_configuration_armbian_writes_is_migrated_not_refused(tmp_path: Path) -> None:
    """Armbian's build still writes UTM 3.x configurations (fixtures/utm-configs/SOURCES.md), which UTM 4
    migrates on load: verify reports only what stops vagrant_utm, the one network such a file has."""
    plist = (Path(__file__).parent.parent / "fixtures" / "utm-configs" / "armbian-utm3-x86_64.plist").read_bytes()
    raw = make_disk.make(tmp_path / "d.img", layout="efi", size=64 * MIB, data=2 * MIB)
    box, _ = _pack(raw, tmp_path)
    members = box_members(box)
    [image] = [v for k, v in members.items() if k.startswith("box.utm/Data/")]
    disk = plistlib.loads(plist)["Drives"][0]["ImagePath"]
    armbian = write_box(tmp_path / "armbian.box", [("metadata.json", members["metadata.json"]), (CONFIG, plist),
                                                   (f"box.utm/Images/{disk}", image)])
    found = _findings(armbian)
    assert set(found) == {"utm-network"} and "a legacy configuration (ConfigurationVersion 2" in found["utm-network"][0][1]
    assert [d["member"] for d in json.loads(run_boxpack("inspect", armbian, "--json").stdout)["disks"]] == [
        f"box.utm/Images/{disk}"]


def test_flash_and_firmware_drives_are_not_the_disk(tmp_path: Path) -> None:
    """QEMU's q800 keeps its PRAM on an MTD drive (a Disk image of 512 bytes in UTM's config), and a BIOS drive
    is firmware: neither is listed as a disk, nor converted in place of the system disk."""
    raw = make_disk.make(tmp_path / "d.img", size=64 * MIB, data=2 * MIB)
    box, _ = _pack(raw, tmp_path)
    members = box_members(box)
    config = plistlib.loads(members[CONFIG])
    system = config["Drive"][0]
    config["Drive"] = [{**system, "Identifier": "A1B2C3D4-0000-4000-8000-000000000001", "ImageName": "pram.img",
                        "Interface": "MTD"},
                       {**system, "Identifier": "A1B2C3D4-0000-4000-8000-000000000002", "ImageName": "bios.img",
                        "ImageType": "BIOS", "Interface": "None"}, system]
    extra = {"box.utm/Data/pram.img": bytes(512), "box.utm/Data/bios.img": b"\x55" * 65536}
    disk = f"box.utm/Data/{system['ImageName']}"
    ordered = [(k, v) for k, v in members.items() if k != disk] + list(extra.items()) + [(disk, members[disk])]
    ordered = [(k, plistlib.dumps(config) if k == CONFIG else v) for k, v in ordered]
    flashed = write_box(tmp_path / "flashed.box", ordered)
    report = run_boxpack("inspect", flashed, "--json")
    assert [d["member"] for d in json.loads(report.stdout)["disks"]] == [disk]
    run_boxpack(flashed, "--provider", "libvirt", "-o", tmp_path / "l.box")
    qemu_compare(extract(tmp_path / "l.box", tmp_path / "l") / "box.img", "qcow2", raw)
    # The config after the images: the images are listed by name until it is read, then by what it names.
    late = write_box(tmp_path / "late.box", [x for x in ordered if x[0] != CONFIG] + [(CONFIG, plistlib.dumps(config))])
    assert [d["member"] for d in json.loads(run_boxpack("inspect", late, "--json").stdout)["disks"]] == [disk]


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_boxpack_test_boots_the_vm_config_plist_describes(tmp_path: Path, arch: str) -> None:
    raw = make_disk.make(tmp_path / "d.img", layout="efi", size=64 * MIB, data=2 * MIB)
    box, d = _pack(raw, tmp_path, "--architecture", arch)
    vm = boottest.provider_class("utm").test_vm({CONFIG: (d / CONFIG).read_bytes()})
    assert (vm.architecture, vm.firmware, vm.pflash, vm.image_format, vm.bus) == (arch, "efi", True, "qcow2", "virtio")
    cmd = " ".join(boottest.qemu_command(Path("/w/disk.qcow2"), arch, vm, ("/c.fd", "/w/efi_vars.fd"), "tcg", 2222,
                                         Path("/w"), boottest.TestOptions()))
    machine = "-M q35,vmport=off,hpet=off" if arch == "amd64" else "-M virt,virtualization=on -cpu cortex-a72"
    assert machine in cmd and "if=pflash,format=raw,unit=0,file=/c.fd,readonly=on" in cmd
    assert "-netdev user,id=net0,net=192.168.64.0/24 -device virtio-net-pci,netdev=net0" in cmd  # Shared: vmnet's LAN
    assert "-netdev user,id=net1,hostfwd=tcp:127.0.0.1:2222-:22 -device virtio-net-pci,netdev=net1" in cmd  # Emulated VLAN
    assert "file=/w/disk.qcow2,format=qcow2" in cmd and "virtio-blk-pci,drive=disk0" in cmd
