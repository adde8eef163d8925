"""The Hyper-V box, made on any machine: Virtual Hard Disks/<name>.vhdx, Virtual Machines/box.xml, metadata.json.

Vagrant's hyperv provider (plugins/providers/hyperv/action/import.rb) takes
the first .xml or .vmcx in `Virtual Machines/` and the first .vhd or .vhdx in
`Virtual Hard Disks/`, and for an .xml creates the VM with New-VM from what
New-VagrantVMXML (scripts/utils/VagrantVM/VagrantVM.psm1) reads from it
(descriptors/hyperv_xml.py reads and writes that XML).

A UEFI-only (or arm64) disk gets a generation 2 VM with the disk on SCSI,
a BIOS disk generation 1 with the disk on IDE controller 0.
"""

from __future__ import annotations

import uuid

from ..descriptors.hyperv_xml import read_vm_xml, write_vm_xml
from ..errors import BoxpackError
from ..formats.vhdx import DEFAULT_BLOCK, MAX_VIRTUAL_SIZE, VhdxLayout
from ..member import Member
from ..metadata import metadata_json
from ..report import Report
from ..options import provider_option
from .base import HARDWARE, Provider, image_chunks, vm_name

MIB = 1024 * 1024
CONFIG = "Virtual Machines/box.xml"
DISKS = "Virtual Hard Disks/"


def _block_size(mib: int) -> str | None:
    return None if 1 <= mib <= 256 and not mib & (mib - 1) else "must be a power of two from 1 to 256"


class HyperV(Provider):
    NAME = "hyperv"
    TEST_DEVICES = ("sata", "e1000")  # QEMU has no VMBus: the nearest of Hyper-V's emulated IDE/SCSI and legacy NIC
    DISK_FORMAT = "vhdx"
    OPTIONS = (
        *HARDWARE,
        provider_option("vhdx_block_size", "--vhdx-block-size", "Hyper-V: VHDX block size in MiB, a power of two from 1 to 256 "
               "(default: 1, Microsoft's recommendation for Linux guests)", default=DEFAULT_BLOCK // MIB, type=int,
               metavar="MIB", check=_block_size),
    )
    MEMBERS = (CONFIG,)
    TEXTS = (".xml",)
    MAX_DISKS = 1
    MAX_DISK_SIZE = MAX_VIRTUAL_SIZE  # 64 TiB: the VHDX specification's, and Hyper-V's
    DISK_LIMIT = ("Vagrant's Hyper-V import copies the first disk of Virtual Hard Disks/ and attaches that copy for "
                  "every drive of the VM (import.rb; VagrantVM.psm1, New-VagrantVMXML), so a second disk would be "
                  "the first again")

    def generation(self) -> int:
        return 2 if self.job.firmware == "efi" or self.job.architecture == "arm64" else 1

    def vm_xml(self, disk_path: str) -> bytes:
        s, gen = self.job.settings, self.generation()
        channel = str(uuid.UUID(bytes=self.job.disk_id[:16])) if gen == 2 else None
        return write_vm_xml(gen, vm_name(self.job), s["cpus"], s["memory"], disk_path, channel)

    def members(self) -> list[Member]:
        job = self.job
        disk = f"{DISKS}{vm_name(job)}.vhdx"
        (boot,) = job.disks  # MAX_DISKS
        layout = VhdxLayout(boot.source.size, boot.clusters, boot.disk_id, job.settings["vhdx_block_size"] * MIB)
        block = "  # Hyper-V reads the VM's generation, CPUs, memory and disk from Virtual Machines/box.xml.\n"
        return [
            Member.from_bytes("metadata.json", metadata_json(self.metadata())),
            Member.from_bytes("Vagrantfile", self.vagrantfile(block)),
            Member.from_bytes(CONFIG, self.vm_xml(disk)),
            Member(disk, layout.image_size, image_chunks(layout, boot)),
            *self.include_members(),
        ]

    @classmethod
    def check_box(cls, report: Report, texts: dict[str, bytes]) -> None:
        """import.rb's folder rules, then the XML as New-VagrantVMXML reads it, then the disk's format."""
        names = [m["name"].removeprefix("./") for m in report.members]
        configs = [n for n in names if n.startswith("Virtual Machines/") and n.lower().endswith((".xml", ".vmcx"))]
        disks = [n for n in names if n.startswith(DISKS) and n.lower().endswith((".vhd", ".vhdx"))]
        if not configs:
            report.add("hyperv-layout", "error", "no .xml or .vmcx in Virtual Machines/; Vagrant says BoxInvalid")
        if not disks:
            report.add("hyperv-layout", "error", "no .vhd or .vhdx in Virtual Hard Disks/; Vagrant says BoxInvalid")
        if len(configs) > 1:
            report.add("hyperv-layout", "warning", f"{len(configs)} VM configurations; which one Vagrant takes depends on directory order")
        xmls = [c for c in configs if c.lower().endswith(".xml")]
        if not xmls or xmls[0] not in texts:
            return
        try:
            vm = read_vm_xml(texts[xmls[0]])
        except BoxpackError as e:
            report.add("hyperv-xml", "error", f"{xmls[0]}: {e}")
            return
        for where in vm.untyped[:3]:
            report.add("hyperv-xml-untyped", "error", f"{xmls[0]}: <{where}> has no attribute, so PowerShell reads it as nothing (write it with a type attribute)")
        if not vm.drives:
            report.add("hyperv-xml-disk", "error", f"{xmls[0]}: no controller drive with a pathname and type VHD: Vagrant would attach no disk")
        for kind, number in vm.drives:
            if vm.generation == 2 and kind == "IDE":
                report.add("hyperv-xml-disk", "error", f"{xmls[0]}: a generation 2 VM has no IDE controller (disk on IDE {number})")
        if len(vm.drives) > 1:
            report.add("hyperv-xml-disk", "error", f"{xmls[0]}: {len(vm.drives)} drives, but Vagrant attaches its copy of "
                       "the box's first disk for every drive (VagrantVM.psm1, New-VagrantVMXML)")
        if len(disks) > 1:
            report.add("hyperv-layout", "warning", f"{len(disks)} disks in {DISKS}; Vagrant copies only the first it finds "
                       "(import.rb), the others are ignored")
        if vm.generation == 1 and vm.drives and all(kind == "SCSI" for kind, _ in vm.drives):
            report.add("hyperv-xml-disk", "error", f"{xmls[0]}: a generation 1 VM boots from IDE, but the disk is on SCSI")
        if vm.processors is None or vm.memory_mb is None:
            report.add("hyperv-xml", "error", f"{xmls[0]}: settings/processors/count or memory/Bank/size is missing")
        fmt = str(report.disk.get("format", ""))
        if report.disk and not fmt.startswith(("VHD", "VHDX")):
            report.add("hyperv-disk-format", "error", f"{report.disk.get('member')} is {fmt}, not a VHD or VHDX")
