"""Partition tables (MBR, GPT): which firmware a disk boots with, and its architecture.

References: UEFI 2.10 section 5 (GPT, protective MBR); the Discoverable
Partitions Specification (uapi-group.org) for root/usr partition type GUIDs,
which mkosi/systemd-repart write.
"""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass, field

from construct import Array, Bytes, Const, Int8ul, Int16ul, Int32ul, Int64ul, Struct

from .source import SECTOR, Source

MbrPartition = Struct(
    "status" / Int8ul,
    "chs_first" / Bytes(3),
    "type" / Int8ul,
    "chs_last" / Bytes(3),
    "lba_first" / Int32ul,
    "sectors" / Int32ul,
)

Mbr = Struct(
    "boot_code" / Bytes(440),
    "disk_signature" / Int32ul,
    "reserved" / Int16ul,
    "partitions" / Array(4, MbrPartition),
    "signature" / Int16ul,
)

GptHeader = Struct(
    "signature" / Const(b"EFI PART"),
    "revision" / Int32ul,
    "header_size" / Int32ul,
    "header_crc32" / Int32ul,
    "reserved" / Int32ul,
    "current_lba" / Int64ul,
    "backup_lba" / Int64ul,
    "first_usable_lba" / Int64ul,
    "last_usable_lba" / Int64ul,
    "disk_guid" / Bytes(16),
    "entries_lba" / Int64ul,
    "entry_count" / Int32ul,
    "entry_size" / Int32ul,
    "entries_crc32" / Int32ul,
)

GptEntry = Struct(
    "type_guid" / Bytes(16),
    "unique_guid" / Bytes(16),
    "first_lba" / Int64ul,
    "last_lba" / Int64ul,
    "attributes" / Int64ul,
    "name" / Bytes(72),
)

MBR_SIGNATURE = 0xAA55
MAX_ENTRIES_BYTES = 1024 * 1024
MBR_PROTECTIVE = 0xEE
MBR_EFI_SYSTEM = 0xEF
ESP = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
BIOS_BOOT = uuid.UUID("21686148-6449-6e6f-744e-656564454649")

# Root and /usr partition types of the Discoverable Partitions Specification,
# by the architecture name Vagrant uses.
ARCH_BY_TYPE = {
    uuid.UUID(g): arch
    for arch, guids in {
        "amd64": ("4f68bce3-e8cd-4db1-96e7-fbcaf984b709", "8484680c-9521-48c6-9c11-b0720656f69e"),
        "i386": ("44479540-f297-41b2-9af7-d131d5f0458a", "75250d76-8cc6-458e-bd66-bd47cc81a812"),
        "arm64": ("b921b045-1df0-41c3-af44-4c6f280d3fae", "b0e01050-ee5f-4390-949a-9101b17104e9"),
        "arm": ("69dad710-2ce4-4e3c-b16c-21a1d49abed3", "7d0359a3-02b3-4f0a-865c-654403e70625"),
        "riscv64": ("72ec70a6-cf74-40e6-bd49-4bda08e8f224", "beaec34b-8442-439b-a40b-984381ed097d"),
        "ppc64le": ("c31c45e6-3f39-412e-80fb-4809c4980599", "15bb03af-77e7-4d4a-b12b-c0d084f7491c"),
        "s390x": ("5eead9a9-fe09-4a1e-a1d7-520d00531306", "8a4f5770-50aa-4ed3-874a-99b710db6fea"),
        "loongarch64": ("77055800-792c-4f94-b39a-98c91b762bb6", "e611c702-575c-4cbe-9a46-434fa0bf7e3f"),
    }.items()
    for g in guids
}


@dataclass
class Partition:
    number: int
    type: str  # GUID for GPT, two hex digits for MBR
    first_lba: int
    last_lba: int
    name: str = ""


@dataclass
class PartitionTable:
    """What a disk's first sectors say about how it boots."""

    kind: str  # "gpt", "mbr" or "none"
    partitions: list[Partition] = field(default_factory=list)
    mbr_boot_code: bool = False

    @property
    def esp(self) -> Partition | None:
        """The first EFI system partition (GPT type, or MBR type 0xEF)."""
        return next((p for p in self.partitions if p.type in (str(ESP), f"{MBR_EFI_SYSTEM:02x}")), None)

    @property
    def has_esp(self) -> bool:
        return self.esp is not None

    @property
    def has_bios_boot(self) -> bool:
        return self.kind == "mbr" or any(p.type == str(BIOS_BOOT) for p in self.partitions) or self.mbr_boot_code

    def firmware(self) -> tuple[str, str]:
        """("bios" | "efi", why): UEFI only when the disk cannot boot with a BIOS."""
        if self.kind == "none":
            return "bios", "no partition table"
        if self.has_esp and not self.has_bios_boot:
            return "efi", f"{self.kind.upper()} with an EFI system partition and no BIOS boot code"
        if self.has_esp:
            return "bios", f"{self.kind.upper()} bootable both ways (EFI system partition and BIOS boot code)"
        return "bios", f"{self.kind.upper()} without an EFI system partition"

    def architecture(self) -> str | None:
        """The architecture of the root or /usr partition, if its type says (GPT only)."""
        for p in self.partitions:
            arch = ARCH_BY_TYPE.get(uuid.UUID(p.type)) if self.kind == "gpt" else None
            if arch:
                return arch
        return None


def read_partition_table(disk: Source) -> PartitionTable:
    """Parse the MBR and, behind a protective MBR, the primary GPT (falling back to the backup)."""
    if disk.size < 2 * SECTOR:
        return PartitionTable("none")
    mbr = Mbr.parse(disk.read(0, SECTOR))
    if mbr.signature != MBR_SIGNATURE:
        return PartitionTable("none")
    boot_code = any(mbr.boot_code)
    if not any(p.type == MBR_PROTECTIVE for p in mbr.partitions):
        parts = [
            Partition(i + 1, f"{p.type:02x}", p.lba_first, p.lba_first + p.sectors - 1)
            for i, p in enumerate(mbr.partitions)
            if p.type and p.sectors
        ]
        return PartitionTable("mbr", parts, boot_code) if parts else PartitionTable("none")
    last_lba = disk.size // SECTOR - 1
    for lba in (1, last_lba):
        gpt = _read_gpt(disk, lba)
        if gpt is not None:
            return PartitionTable("gpt", gpt, boot_code)
    return PartitionTable("none")


def _read_gpt(disk: Source, lba: int) -> list[Partition] | None:
    raw = disk.read(lba * SECTOR, SECTOR)
    if raw[:8] != b"EFI PART":
        return None
    head = GptHeader.parse(raw)
    # UEFI 2.10 5.3.2: entries of 128 * 2^n bytes; a table larger than MAX_ENTRIES_BYTES or
    # outside the disk is not one any firmware reads, and is never allocated.
    if not 92 <= head.header_size <= SECTOR or head.entry_size < 128 or head.entry_size % 128 or head.entry_count > 1024:
        return None
    if head.entry_count * head.entry_size > MAX_ENTRIES_BYTES or not 0 < head.entries_lba < disk.size // SECTOR:
        return None
    check = bytearray(raw[: head.header_size])
    check[16:20] = bytes(4)
    if zlib.crc32(check) != head.header_crc32:
        return None
    table = disk.read(head.entries_lba * SECTOR, head.entry_count * head.entry_size)
    if zlib.crc32(table) != head.entries_crc32:
        return None
    parts = []
    for i in range(head.entry_count):
        e = GptEntry.parse(table[i * head.entry_size : i * head.entry_size + 128])
        if any(e.type_guid):
            name = e.name.decode("utf-16-le", "replace").split("\0", 1)[0]
            parts.append(Partition(i + 1, str(uuid.UUID(bytes_le=e.type_guid)), e.first_lba, e.last_lba, name))
    return parts
