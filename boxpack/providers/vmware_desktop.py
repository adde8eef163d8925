"""The vmware_desktop box (VMware Workstation and Fusion): <name>.vmx, a monolithicSparse VMDK, metadata.json.

vagrant-vmware-desktop (lib/vagrant-vmware-desktop/action/import.rb) copies
the whole box folder as the VM and opens metadata.json's `vmx_file` or the
first *.vmx in it. The disk is a hosted sparse VMDK (monolithicSparse):
VMware treats streamOptimized as a transport format that a VM cannot run from.

The .vmx follows what VMware itself writes for a new VM and what Packer's
VMware plugin generates: virtualHW.version 19 (Workstation 16.2 and Fusion
12.2, run by every later release) for x86-64, 20 for arm64 (Fusion 13, the
first to run arm64 guests on Apple Silicon); the disk on SATA (AHCI, which
Linux boots from without extra drivers, and which Fusion on Apple Silicon
takes, as Packer's examples for it do); an e1000e NIC, which Vagrant's
provider sets to NAT, with PCIe root ports for it; EFI firmware for UEFI-only
and arm64 disks; USB with an xHCI controller for the keyboard on arm64. No MAC
and no UUID are fixed: VMware generates them per VM.
"""

from __future__ import annotations

from typing import Any

from ..descriptors.vmx import disk_files, dumps, parse_vmx
from ..formats.vmdk import SparseLayout
from ..member import Member
from ..metadata import metadata_json
from ..report import Report
from .base import HARDWARE, Provider, image_chunks, vm_name

HARDWARE_VERSION = {"amd64": "19", "arm64": "20"}

# VirtualBox OS type (the shared --os-type) -> VMware guestOS for x86-64 and for arm64.
GUEST_OS = {
    "Debian_64": ("debian12-64", "arm-debian12-64"),
    "Ubuntu_64": ("ubuntu-64", "arm-ubuntu-64"),
    "RedHat_64": ("rhel9-64", "arm-rhel9-64"),
    "Oracle_64": ("oraclelinux9-64", "arm-other5xlinux-64"),
    "Fedora_64": ("fedora-64", "arm-fedora-64"),
    "FreeBSD_64": ("freebsd13-64", "arm-freebsd13-64"),
    "Other_64": ("other-64", "arm-other-64"),
    "Other": ("other", "arm-other-64"),
}
LINUX_64 = ("other5xlinux-64", "arm-other5xlinux-64")
LINUX_32 = ("otherlinux", "arm-other5xlinux-64")

PCIE_ROOT_PORTS = [
    (f"pciBridge{n}.{key}", value) for n in (4, 5, 6, 7)
    for key, value in (("present", "TRUE"), ("virtualDev", "pcieRootPort"), ("functions", "8"))
]


def guest_os(os_type: str, arm: bool) -> str:
    pair = GUEST_OS.get(os_type) or (LINUX_64 if os_type.endswith("_64") else LINUX_32)
    return pair[1] if arm else pair[0]


class VmwareDesktop(Provider):
    NAME = "vmware_desktop"
    TEST_DEVICES = ("sata", "e1000e")  # sata0 and ethernet0.virtualDev of the box's .vmx
    DISK_FORMAT = "vmdk monolithicSparse"
    OPTIONS = HARDWARE
    TEXTS = (".vmx",)

    def _arm(self) -> bool:
        return self.job.architecture == "arm64"

    MAX_DISKS = 30
    DISK_LIMIT = "one SATA controller has 30 ports (sata0:0 to sata0:29)"

    def vmx(self, disk_files: list[str]) -> bytes:
        s, arm = self.job.settings, self._arm()
        settings = [
            (".encoding", "UTF-8"),
            ("config.version", "8"),
            ("virtualHW.version", HARDWARE_VERSION["arm64" if arm else "amd64"]),
            ("displayName", vm_name(self.job)),
            ("guestOS", guest_os(s["os_type"], arm)),
        ]
        if arm or self.job.firmware == "efi":
            settings.append(("firmware", "efi"))
        settings += [
            ("numvcpus", str(s["cpus"])),
            ("memsize", str(s["memory"])),
            ("pciBridge0.present", "TRUE"),
            *PCIE_ROOT_PORTS,
            ("sata0.present", "TRUE"),
            *(pair for unit, f in enumerate(disk_files)
              for pair in ((f"sata0:{unit}.present", "TRUE"), (f"sata0:{unit}.fileName", f))),
            ("ethernet0.present", "TRUE"),
            ("ethernet0.virtualDev", "e1000e"),
            ("ethernet0.connectionType", "nat"),
            ("ethernet0.addressType", "generated"),
            ("usb.present", "TRUE"),
        ]
        if arm:
            settings.append(("usb_xhci.present", "TRUE"))
        return dumps(settings)

    def members(self) -> list[Member]:
        job = self.job
        name = vm_name(job)
        version = HARDWARE_VERSION["arm64" if self._arm() else "amd64"]
        files = [f"{name}.vmdk" if i == 0 else f"{name}-{i + 1}.vmdk" for i in range(len(job.disks))]
        layouts = [SparseLayout(d.source.size, d.clusters, f, d.disk_id, version) for d, f in zip(job.disks, files)]
        block = "  # VMware reads the VM's hardware from the box's .vmx; settings here override it.\n"
        return [
            Member.from_bytes("metadata.json", metadata_json(self.metadata())),
            Member.from_bytes("Vagrantfile", self.vagrantfile(block)),
            Member.from_bytes(f"{name}.vmx", self.vmx(files)),
            *(Member(f, lay.image_size, image_chunks(lay, d)) for f, lay, d in zip(files, layouts, job.disks)),
            *self.include_members(),
        ]

    @classmethod
    def check_box(cls, report: Report, texts: dict[str, bytes]) -> None:
        """vagrant-vmware-desktop's rules: one .vmx (or the one metadata.json names), its disks in the box, monolithicSparse."""
        names = {m["name"].removeprefix("./") for m in report.members}
        vmxs = sorted(n for n in names if n.endswith(".vmx"))
        meta: dict[str, Any] = report.metadata
        chosen = meta.get("vmx_file") if isinstance(meta.get("vmx_file"), str) else (vmxs[0] if vmxs else None)
        if chosen is None:
            report.add("vmware-no-vmx", "error", "a vmware_desktop box needs a .vmx file; there is none")
            return
        if chosen not in texts:
            report.add("vmware-no-vmx", "error", f"{chosen}: named by metadata.json but not in the box (or too large)")
            return
        if len(vmxs) > 1 and "vmx_file" not in meta:
            report.add("vmware-vmx", "warning", f"{len(vmxs)} .vmx files; Vagrant takes the first it finds, {chosen!r} here")
        try:
            settings, bad = parse_vmx(texts[chosen].decode("utf-8"))
        except UnicodeDecodeError:
            report.add("vmx-syntax", "error", f"{chosen}: not UTF-8 text")
            return
        if "encryption.data" in settings:  # the rest of the settings, the disks' included, are in it, encrypted
            report.add("vmx-encrypted", "error", f"{chosen}: an encrypted VM; boxpack cannot read it (decrypt it in VMware first)")
            return
        for line in bad[:3]:
            report.add("vmx-syntax", "error", f"{chosen}: not a key = \"value\" line: {line[:80]!r}")
        for key in ("config.version", "virtualhw.version"):
            if key not in settings:
                report.add("vmx-key", "error", f"{chosen}: has no {key}")
        disks = [p.removeprefix("./") for p in disk_files(settings)]
        if not disks:
            report.add("vmx-disk", "error", f"{chosen}: attaches no disk")
        for path in disks:
            if path not in names:
                report.add("vmx-disk", "error", f"{chosen}: attaches {path!r}, which is not in the box")
        for disk in report.disks:
            fmt = str(disk.get("format", ""))
            if disk.get("member") in disks and fmt != "vmdk monolithicSparse":
                report.add("vmware-disk-format", "error", f"{disk.get('member')} is {fmt}; a VMware VM runs from a monolithicSparse VMDK, not a transport format")
