"""The Parallels box (Parallels Desktop for Mac): <name>.pvm/ with config.pvs and harddisk.hdd/, metadata.json.

vagrant-parallels (lib/vagrant-parallels/action/box_register.rb) takes the
first *.pvm or *.macvm in the box, reads config.pvs' VmUuid and registers the
bundle with `prlctl register --preserve-uuid`, then clones it
(action/import.rb). The disk is a Parallels disk directory, harddisk.hdd/:
DiskDescriptor.xml, the expanding image under the default top GUID, and the
empty file named like the directory that Parallels Desktop writes beside them
(descriptors/parallels_disk.py, formats/parallels.py).

The VM's identities (VmUuid, the disk's UUID and UID, the MAC) are derived
from the disk's content: the same disk gives the same box, another disk a VM
that registers beside it. EFI for UEFI-only and arm64 disks (Parallels on
Apple Silicon boots Linux with EFI only), the disk on SATA and a virtio NIC,
as AlmaLinux's Parallels boxes have them.
"""

from __future__ import annotations

import hashlib
import posixpath
import uuid

from ..descriptors import parallels_disk, pvs
from ..formats import parallels_hdd
from ..disk.source import SECTOR
from ..errors import BadInput
from ..formats.parallels import CLUSTER_SECTORS, HEADS, MAX_VIRTUAL_SIZE, SECTORS_PER_TRACK, ParallelsLayout
from ..member import Member
from ..metadata import metadata_json
from ..report import Report
from .base import HARDWARE, Provider, image_chunks, vm_name

DISK = "harddisk.hdd"
MIB = 1024 * 1024
BUNDLES = (".pvm", ".macvm")  # box_register.rb: the first `*.{pvm,macvm}` of the box
OUI = "001C42"  # Parallels' MAC prefix


def _uuid(seed: bytes, what: bytes) -> str:
    return "{%s}" % uuid.UUID(bytes=hashlib.sha256(what + seed).digest()[:16], version=4)


class Parallels(Provider):
    NAME = "parallels"
    TEST_DEVICES = ("sata", "virtio-net-pci")  # config.pvs: Hdd InterfaceType 2 (SATA), NetworkAdapter AdapterType 3
    TEST_FORMAT = "parallels"  # qemu's block/parallels.c reads the .hds itself: the test checks the file boxpack wrote
    DISK_FORMAT = "Parallels expanding"
    OPTIONS = tuple(o for o in HARDWARE if o.name != "os_type")  # config.pvs says Linux; Parallels Tools correct it
    MEMBERS = ("*.pvm/*",)
    TEXTS = (".pvs", ".xml")
    MAX_DISKS = 1
    DISK_LIMIT = "boxpack writes one harddisk.hdd per Parallels box"
    MAX_DISK_SIZE = MAX_VIRTUAL_SIZE

    def _efi(self) -> bool:
        return self.job.firmware == "efi" or self.job.architecture == "arm64"

    def members(self) -> list[Member]:
        job = self.job
        (boot,) = job.disks  # MAX_DISKS
        name = vm_name(job)
        layout = ParallelsLayout(boot.source.size, boot.clusters)
        seed = job.disk_id
        bundle = f"{name}.pvm"
        mac = OUI + hashlib.sha256(b"parallels mac" + seed).hexdigest()[:6].upper()
        vm = pvs.Pvs(_uuid(seed, b"parallels vm"), name, job.settings["cpus"], job.settings["memory"], self._efi(),
                     job.architecture == "arm64", [pvs.Hdd(DISK, _uuid(seed, b"parallels hdd"), -(-layout.size // MIB))], [mac])
        descriptor = parallels_disk.write(DISK, layout.sectors, layout.cylinders, HEADS, SECTORS_PER_TRACK,
                                          CLUSTER_SECTORS, _uuid(seed, b"parallels disk uid"))
        block = ("  config.vm.provider :parallels do |prl|\n"
                 "    # Parallels reads the VM's CPUs, memory, firmware and disk from the box's config.pvs.\n"
                 "  end\n")
        return [
            Member.from_bytes("metadata.json", metadata_json(self.metadata())),
            Member.from_bytes("Vagrantfile", self.vagrantfile(block)),
            Member.from_bytes(f"{bundle}/{pvs.NAME}", pvs.write(vm)),
            Member.from_bytes(f"{bundle}/{DISK}/{parallels_hdd.NAME}", descriptor),
            Member.from_bytes(f"{bundle}/{DISK}/{DISK}", b""),
            Member(f"{bundle}/{DISK}/{parallels_disk.image_name(DISK)}", layout.image_size, image_chunks(layout, boot)),
            *self.include_members(),
        ]

    @classmethod
    def check_box(cls, report: Report, texts: dict[str, bytes]) -> None:
        """box_register.rb's rules (a bundle, its config.pvs, a VmUuid), then each disk the VM attaches as
        prl-xml.rst defines a Parallels disk, against the image's own header."""
        names = {m["name"].removeprefix("./") for m in report.members}
        bundles = sorted({n.split("/", 1)[0] for n in names if "/" in n and n.split("/", 1)[0].endswith(BUNDLES)})
        if not bundles:
            report.add("parallels-layout", "error", "no *.pvm or *.macvm bundle; vagrant-parallels finds no VM to register")
            return
        if len(bundles) > 1:
            report.add("parallels-layout", "warning", f"{len(bundles)} VM bundles; vagrant-parallels registers the first it finds")
        config = f"{bundles[0]}/{pvs.NAME}"
        if config not in texts:
            report.add("parallels-layout", "error", f"{config} is missing; vagrant-parallels reads the VM's VmUuid from it")
            return
        try:
            vm = pvs.read(texts[config])
        except BadInput as e:
            report.add("parallels-pvs", "error", f"{config}: {e}")
            return
        report.vm_firmware = {"firmware": "efi" if vm.efi else "bios", "from": config}
        gone = pvs.missing(texts[config])
        if gone:
            report.add("parallels-pvs", "error", f"{config}: no {', '.join(gone)}, which Parallels' VM config model "
                       "requires (libprlxmlmodel VmConfig.xsd): Parallels Desktop would not load the VM")
        if not pvs.UUID.fullmatch(vm.vm_uuid):
            report.add("parallels-pvs", "error", f"{config}: Identification/VmUuid {vm.vm_uuid!r} is not a {{UUID}}; "
                       "vagrant-parallels registers the VM by it")
        if not vm.disks:
            report.add("parallels-pvs", "error", f"{config}: attaches no hard disk image")
        for mac in vm.macs:
            if not pvs.MAC.fullmatch(mac):
                report.add("parallels-pvs", "error", f"{config}: network adapter MAC {mac!r} is not 12 hex digits")
        images = {str(d.get("member")): d for d in report.disks}
        for hdd in vm.disks:
            cls._check_hdd(report, texts, names, images, bundles[0], hdd)

    @classmethod
    def _check_hdd(cls, report: Report, texts: dict[str, bytes], names: set[str], images: dict[str, dict],
                   bundle: str, hdd: pvs.Hdd) -> None:
        if hdd.system_name.startswith("/"):
            report.add("parallels-pvs", "error", f"Hdd {hdd.system_name!r} is an absolute path, outside the box; "
                       "vagrant package writes it relative")
            return
        where = posixpath.join(bundle, hdd.system_name, parallels_hdd.NAME)
        if where not in texts:
            report.add("parallels-hdd", "error", f"{where} is missing: {hdd.system_name} is not a Parallels disk")
            return
        try:
            d = parallels_hdd.read(texts[where])
            if len(d.storages) > 1:  # prl-xml.rst: a split image; vagrant-parallels' export.rb handles every piece
                report.add("parallels-hdd", "warning", f"{where}: a split disk ({len(d.storages)} storages), which "
                           "Parallels Desktop runs; boxpack converts it from its .hdd directory, not from a box (or merge it with "
                           "prl_disk_tool)")
                return
            kind, file = d.top_image()
        except BadInput as e:
            report.add("parallels-hdd", "error", f"{where}: {e}")
            return
        if d.cylinders * d.heads * d.sectors != d.size:
            report.add("parallels-hdd", "error", f"{where}: Cylinders x Heads x Sectors is {d.cylinders * d.heads * d.sectors}, "
                       f"not Disk_size {d.size} (prl-xml.rst)")
        if d.padding:  # prl-xml.rst: Parallels Desktop may write 1; other software should not open such disks
            report.add("parallels-hdd", "warning", f"{where}: Padding is {d.padding}, which Parallels Desktop runs but "
                       "qemu and other readers (boxpack's conversion too) do not open")
        storage = d.storages[0]
        if (storage.start, storage.end) != (0, d.size):
            report.add("parallels-hdd", "error", f"{where}: its storage spans sectors {storage.start}..{storage.end}, not 0..{d.size}")
        if file.startswith("/"):
            report.add("parallels-hdd", "error", f"{where}: the image {file!r} is an absolute path, outside the box")
        image = parallels_disk.member_path(where, file)
        if image not in names:
            report.add("parallels-hdd", "error", f"{where}: names the image {file!r}, which is not in the box")
            return
        facts = images.get(image)
        if facts is None:
            return
        fmt = str(facts.get("format", ""))
        if kind == "Compressed" and not fmt.startswith("Parallels"):
            report.add("parallels-hdd", "error", f"{image} is {fmt}, but {where} says an expanding Parallels image")
        if kind == "Compressed" and facts.get("cluster_size") not in (None, storage.blocksize * SECTOR):
            report.add("parallels-hdd", "error", f"{where}: Blocksize {storage.blocksize} sectors, but the image's clusters "
                       f"are {facts.get('cluster_size')} bytes")
        if facts.get("virtual_size") not in (None, d.size * SECTOR):
            report.add("parallels-hdd", "error", f"{where}: Disk_size is {d.size * SECTOR} bytes, but the image holds "
                       f"{facts.get('virtual_size')}")
