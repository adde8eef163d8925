"""The VirtualBox box: box.ovf, a streamOptimized VMDK, metadata.json, Vagrantfile.

Vagrant imports box.ovf (the name is fixed) with `VBoxManage import`, which
reads the VMDK sequentially. The VMDK is written during the disk scan, so a
VirtualBox box costs one read of the disk.
"""

from __future__ import annotations

import functools
import re
import uuid
from pathlib import Path

from ..descriptors import ovf
from ..disk.source import SECTOR
from ..errors import BoxpackError, InternalError
from ..formats.vmdk import VmdkSpool, capacity_sectors, read_chunks
from ..member import Member
from ..metadata import metadata_json
from ..output.gzip import Compression
from ..report import Report
from ..options import provider_option
from .base import HARDWARE, Job, Listener, Provider, vm_name


def vmdk_name(index: int) -> str:
    """box-disk001.vmdk, box-disk002.vmdk, ...: what VirtualBox's export (and so `vagrant package`) names them."""
    return f"box-disk{index + 1:03d}.vmdk"
VIRTUALBOX_OUI = "080027"


def disk_uuid(disk_id: bytes) -> str:
    return str(uuid.UUID(bytes=disk_id[4:20]))


def derived_mac(disk_id: bytes) -> str:
    """A MAC in VirtualBox's OUI derived from the disk, so boxes stay reproducible."""
    return VIRTUALBOX_OUI + disk_id[20:23].hex()


def _check_mac(mac: str) -> str | None:
    if mac == "auto":
        return None
    if not re.fullmatch(r"[0-9A-Fa-f]{12}", mac):
        return "must be auto or 12 hex digits without separators"
    if int(mac[:2], 16) & 1:
        return "a multicast address cannot be a NIC's MAC"
    return None


class VmdkSpools:
    """VirtualBox's listener: each disk's streamOptimized VMDK, its grains compressed as the scan reads them,
    so a VirtualBox box costs one read of the disk."""

    def __init__(self, compression: Compression, spool_dir: Path | None) -> None:
        self.compress, self.threads, self.spool_dir = compression.zlib(), compression.threads, spool_dir
        self.spools: list[VmdkSpool] = []

    def spool(self, disk: int) -> VmdkSpool:
        """The VMDK of disk number `disk` (disks come in order; one without data still gets one)."""
        while len(self.spools) <= disk:
            self.spools.append(VmdkSpool(vmdk_name(len(self.spools)), self.compress, self.threads, self.spool_dir))
        return self.spools[disk]

    def feed(self, disk: int, cluster: int, data: bytes | memoryview) -> None:
        self.spool(disk).feed(cluster, data)

    def close(self) -> None:
        for spool in self.spools:
            spool.close()


class VirtualBox(Provider):
    NAME = "virtualbox"
    TEST_DEVICES = ("sata", "e1000")  # the AHCI controller and the Intel PRO/1000 of the box's OVF
    DISK_FORMAT = "vmdk streamOptimized"
    PIECES = False  # its grains are compressed in 64 KiB, by the VMDK spool
    MEMBERS = ("box.ovf", "box-disk[0-9][0-9][0-9].vmdk", "box.vmdk")
    TEXTS = ("box.ovf",)
    OPTIONS = (
        *HARDWARE,
        provider_option("base_mac", "--base-mac", "VirtualBox: set config.vm.base_mac, only needed by Vagrant < 2.2: auto "
               "derives one from the disk, or give 12 hex digits (default: none, Vagrant generates one per VM)",
               metavar="auto|MAC", check=_check_mac),
    )

    MAX_DISKS = 30
    DISK_LIMIT = "VirtualBox's SATA controller has 30 ports"

    @classmethod
    def listener(cls, compression: Compression, spool_dir: Path | None) -> VmdkSpools:
        return VmdkSpools(compression, spool_dir)

    def __init__(self, job: Job, listened: Listener | None = None) -> None:
        super().__init__(job)
        if not isinstance(listened, VmdkSpools):
            raise InternalError("internal error: a VirtualBox box is built from the VMDKs its scan wrote")
        self.vmdks = listened

    def hardware(self) -> ovf.Hardware:
        s = self.job.settings
        return ovf.Hardware(vm_name(self.job), s["os_type"], s["cpus"], s["memory"])

    def settings(self) -> str:
        lines = []
        mac = self.job.settings["base_mac"]
        if mac:
            lines.append(f'  config.vm.base_mac = "{derived_mac(self.job.disk_id) if mac == "auto" else mac.upper()}"\n')
        lines.append("  config.vm.provider :virtualbox do |vb|\n")
        if self.job.firmware == "efi":
            lines.append("    # This disk boots with UEFI only.\n")
            lines.append('    vb.customize ["modifyvm", :id, "--firmware", "efi"]\n')
        lines.append("  end\n")
        return "".join(lines)

    def members(self) -> list[Member]:
        job = self.job
        vmdks = []
        for i, disk in enumerate(job.disks):
            spool, size = self.vmdks.spool(i).finish(disk.source.size, disk.disk_id)
            vmdks.append((ovf.DiskFile(vmdk_name(i), size, capacity_sectors(disk.source.size) * SECTOR,
                                       disk_uuid(disk.disk_id)), spool))
        box_ovf = ovf.build(self.hardware(), [d for d, _ in vmdks])
        problems = ovf.check(box_ovf, {d.name: d.size for d, _ in vmdks})
        if problems:
            raise InternalError(f"internal error: box.ovf breaks VirtualBox's rules: {next(iter(problems)).message}")
        return [
            Member.from_bytes("metadata.json", metadata_json(self.metadata())),
            Member.from_bytes("Vagrantfile", self.vagrantfile(self.settings())),
            Member.from_bytes("box.ovf", box_ovf),
            *(Member(d.name, d.size, functools.partial(read_chunks, f, d.size), stored=True) for d, f in vmdks),
            *self.include_members(),
        ]

    @classmethod
    def check_box(cls, report: Report, texts: dict[str, bytes]) -> None:
        """VirtualBox's OVF rules, every referenced file present, and the OVF's capacity equal to the VMDK's."""
        xml = texts.get("box.ovf")
        if xml is None:
            report.add("ovf-missing", "error", "metadata.json says virtualbox but there is no box.ovf")
            return
        report.findings.extend(ovf.check(xml, {m["name"].removeprefix("./"): m["size"] for m in report.members}))
        try:
            report.ovf = ovf.facts(xml)
        except BoxpackError:
            report.ovf = {}
            return
        facts = {d.get("member"): d for d in report.disks}
        for disk in report.ovf.get("disks", []):
            cap, found = disk["capacity"], facts.get(disk["file"], {})
            vsize = found.get("virtual_size")
            if cap is not None and vsize is not None and str(found.get("format", "")).startswith("vmdk") and cap != vsize:
                report.add("ovf-capacity-mismatch", "error", f"box.ovf says {disk['file']} holds {cap} bytes, the VMDK header {vsize}")
