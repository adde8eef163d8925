"""The UTM box (UTM on macOS, QEMU backend), for the vagrant_utm plugin: box.utm/ with config.plist and Data/.

vagrant_utm (naveenrajm7/vagrant_utm, lib/vagrant_utm/action/import.rb)
imports `box.utm` from the box directory into UTM. Its box guide
(docs/boxes/creating_utm_box.md) requires the VM's first network interface
to be Shared Network and its second an Emulated VLAN: Vagrant reaches SSH
through a port forward on the second (action/forward_ports.rb forwards only
on emulated interfaces). config.plist is UTM's QEMU configuration
(descriptors/utm_plist.py); the disk is Data/<identifier>.qcow2, the
qcow2 the libvirt box carries.

No Data/efi_vars.fd is shipped: UTM copies its own edk2 variable template
there when a UEFI VM starts without one (Services/UTMQemuVirtualMachine.swift,
qemuEnsureEfiVarsAvailable), so boxpack needs no firmware file of its own.
UEFI for UEFI-only and arm64 disks (UTM's default for `virt` and `q35`);
machine `virt` for aarch64 and `q35` for x86-64 guests, UTM's defaults; a disk
without an architecture is packed as x86-64. Identities (the VM's UUID, the
drive's identifier, the MACs) come from the disk's content.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from ..descriptors import utm_plist
from ..errors import BadInput
from ..formats.qcow2 import COMPAT_VERSIONS, Qcow2Layout
from ..member import Member
from ..metadata import metadata_json
from ..report import Report
from .base import HARDWARE, Provider, TestVm, image_chunks, vm_name

BUNDLE = "box.utm"
CONFIG = f"{BUNDLE}/{utm_plist.NAME}"
DATA = f"{BUNDLE}/Data/"
# Vagrant's architecture -> UTM's System/Architecture, its default Target, its display device.
MACHINES = {"amd64": ("x86_64", "q35", "virtio-vga"), "arm64": ("aarch64", "virt", "virtio-gpu-pci")}
ARCHITECTURES = {arch: vagrant for vagrant, (arch, _, _) in MACHINES.items()}
# UTMQemuConfiguration+Arguments.swift, driveArgument(for:): the QEMU device each Interface becomes.
BUSES = {"VirtIO": "virtio", "NVMe": "nvme", "IDE": "ide", "SCSI": "scsi"}
SHARED, EMULATED = "Shared", "Emulated"


def _uuid(seed: bytes, what: bytes) -> str:
    return str(uuid.UUID(bytes=hashlib.sha256(what + seed).digest()[:16], version=4)).upper()


def _mac(seed: bytes, what: bytes) -> str:
    raw = bytearray(hashlib.sha256(what + seed).digest()[:6])
    raw[0] = (raw[0] & 0xFC) | 0x02  # locally administered, unicast
    return ":".join(f"{b:02X}" for b in raw)


class Utm(Provider):
    NAME = "utm"
    TEST_DEVICES = ("virtio", "virtio-net-pci")  # config.plist: Drive Interface VirtIO, Network Hardware virtio-net-pci
    DISK_FORMAT = "qcow2"
    OPTIONS = tuple(o for o in HARDWARE if o.name != "os_type")  # UTM keeps no guest OS type
    MEMBERS = (f"{BUNDLE}/*",)
    TEXTS = (CONFIG,)
    TEST_TEXTS = (CONFIG,)
    MAX_DISKS = 1
    DISK_LIMIT = "boxpack writes one drive per UTM VM"

    def members(self) -> list[Member]:
        job = self.job
        (boot,) = job.disks  # MAX_DISKS
        seed = job.disk_id
        arch, target, display = MACHINES[job.architecture or "amd64"]
        ident = _uuid(seed, b"utm drive")
        image = f"{ident}.qcow2"
        layout = Qcow2Layout(boot.source.size, boot.clusters, COMPAT_VERSIONS["1.1"])
        config = utm_plist.write(
            vm_name(job), _uuid(seed, b"utm vm"), arch, target, job.settings["cpus"], job.settings["memory"],
            job.firmware == "efi" or job.architecture == "arm64", display, [(image, ident)],
            [(SHARED, "virtio-net-pci", _mac(seed, b"utm nic 0")), (EMULATED, "virtio-net-pci", _mac(seed, b"utm nic 1"))])
        block = ("  config.vm.provider :utm do |utm|\n"
                 "    # UTM reads the VM's CPUs, memory, firmware, disk and networks from box.utm/config.plist.\n"
                 "  end\n")
        return [
            Member.from_bytes("metadata.json", metadata_json(self.metadata())),
            Member.from_bytes("Vagrantfile", self.vagrantfile(block)),
            Member.from_bytes(CONFIG, config),
            Member(DATA + image, layout.image_size, image_chunks(layout, boot)),
            *self.include_members(),
        ]

    @classmethod
    def test_vm(cls, texts: dict[str, bytes]) -> TestVm:
        """The VM UTM would run from config.plist, translated as UTMQemuConfiguration+Arguments.swift does:
        machine Target with UTM's properties, CPU `default` (cortex-a72 for aarch64 under TCG), UEFI from
        pflash, the first drive's Interface, one NIC per network with SSH on the first Emulated VLAN."""
        if CONFIG not in texts:
            raise BadInput(f"the box has no {CONFIG}, which UTM runs the VM from")
        try:
            config = utm_plist.read(texts[CONFIG])
        except BadInput as e:
            raise BadInput(f"{CONFIG}: {e}") from None
        if utm_plist.legacy(config):
            raise BadInput(f"{CONFIG}: a legacy configuration, which UTM migrates on load; boxpack test runs version 4 "
                           "QEMU configurations")
        wrong = utm_plist.problems(config)
        if wrong:
            raise BadInput(f"{CONFIG}: UTM would not load it: {wrong[0]}")
        system, qemu = config["System"], config["QEMU"]
        architecture = ARCHITECTURES.get(system["Architecture"])
        if architecture is None:
            raise BadInput(f"{CONFIG}: System/Architecture {system['Architecture']!r}: boxpack test boots aarch64 and x86_64")
        disks = [d for d in config["Drive"] if d["ImageType"] == "Disk"]
        if not disks or disks[0]["Interface"] not in BUSES:
            raise BadInput(f"{CONFIG}: the first disk drive's interface is not one of {', '.join(BUSES)}")
        networks = config["Network"]
        forward = next((i for i, n in enumerate(networks) if n["Mode"] == EMULATED), None)
        if forward is None:
            raise BadInput(f"{CONFIG}: no Emulated VLAN network, through which vagrant_utm forwards SSH")
        # Shared, Host and Bridged are vmnet networks on macOS, each a LAN of its own (vmnet-shared's default is
        # 192.168.64.0/24); Emulated is QEMU's user network, 10.0.2.0/24 unless VlanGuestAddress says otherwise.
        # Two NICs on one subnet would let the guest answer SSH through the wrong one.
        subnets = tuple(n.get("VlanGuestAddress") if n["Mode"] == EMULATED else f"192.168.{64 + i}.0/24"
                        for i, n in enumerate(networks))
        properties = ["vmport=off", "hpet=off"] if architecture == "amd64" else ["virtualization=on"]
        cpu = system["CPU"] if system["CPU"] != "default" else ("cortex-a72" if architecture == "arm64" else None)
        return TestVm(BUSES[disks[0]["Interface"]], tuple(n["Hardware"] for n in networks), subnets, forward,
                      ",".join([system["Target"], *properties]), cpu,
                      pflash=True, image_format="qcow2", architecture=architecture,
                      firmware="efi" if qemu["UEFIBoot"] else "bios")

    @classmethod
    def check_box(cls, report: Report, texts: dict[str, bytes]) -> None:
        """import.rb's layout (box.utm/config.plist), the keys UTM decodes, vagrant_utm's two networks, and
        the drives against the box's files."""
        names = {m["name"].removeprefix("./") for m in report.members}
        if CONFIG not in texts:
            report.add("utm-layout", "error", f"{CONFIG} is missing; vagrant_utm imports box.utm and UTM runs it from it")
            return
        try:
            config: dict[str, Any] = utm_plist.read(texts[CONFIG])
        except BadInput as e:
            report.add("utm-plist", "error", f"{CONFIG}: {e}")
            return
        if config.get("Backend") == "Apple":  # vagrant_utm reads port forwards of "emulated" interfaces only
            report.add("utm-network", "error", f"{CONFIG}: an Apple Virtualization VM, which has no emulated network; "
                       "vagrant_utm forwards SSH only through one (driver/version_4_5.rb, read_forwarded_ports), so "
                       "`vagrant up` never reaches SSH")
            return
        if utm_plist.legacy(config):
            report.add("utm-network", "error", f"{CONFIG}: a legacy configuration (ConfigurationVersion "
                       f"{config.get('ConfigurationVersion')!r}, no Backend), which UTM migrates on load with its one "
                       "network; vagrant_utm needs two, Shared first and an Emulated VLAN second, which it forwards SSH "
                       "through (docs/boxes/creating_utm_box.md)")
            return
        for problem in utm_plist.problems(config)[:5]:
            report.add("utm-plist", "error", f"{CONFIG}: {problem}; UTM would not load the VM")
        networks: list[Any] = config["Network"] if isinstance(config.get("Network"), list) else []
        modes = [n.get("Mode") for n in networks if isinstance(n, dict)]
        if modes[:2] != [SHARED, EMULATED]:
            report.add("utm-network", "error", f"{CONFIG}: networks are {modes}; vagrant_utm needs Shared first and an "
                       "Emulated VLAN second, which it forwards SSH through (docs/boxes/creating_utm_box.md)")
        drives: list[Any] = config["Drive"] if isinstance(config.get("Drive"), list) else []
        disks = [d for d in drives if isinstance(d, dict) and d.get("ImageType") == "Disk"]
        if not disks:
            report.add("utm-plist", "error", f"{CONFIG}: no Disk drive")
        images = {str(d.get("member")): d for d in report.disks}
        for drive in disks:
            image = drive.get("ImageName")
            if not isinstance(image, str):  # UTMQemuConfigurationDrive.swift: no ImageName is an external drive
                report.add("utm-drive", "error", f"{CONFIG}: disk drive {drive.get('Identifier')} has no ImageName: UTM "
                           "takes it for an external drive, and the VM has no disk from the box")
                continue
            member = DATA + image
            if member not in names:
                report.add("utm-drive", "error", f"{CONFIG}: drive {drive.get('Identifier')} is {image!r}, not in {DATA}")
            elif member in images and images[member].get("format") == "raw":  # UTM passes QEMU no format=: it probes
                report.add("utm-drive", "warning", f"{member} is raw: UTM runs it (QEMU probes the format, "
                           "UTMQemuConfiguration+Arguments.swift), but `vagrant snapshot` runs qemu-img snapshot, "
                           "which needs qcow2")
            elif member in images and not str(images[member].get("format", "")).startswith("qcow2"):
                report.add("utm-drive", "error", f"{member} is {images[member].get('format')}, not qcow2")
        data = [n for n in names if n.startswith(DATA) and "/" not in n[len(DATA):]]
        if disks and len([n for n in data if utm_plist.UUID_FORM.fullmatch(n[len(DATA):].removesuffix(".qcow2"))
                          and n.endswith(".qcow2")]) != 1:
            report.add("utm-drive", "warning", f"{DATA} does not hold exactly one <UUID>.qcow2: `vagrant snapshot` "
                       "with vagrant_utm looks for exactly one (driver/version_4_5.rb, get_vm_file) and fails")
        system, qemu = config.get("System"), config.get("QEMU")
        if isinstance(qemu, dict) and isinstance(qemu.get("UEFIBoot"), bool):
            report.vm_firmware = {"firmware": "efi" if qemu["UEFIBoot"] else "bios", "from": CONFIG}
        if isinstance(system, dict) and isinstance(qemu, dict) and system.get("Architecture") == "aarch64" and not qemu.get("UEFIBoot"):
            report.add("utm-firmware", "error", f"{CONFIG}: an aarch64 VM without UEFIBoot has no firmware to boot its disk")
