"""The VirtualBox box: box.ovf, a streamOptimized VMDK, metadata.json, Vagrantfile.

Vagrant imports box.ovf (the name is fixed) with `VBoxManage import`, which
reads the VMDK sequentially. The VMDK is written during the disk scan, so a
VirtualBox box costs one read of the disk.
"""

from __future__ import annotations

import uuid

from .. import ovf
from ..archive import Member
from ..compress import zlib_compressor
from ..errors import BoxpackError
from ..metadata import metadata_json
from ..source import SECTOR
from ..vmdk import VmdkSpool, capacity_sectors, read_chunks
from . import Job, Provider

VMDK_NAME = "box-disk001.vmdk"  # what `vagrant package` and VirtualBox's export name it
VIRTUALBOX_OUI = "080027"


def disk_uuid(disk_id: bytes) -> str:
    return str(uuid.UUID(bytes=disk_id[4:20]))


def derived_mac(disk_id: bytes) -> str:
    """A MAC in VirtualBox's OUI derived from the disk, so boxes stay reproducible."""
    return VIRTUALBOX_OUI + disk_id[20:23].hex()


class VirtualBox(Provider):
    NAME = "virtualbox"

    def __init__(self, job: Job) -> None:
        super().__init__(job)
        self.spool = VmdkSpool(job.disk.size, VMDK_NAME, zlib_compressor(job.level, job.fast), job.threads, job.spool_dir)

    def feed(self, cluster: int, data: bytes) -> None:
        self.spool.feed(cluster, data)

    def metadata(self) -> dict:
        meta = {"provider": self.NAME}
        if self.job.architecture:
            meta["architecture"] = self.job.architecture
        return meta

    def settings(self) -> str:
        lines = []
        mac = self.job.base_mac
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
        spool, size = self.spool.finish(job.disk_id)
        capacity = capacity_sectors(job.disk.size) * SECTOR
        box_ovf = ovf.build(job.hardware, VMDK_NAME, size, capacity, disk_uuid(job.disk_id))
        problems = ovf.check(box_ovf, {VMDK_NAME: size})
        if problems:
            raise BoxpackError(f"internal error: box.ovf breaks VirtualBox's rules: {problems[0]}")
        return [
            Member.from_bytes("metadata.json", metadata_json(self.metadata())),
            Member.from_bytes("Vagrantfile", self.vagrantfile(self.settings())),
            Member.from_bytes("box.ovf", box_ovf),
            Member(VMDK_NAME, size, lambda: read_chunks(spool, size), stored=True),
            *self.include_members(),
        ]

    def close(self) -> None:
        self.spool.close()
