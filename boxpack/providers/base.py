"""What a provider declares: its name, options, box members, metadata, Vagrantfile and verify rules.

A provider is built once per run after the disks are scanned, from a Job that holds what the scan found
(firmware, architecture, the disks' data maps); a provider that works during that one read (VirtualBox
compresses its grains) gives the scan a listener, which it is built with. members() lists the box's
files. Its OPTIONS become an argument group of the CLI, and check_box() holds the rules `boxpack verify`
applies to its boxes. packing.py, cli/ and verify.py know only this interface.
"""

from __future__ import annotations

import functools
import re
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from ..descriptors import ovf
from ..disk.pieces import Piece, PieceSpool, raw_pieces
from ..disk.source import Source
from ..errors import BadInput, BadOption
from ..member import Chunk, Member
from ..options import Setting, problem, provider_option
from ..output.gzip import Compression
from ..report import Report


# The VM hardware options every provider with a VM configuration shares (VirtualBox, VMware).
HARDWARE = (
    provider_option("cpus", "--cpus", "virtual CPUs (default: 2)", default=2, type=int, metavar="N",
           check=lambda n: None if 1 <= n <= 64 else "is out of range 1..64"),
    provider_option("memory", "--memory", "memory in MiB (default: 1024)", default=1024, type=int, metavar="MIB",
           check=lambda n: None if 4 <= n <= 2**22 else f"MiB is out of range 4..{2**22}"),
    provider_option("os_type", "--os-type", f"guest OS, in VirtualBox's names (default: {ovf.DEFAULT_OS_TYPE}; also "
           + ", ".join(t for t in ovf.OS_TYPES if t != ovf.DEFAULT_OS_TYPE) + "); mapped to VMware's guestOS",
           default=ovf.DEFAULT_OS_TYPE, metavar="TYPE",
           check=lambda t: None if t in ovf.OS_TYPES else f"is unknown; choose from {', '.join(ovf.OS_TYPES)}"),
    provider_option("vm_name", "--vm-name", "VM name (default: the disk's file name)", metavar="NAME",
           check=lambda n: None if n and not any(c in n for c in "<>&\"'/\0") else "must be a non-empty name without <>&\"'/"),
)


def vm_name(job: Job) -> str:
    """The VM name: --vm-name, else the source's file name reduced to characters every hypervisor takes."""
    return job.settings.get("vm_name") or re.sub(r"[^A-Za-z0-9._-]+", "-", job.name).strip("-") or "boxpack"


@dataclass(frozen=True)
class TestVm:
    """The VM `boxpack test` boots a box's disk in, as the provider's consumer would set it up."""

    bus: str  # "virtio", "sata", "nvme", "ide" or "scsi"
    nics: tuple[str, ...]  # QEMU NIC devices, in order
    subnets: tuple[str | None, ...] = ()  # each NIC's user-mode network, where not QEMU's 10.0.2.0/24
    forward: int = 0  # the NIC that SSH is forwarded through, as Vagrant connects
    machine: str | None = None  # QEMU's -machine, when not the architecture's default (pc, virt)
    cpu: str | None = None  # QEMU's -cpu under TCG, when the consumer names one
    pflash: bool = False  # UEFI as read-only code plus a copy of the variable template, rather than -bios
    image_format: str = "raw"  # QEMU's driver for the disk file booted
    architecture: str | None = None  # when the consumer's configuration says, rather than the disk
    firmware: str | None = None  # "efi" or "bios", when the consumer's configuration says, rather than the disk


@dataclass(frozen=True)
class Disk:
    """One disk of the box, as the scan found it."""

    source: Source
    clusters: array  # the clusters that hold data, in order
    disk_id: bytes  # 32 bytes derived from the disk's content (and place)
    spool: PieceSpool | None = None  # its data compressed for every box that holds it (disk/pieces.py)

    def pieces(self) -> Iterator[Piece]:
        """The data, in pieces: gzip members compressed once for every box (the spool), else raw from a second scan."""
        raw = functools.partial(raw_pieces, self.source, self.clusters)
        return self.spool.pieces(raw) if self.spool else raw()


@dataclass(frozen=True)
class Job:
    """What providers are built with, after the scan: the disks (the first boots), what they are, and the
    user's choices."""

    disks: tuple[Disk, ...]
    name: str  # the box's base name, from the source file: VM names default to it
    settings: dict[str, Any]  # provider options by name (Option.name), defaults filled in
    firmware: str  # "bios" or "efi": as asked, else what the boot disk's partition table says
    architecture: str | None  # as asked, else from the source box or the boot disk, else unknown
    vagrantfile: bytes | None = None  # the user's own, replacing the default
    include: tuple[Path, ...] = ()

    @property
    def disk(self) -> Source:
        """The boot disk."""
        return self.disks[0].source

    @property
    def disk_id(self) -> bytes:
        """The boot disk's ID: seeds the VM's IDs and MAC."""
        return self.disks[0].disk_id


class Listener(Protocol):
    """What a provider makes during the scan, from every data cluster as it is read (VirtualBox compresses
    its grains there), handed to the provider once the scan is over."""

    def feed(self, disk: int, cluster: int, data: bytes | memoryview) -> None:
        """One non-zero 64 KiB cluster of disk number `disk`, in ascending order (disks in order)."""

    def close(self) -> None:
        """Release what it holds, once the box is written (or on failure)."""


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            yield chunk

class Layout(Protocol):
    """A disk format's writer (formats.qcow2.Qcow2Layout, VhdxLayout, ...): the image around the data's pieces."""

    def stream(self, pieces: Iterable[Piece]) -> Iterator[Chunk]: ...


def image_chunks(layout: Layout, disk: Disk) -> Callable[[], Iterator[Chunk]]:
    """What a disk member streams from: the layout's image, made of the disk's pieces when it is written."""
    return lambda: layout.stream(disk.pieces())


class Provider:
    NAME: ClassVar[str]
    DISK_FORMAT: ClassVar[str]  # the format of the disk in the box, as inspect names it
    OPTIONS: ClassVar[tuple[Setting, ...]] = ()
    MEMBERS: ClassVar[tuple[str, ...]] = ()  # the files it writes besides metadata.json and Vagrantfile (fnmatch patterns)
    TEXTS: ClassVar[tuple[str, ...]] = ()  # small members verify reads for check_box(): names, or ".suffix"
    TEST_DEVICES: ClassVar[tuple[str, str]]  # the disk bus and NIC its consumer gives the VM, as boxpack test boots it
    TEST_FORMAT: ClassVar[str | None] = None  # QEMU's driver for the box's own disk, when boxpack test boots that file
    PIECES: ClassVar[bool] = True  # its disk holds the data as it is: it writes the run's shared pieces (Disk.pieces)

    MAX_DISKS: ClassVar[int | None] = None  # how many disks its consumer can attach from one box
    DISK_LIMIT: ClassVar[str] = ""  # why, with the upstream source
    MAX_DISK_SIZE: ClassVar[int | None] = None  # the largest disk its format holds, in bytes

    @classmethod
    def listener(cls, compression: Compression, spool_dir: Path | None) -> Listener | None:
        """What it makes during the scan, if anything (given to __init__ as listened)."""
        return None

    def __init__(self, job: Job, listened: Listener | None = None) -> None:
        self.job = job

    def members(self) -> list[Member]:
        raise NotImplementedError

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"provider": self.NAME}
        if self.job.architecture:
            meta["architecture"] = self.job.architecture
        return meta

    def vagrantfile(self, provider_block: str) -> bytes:
        """The user's Vagrantfile, or the default with this provider's settings."""
        if self.job.vagrantfile is not None:
            return self.job.vagrantfile
        return (
            f"# Vagrantfile of a {self.NAME} box made by boxpack. Settings in your own\n"
            "# Vagrantfile override these.\n"
            'Vagrant.configure("2") do |config|\n' + provider_block + "end\n"
        ).encode()

    def include_members(self) -> list[Member]:
        """The user's extra files, by their base name, streamed when the archive is written."""
        return [Member(p.name, p.stat().st_size, functools.partial(_file_chunks, p)) for p in self.job.include]

    TEST_TEXTS: ClassVar[tuple[str, ...]] = ()  # members test_vm() reads

    @classmethod
    def test_vm(cls, texts: dict[str, bytes]) -> TestVm:
        """The VM boxpack test boots (texts: the members named in TEST_TEXTS that the box holds)."""
        bus, nic = cls.TEST_DEVICES
        return TestVm(bus, (nic,), image_format=cls.TEST_FORMAT or "raw")

    @classmethod
    def check_disks(cls, count: int) -> None:
        """Raise BoxpackError when the provider's consumer cannot attach count disks."""
        if cls.MAX_DISKS is not None and count > cls.MAX_DISKS:
            raise BadInput(f"{cls.NAME} boxes hold at most {cls.MAX_DISKS} disk{'s' if cls.MAX_DISKS > 1 else ''}, "
                               f"not {count}: {cls.DISK_LIMIT}")

    @classmethod
    def check_size(cls, size: int, where: object) -> None:
        """Raise BoxpackError for a disk the provider's format cannot hold (checked before any box is written)."""
        if cls.MAX_DISK_SIZE is not None and size > cls.MAX_DISK_SIZE:
            raise BadInput(f"{where}: a {size / 2**40:.1f} TiB disk does not fit a {cls.NAME} box, whose {cls.DISK_FORMAT} "
                               f"holds at most {cls.MAX_DISK_SIZE / 2**40:.0f} TiB")

    @classmethod
    def check_settings(cls, settings: dict[str, Any]) -> None:
        """Raise BoxpackError for the first option value the provider cannot use."""
        for setting in cls.OPTIONS:
            wrong = problem(setting, settings.get(setting.name, setting.default))
            if wrong:
                raise BadOption(wrong)

    @classmethod
    def check_box(cls, report: Report, texts: dict[str, bytes]) -> None:
        """Add the provider's own findings about a box to report (texts: the members named in TEXTS)."""
