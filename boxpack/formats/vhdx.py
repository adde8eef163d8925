"""VHDX (Hyper-V): reader and checker, fixed and dynamic disks.

References: [MS-VHDX] (header selection 2.2.2.1, region table 2.2.3, log
2.3, BAT 2.5, metadata 2.6); qemu block/vhdx.c (vhdx_parse_header,
vhdx_open_region_tables, vhdx_parse_metadata, vhdx_calc_bat_entries) and
block/vhdx-log.c (vhdx_parse_log). Structures are in c_vhdx.py.

The current header is the valid one (signature and CRC-32C) with the higher
sequence number. A log that holds valid entries must be replayed before the
disk reads right; boxpack does not replay it and refuses the disk by naming
the log, as qemu refuses to open such a file read-only. Differencing disks
(HasParent) are refused by name. Blocks that are not present, undefined,
zero or unmapped read as zeros, as in qemu's vhdx_co_readv().
"""

from __future__ import annotations

from collections.abc import Iterator

import crc32c

from ..bytesource import ByteSource, table_chunks
from ..errors import BoxpackError
from ..findings import Findings
from .base import block_pieces
from .c_vhdx import (
    BAT_GUID,
    BAT_OFFSET_SHIFT,
    BAT_STATE_MASK,
    FILE_PARAMETERS_GUID,
    FILE_SIGNATURE,
    HEADER_OFFSETS,
    HEADER_SIZE,
    KNOWN_METADATA,
    LOG_SIGNATURE,
    LOGICAL_SECTOR_SIZE_GUID,
    MAX_METADATA_ENTRIES,
    MAX_REGION_ENTRIES,
    MAX_SECTORS_PER_BLOCK,
    METADATA_GUID,
    METADATA_REQUIRED,
    METADATA_TABLE_SIZE,
    MIB,
    PARAMS_HAS_PARENT,
    PARAMS_LEAVE_BLOCKS_ALLOCATED,
    PAYLOAD_FULLY_PRESENT,
    PAYLOAD_PARTIALLY_PRESENT,
    REGION_REQUIRED,
    REGION_TABLE_OFFSETS,
    REGION_TABLE_SIZE,
    VIRTUAL_DISK_SIZE_GUID,
    Header,
    LogEntryHeader,
    MetadataTableEntry,
    MetadataTableHeader,
    RegionTableEntry,
    RegionTableHeader,
)

NAME = "VHDX"
SUFFIXES = (".vhdx",)
MAX_VIRTUAL_SIZE = 64 * 1024**4  # 64 TiB, the spec's limit


def probe(head: bytes, tail: bytes) -> bool:
    return head[:8] == FILE_SIGNATURE


def _crc_ok(raw: bytes, at: int = 4) -> bool:
    """CRC-32C of raw with its checksum field (4 bytes at `at`) taken as zero."""
    stored = int.from_bytes(raw[at : at + 4], "little")
    return crc32c.crc32c(raw[:at] + bytes(4) + raw[at + 4 :]) == stored


class VhdxReader:
    """Reads a VHDX's payload blocks through its BAT, in guest order."""

    def __init__(self, data: ByteSource, name: str) -> None:
        self.data, self.name = data, name
        if data.pread(0, 8) != FILE_SIGNATURE:
            raise BoxpackError(f"{name}: not a VHDX (no vhdxfile signature)")
        self.header = self._current_header()
        bat, metadata = self._regions()
        self._check_log()
        self._metadata(*metadata)
        self.bat_offset, bat_length = bat
        # [MS-VHDX] 2.5: a sector bitmap entry follows every chunk_ratio payload entries.
        self.chunk_ratio = MAX_SECTORS_PER_BLOCK * self.logical_sector_size // self.block_size
        self.blocks = -(-self.size // self.block_size)
        self.bat_entries = self.blocks + (self.blocks - 1) // self.chunk_ratio if self.blocks else 0
        if self.bat_entries * 8 > bat_length:
            raise BoxpackError(f"{name}: the BAT region ({bat_length} bytes) is too small for {self.bat_entries} entries")
        self.format = f"VHDX {self.variant}"
        self.data_estimate = min(data.size, self.size)

    def _current_header(self):
        valid = []
        for offset in HEADER_OFFSETS:
            raw = self.data.pread(offset, HEADER_SIZE)
            if len(raw) == HEADER_SIZE and raw[:4] == b"head" and _crc_ok(raw):
                valid.append(Header.parse(raw))
        if not valid:
            raise BoxpackError(f"{self.name}: neither VHDX header is valid (bad signature or CRC-32C); the file is damaged")
        h = max(valid, key=lambda x: x.sequence_number)
        if h.version != 1:
            raise BoxpackError(f"{self.name}: VHDX version {h.version} is not supported (only 1)")
        return h

    def _regions(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """(offset, length) of the BAT and metadata regions, from the first region table that is valid."""
        for offset in REGION_TABLE_OFFSETS:
            raw = self.data.pread(offset, REGION_TABLE_SIZE)
            if len(raw) != REGION_TABLE_SIZE or raw[:4] != b"regi" or not _crc_ok(raw):
                continue
            head = RegionTableHeader.parse(raw)
            if head.entry_count > MAX_REGION_ENTRIES:
                continue
            found = {}
            for i in range(head.entry_count):
                e = RegionTableEntry.parse(raw[16 + 32 * i : 48 + 32 * i])
                if e.guid in (BAT_GUID, METADATA_GUID):
                    if e.file_offset % MIB or e.file_offset + e.length > self.data.size:
                        raise BoxpackError(f"{self.name}: a VHDX region at byte {e.file_offset} ({e.length} bytes) is misaligned or past the end of the file")
                    found[e.guid] = (e.file_offset, e.length)
                elif e.flags & REGION_REQUIRED:
                    raise BoxpackError(f"{self.name}: has a required VHDX region this reader does not know")
            if BAT_GUID not in found or METADATA_GUID not in found:
                raise BoxpackError(f"{self.name}: the VHDX region table lacks the BAT or the metadata region")
            return found[BAT_GUID], found[METADATA_GUID]
        raise BoxpackError(f"{self.name}: neither VHDX region table is valid (bad signature or CRC-32C); the file is damaged")

    def _check_log(self) -> None:
        """A log with a valid entry for the current log GUID must be replayed: refuse, naming it (qemu's vhdx_parse_log)."""
        h = self.header
        if not any(h.log_guid):
            return
        if h.log_offset % MIB or h.log_length % MIB or h.log_offset + h.log_length > self.data.size:
            raise BoxpackError(f"{self.name}: its VHDX log ({h.log_length} bytes at byte {h.log_offset}) does not fit in the file")
        for pos in range(h.log_offset, h.log_offset + h.log_length, 4096):
            raw = self.data.pread(pos, 64)
            if raw[:4] != LOG_SIGNATURE:
                continue
            entry = LogEntryHeader.parse(raw)
            if entry.log_guid != h.log_guid or entry.entry_length % 4096 or not 0 < entry.entry_length <= h.log_length:
                continue
            if pos + entry.entry_length <= h.log_offset + h.log_length and _crc_ok(self.data.pread(pos, entry.entry_length)):
                raise BoxpackError(
                    f"{self.name}: its VHDX log (at byte {h.log_offset}) holds changes not yet written to the disk; "
                    "open the disk once in Hyper-V (or qemu-img check -r all) to replay it, then try again"
                )

    def _metadata(self, offset: int, length: int) -> None:
        raw = self.data.pread(offset, METADATA_TABLE_SIZE)
        if len(raw) != METADATA_TABLE_SIZE or raw[:8] != b"metadata":
            raise BoxpackError(f"{self.name}: the VHDX metadata table at byte {offset} is missing")
        head = MetadataTableHeader.parse(raw)
        if head.entry_count > MAX_METADATA_ENTRIES:
            raise BoxpackError(f"{self.name}: the VHDX metadata table claims {head.entry_count} entries")
        items: dict[bytes, bytes] = {}
        for i in range(head.entry_count):
            e = MetadataTableEntry.parse(raw[32 + 32 * i : 64 + 32 * i])
            if e.item_id not in KNOWN_METADATA:
                if e.flags & METADATA_REQUIRED:
                    raise BoxpackError(f"{self.name}: has required VHDX metadata this reader does not know")
                continue
            if e.offset + e.length > length or e.length > MIB:
                raise BoxpackError(f"{self.name}: a VHDX metadata item lies outside the metadata region")
            items[e.item_id] = self.data.pread(offset + e.offset, e.length)
        try:
            params = items[FILE_PARAMETERS_GUID]
            self.size = int.from_bytes(items[VIRTUAL_DISK_SIZE_GUID][:8], "little")
            self.logical_sector_size = int.from_bytes(items[LOGICAL_SECTOR_SIZE_GUID][:4], "little")
        except KeyError:
            raise BoxpackError(f"{self.name}: the VHDX metadata lacks the file parameters, disk size or sector size") from None
        self.block_size = int.from_bytes(params[:4], "little")
        flags = int.from_bytes(params[4:8], "little")
        if flags & PARAMS_HAS_PARENT:
            raise BoxpackError(f"{self.name}: is a differencing VHDX, whose data depends on a parent disk; merge it first")
        if not MIB <= self.block_size <= 256 * MIB or self.block_size & (self.block_size - 1):
            raise BoxpackError(f"{self.name}: VHDX block size {self.block_size} is not a power of two from 1 to 256 MiB")
        if self.logical_sector_size not in (512, 4096):
            raise BoxpackError(f"{self.name}: VHDX logical sector size {self.logical_sector_size} is not 512 or 4096")
        if not 0 < self.size <= MAX_VIRTUAL_SIZE or self.size % self.logical_sector_size:
            raise BoxpackError(f"{self.name}: VHDX virtual size {self.size} is not a whole number of sectors up to 64 TiB")
        self.variant = "fixed" if flags & PARAMS_LEAVE_BLOCKS_ALLOCATED else "dynamic"

    def allocated(self) -> Iterator[tuple[int, int]]:
        """(block index, byte offset) of every payload block that is present; other states read as zeros."""
        ratio = self.chunk_ratio
        for first, table in table_chunks(self.data, self.bat_offset, self.bat_entries, "Q", False, "VHDX BAT"):
            for i, entry in enumerate(table):
                index = first + i
                if index % (ratio + 1) == ratio:  # a sector bitmap entry: only differencing disks use them
                    continue
                state = entry & BAT_STATE_MASK
                block = index - index // (ratio + 1)
                if state == PAYLOAD_FULLY_PRESENT:
                    yield block, (entry >> BAT_OFFSET_SHIFT) * MIB
                elif state == PAYLOAD_PARTIALLY_PRESENT:
                    raise BoxpackError(f"{self.name}: block {block} is partially present, which only a differencing VHDX may be")

    def pieces(self) -> Iterator[tuple[int, bytes]]:
        return block_pieces(self.data, self.allocated(), self.block_size, self.size, self.name)

    def close(self) -> None:
        self.data.close()


def check(data: ByteSource, name: str, threads: int = 2) -> tuple[dict, Findings]:
    """Headers, region table, metadata, log and every BAT entry inside the file."""
    findings = Findings()
    try:
        reader = VhdxReader(data, name)
    except BoxpackError as e:
        findings.add("vhdx-header", "error", str(e))
        return {"format": "VHDX"}, findings
    allocated = 0
    try:
        for block, host in reader.allocated():
            allocated += 1
            if host + min(reader.block_size, reader.size - block * reader.block_size) > data.size:
                findings.add("vhdx-bat", "error", f"{name}: BAT entry for block {block} points past the end of the file")
    except BoxpackError as e:
        findings.add("vhdx-bat", "error", str(e))
    return {"format": reader.format, "virtual_size": reader.size, "block_size": reader.block_size,
            "logical_sector_size": reader.logical_sector_size, "allocated_blocks": allocated, "file_size": data.size}, findings
