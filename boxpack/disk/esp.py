"""A disk's architecture and where it was read: the GPT root partition's type, else the EFI system
partition's boot loaders.

Most disks (Debian's installer, kiwi, debootstrap scripts) give their root
partition the generic Linux type, so the type says nothing; their EFI system
partition does: UEFI 2.10 section 3.5.1.1 (table 3-2) names the loader a
firmware boots from removable media by the machine it runs on
(\\EFI\\BOOT\\BOOTAA64.EFI), and distributions name their own loaders the same
way (\\EFI\\debian\\grubaa64.efi, shimx64.efi).

A disk is read once, in ascending order, and a disk inside a box cannot be
read again, so EspProbe is fed the scan: cluster 0 says where the ESP is, and
the ESP's first KEEP bytes are kept (its boot sector, FATs and, as every
formatter and installer allocates them, its first directories) to be walked
after the scan. Reading nothing else, it costs no pass of its own.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable

from .fat import FatError, FatVolume
from .partitions import PartitionTable, read_partition_table
from .source import CLUSTER, SECTOR, read_head

KEEP = 16 * 1024 * 1024
MAX_VENDORS = 64  # directories in \EFI listed, so that a hostile one of 65536 costs no more than a real one

# UEFI 2.10 table 3-2's machine names, by the architecture name Vagrant uses.
ARCH_BY_SUFFIX = {"X64": "amd64", "IA32": "i386", "AA64": "arm64", "ARM": "arm", "RISCV64": "riscv64",
                  "LOONGARCH64": "loongarch64"}
REMOVABLE = re.compile(rf"BOOT({'|'.join(ARCH_BY_SUFFIX)})\.EFI", re.I)
# A distribution's own loaders in \EFI\<vendor>\: shim, its MOK manager and fallback, GRUB, systemd-boot.
VENDOR = re.compile(rf"(shim|mm|fb|grub|systemd-boot)({'|'.join(ARCH_BY_SUFFIX)})\.efi", re.I)


class _Head:
    """Cluster 0 of a disk, read as read_partition_table reads a disk. Its size is not known yet (a compressed
    disk's is known after its scan), so it is the largest there can be: the backup GPT then reads as zeros."""

    size = 2**63 // SECTOR * SECTOR

    def __init__(self, data: bytes) -> None:
        self.head = data

    def read(self, offset: int, length: int) -> bytes:
        return read_head(self.head, offset, length)


class EspProbe:
    """Fed a disk's clusters in order during its scan: keeps its EFI system partition's first KEEP bytes."""

    def __init__(self) -> None:
        self.start = self.end = 0  # the kept byte range of the disk, empty until cluster 0 names an ESP
        self.kept: dict[int, bytes] = {}

    def feed(self, cluster: int, data: bytes | memoryview) -> None:
        offset = cluster * CLUSTER
        if cluster == 0:
            esp = read_partition_table(_Head(bytes(data))).esp  # type: ignore[arg-type]
            if esp:
                self.start = esp.first_lba * SECTOR
                self.end = min((esp.last_lba + 1) * SECTOR, self.start + KEEP)
        if offset < self.end and offset + len(data) > self.start:
            self.kept[cluster] = bytes(data)

    @property
    def done(self) -> bool:
        """Whether the scan has nothing more to give the probe once it passes cluster 0."""
        return not self.end

    def past(self, cluster: int) -> bool:
        return cluster * CLUSTER >= self.end

    def read(self, offset: int, length: int) -> bytes:
        """length bytes at offset in the ESP; a cluster the scan did not give reads as zeros (none was there)."""
        start = self.start + offset
        if start + length > self.end:
            raise FatError(f"the ESP's directories reach past its first {KEEP // (1024 * 1024)} MiB")
        out = bytearray()
        pos = start
        while pos < start + length:
            cluster, within = divmod(pos, CLUSTER)
            n = min(CLUSTER - within, start + length - pos)
            out += self.kept.get(cluster, bytes(CLUSTER))[within : within + n].ljust(n, b"\0")
            pos += n
        return bytes(out)

    def loaders(self) -> list[str]:
        """The ESP's boot loaders by path (\\EFI\\BOOT\\BOOTAA64.EFI), removable-media ones first."""
        if not self.end:
            return []
        try:
            fs = FatVolume(self.read)
            dirs = [d for d in fs.listdir(["EFI"]) if d.directory]
            boot = next((d for d in dirs if d.name.upper() == "BOOT"), None)
            found = [f"\\EFI\\{boot.name}\\{e.name}" for e in fs.children(boot)
                     if not e.directory and REMOVABLE.fullmatch(e.name)] if boot else []
            for d in [d for d in dirs if d is not boot][:MAX_VENDORS]:
                with contextlib.suppress(FatError):
                    found += [f"\\EFI\\{d.name}\\{e.name}" for e in fs.children(d)
                              if not e.directory and VENDOR.fullmatch(e.name)]
            return found
        except Exception:  # noqa: BLE001 - no \EFI, or an ESP broken or hostile: it names no architecture
            return []


def loader_architecture(path: str) -> str:
    name = path.rpartition("\\")[2]
    m = REMOVABLE.fullmatch(name) or VENDOR.fullmatch(name)
    assert m
    return ARCH_BY_SUFFIX[m.groups()[-1].upper()]


def architecture(table: PartitionTable, probe: EspProbe) -> tuple[str | None, str]:
    """(architecture or None, what on the disk said so): the root partition's type, else the ESP's loaders."""
    arch = table.architecture()
    if arch:
        return arch, "the GPT root partition's type (Discoverable Partitions Specification)"
    loaders = probe.loaders()
    if not loaders:
        return None, "neither a root partition type nor an EFI boot loader names one"
    arches = dict.fromkeys(loader_architecture(p) for p in loaders)
    if len(arches) > 1:
        return None, f"the EFI system partition holds loaders for {' and '.join(arches)} ({', '.join(loaders)})"
    return next(iter(arches)), f"{loaders[0]} on the EFI system partition"


def probe_disk(scan: Iterable[tuple[int, bytes | memoryview]]) -> EspProbe:
    """A probe fed a scan of its own, stopped once past the kept range: for a disk that is not being packed."""
    probe = EspProbe()
    for cluster, data in scan:
        if cluster and (probe.done or probe.past(cluster)):
            break
        probe.feed(cluster, data)
    return probe
