"""VHDX (Hyper-V): writer (dynamic), reader and checker (fixed and dynamic).

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

import struct
import sys
import uuid
from array import array
from collections.abc import Iterable, Iterator

import crc32c

from ..errors import BadInput
from ..findings import Findings
from ..member import Chunk
from ..disk.bytesource import ByteSource, table_chunks
from ..disk.source import CLUSTER
from ..disk.pieces import Piece
from .base import block_pieces, check_blocks, open_for_check, stored_blocks
from .c_vhdx import (BAT_GUID, BAT_OFFSET_SHIFT, BAT_STATE_MASK, FILE_PARAMETERS_GUID, FILE_SIGNATURE, HEADER_OFFSETS,
                     HEADER_SIZE, KNOWN_METADATA, LOG_SIGNATURE, LOGICAL_SECTOR_SIZE_GUID, MAX_METADATA_ENTRIES,
                     MAX_REGION_ENTRIES, MAX_SECTORS_PER_BLOCK, METADATA_GUID, METADATA_REQUIRED, METADATA_TABLE_SIZE,
                     MIB, PAGE83_GUID, PARAMS_HAS_PARENT, PARAMS_LEAVE_BLOCKS_ALLOCATED, PAYLOAD_FULLY_PRESENT,
                     PAYLOAD_PARTIALLY_PRESENT, PHYSICAL_SECTOR_SIZE_GUID, REGION_REQUIRED, REGION_TABLE_OFFSETS,
                     REGION_TABLE_SIZE, VIRTUAL_DISK_SIZE_GUID, Header, LogEntryHeader, MetadataTableEntry,
                     MetadataTableHeader, RegionTableEntry, RegionTableHeader)

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
            raise BadInput(f"{name}: not a VHDX (no vhdxfile signature)")
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
            raise BadInput(f"{name}: the BAT region ({bat_length} bytes) is too small for {self.bat_entries} entries")
        self.format = f"VHDX {self.variant}"
        self.data_estimate = min(data.size, self.size)

    def _current_header(self):
        valid = []
        for offset in HEADER_OFFSETS:
            raw = self.data.pread(offset, HEADER_SIZE)
            if len(raw) == HEADER_SIZE and raw[:4] == b"head" and _crc_ok(raw):
                valid.append(Header.parse(raw))
        if not valid:
            raise BadInput(f"{self.name}: neither VHDX header is valid (bad signature or CRC-32C); the file is damaged")
        h = max(valid, key=lambda x: x.sequence_number)
        if h.version != 1:
            raise BadInput(f"{self.name}: VHDX version {h.version} is not supported (only 1)")
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
                        raise BadInput(f"{self.name}: a VHDX region at byte {e.file_offset} ({e.length} bytes) is misaligned or past the end of the file")
                    found[e.guid] = (e.file_offset, e.length)
                elif e.flags & REGION_REQUIRED:
                    raise BadInput(f"{self.name}: has a required VHDX region this reader does not know")
            if BAT_GUID not in found or METADATA_GUID not in found:
                raise BadInput(f"{self.name}: the VHDX region table lacks the BAT or the metadata region")
            return found[BAT_GUID], found[METADATA_GUID]
        raise BadInput(f"{self.name}: neither VHDX region table is valid (bad signature or CRC-32C); the file is damaged")

    def _check_log(self) -> None:
        """A log with a valid entry for the current log GUID must be replayed: refuse, naming it (qemu's vhdx_parse_log)."""
        h = self.header
        if not any(h.log_guid):
            return
        if h.log_offset % MIB or h.log_length % MIB or h.log_offset + h.log_length > self.data.size:
            raise BadInput(f"{self.name}: its VHDX log ({h.log_length} bytes at byte {h.log_offset}) does not fit in the file")
        for pos in range(h.log_offset, h.log_offset + h.log_length, 4096):
            raw = self.data.pread(pos, 64)
            if raw[:4] != LOG_SIGNATURE:
                continue
            entry = LogEntryHeader.parse(raw)
            if entry.log_guid != h.log_guid or entry.entry_length % 4096 or not 0 < entry.entry_length <= h.log_length:
                continue
            if pos + entry.entry_length <= h.log_offset + h.log_length and _crc_ok(self.data.pread(pos, entry.entry_length)):
                raise BadInput(
                    f"{self.name}: its VHDX log (at byte {h.log_offset}) holds changes not yet written to the disk; "
                    "open the disk once in Hyper-V (or qemu-img check -r all) to replay it, then try again"
                )

    def _metadata(self, offset: int, length: int) -> None:
        raw = self.data.pread(offset, METADATA_TABLE_SIZE)
        if len(raw) != METADATA_TABLE_SIZE or raw[:8] != b"metadata":
            raise BadInput(f"{self.name}: the VHDX metadata table at byte {offset} is missing")
        head = MetadataTableHeader.parse(raw)
        if head.entry_count > MAX_METADATA_ENTRIES:
            raise BadInput(f"{self.name}: the VHDX metadata table claims {head.entry_count} entries")
        items: dict[bytes, bytes] = {}
        for i in range(head.entry_count):
            e = MetadataTableEntry.parse(raw[32 + 32 * i : 64 + 32 * i])
            if e.item_id not in KNOWN_METADATA:
                if e.flags & METADATA_REQUIRED:
                    raise BadInput(f"{self.name}: has required VHDX metadata this reader does not know")
                continue
            if e.offset + e.length > length or e.length > MIB:
                raise BadInput(f"{self.name}: a VHDX metadata item lies outside the metadata region")
            items[e.item_id] = self.data.pread(offset + e.offset, e.length)
        try:
            params = items[FILE_PARAMETERS_GUID]
            self.size = int.from_bytes(items[VIRTUAL_DISK_SIZE_GUID][:8], "little")
            self.logical_sector_size = int.from_bytes(items[LOGICAL_SECTOR_SIZE_GUID][:4], "little")
        except KeyError:
            raise BadInput(f"{self.name}: the VHDX metadata lacks the file parameters, disk size or sector size") from None
        self.block_size = int.from_bytes(params[:4], "little")
        flags = int.from_bytes(params[4:8], "little")
        if flags & PARAMS_HAS_PARENT:
            raise BadInput(f"{self.name}: is a differencing VHDX, whose data depends on a parent disk; merge it first")
        if not MIB <= self.block_size <= 256 * MIB or self.block_size & (self.block_size - 1):
            raise BadInput(f"{self.name}: VHDX block size {self.block_size} is not a power of two from 1 to 256 MiB")
        if self.logical_sector_size not in (512, 4096):
            raise BadInput(f"{self.name}: VHDX logical sector size {self.logical_sector_size} is not 512 or 4096")
        if not 0 < self.size <= MAX_VIRTUAL_SIZE or self.size % self.logical_sector_size:
            raise BadInput(f"{self.name}: VHDX virtual size {self.size} is not a whole number of sectors up to 64 TiB")
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
                    raise BadInput(f"{self.name}: block {block} is partially present, which only a differencing VHDX may be")

    def pieces(self) -> Iterator[tuple[int, bytes]]:
        return block_pieces(self.data, self.allocated(), self.block_size, self.size, self.name)

    def close(self) -> None:
        self.data.close()


# --- writing -------------------------------------------------------------------------------

DEFAULT_BLOCK = MIB  # Microsoft's recommendation for Linux guests
LOG_OFFSET, LOG_LENGTH = MIB, MIB
METADATA_OFFSET, METADATA_LENGTH = 2 * MIB, MIB
BAT_OFFSET = 3 * MIB
METADATA_REQUIRED_DISK = 6  # IsVirtualDisk | IsRequired
CREATOR = "boxpack"


class VhdxLayout:
    """A dynamic VHDX laid out from the data map: the size is known before a byte is written.

    File identifier, two headers, two region tables in the first MiB; an empty
    log (1 MiB: Hyper-V requires one; its GUID is zero, so there is nothing to
    replay); metadata (block size, virtual size, 512-byte logical and 4096-byte
    physical sectors, page 83 ID from the disk's content); the BAT with a
    sector-bitmap entry after every chunk_ratio payload entries; then each
    block that holds data, 1 MiB aligned, in guest order. Absent blocks are
    NOT_PRESENT and read as zeros.
    """

    def __init__(self, disk_size: int, clusters: array, disk_id: bytes, block_size: int = DEFAULT_BLOCK) -> None:
        if not MIB <= block_size <= 256 * MIB or block_size & (block_size - 1):
            raise BadInput(f"VHDX block size {block_size} is not a power of two from 1 to 256 MiB")
        self.size = disk_size
        self.block_size = block_size
        self.clusters = clusters
        self.disk_id = disk_id
        self.per_block = block_size // CLUSTER
        self.blocks = sorted({c // self.per_block for c in clusters})
        self.chunk_ratio = MAX_SECTORS_PER_BLOCK * 512 // block_size
        count = -(-disk_size // block_size)
        self.bat_entries = count + (count - 1) // self.chunk_ratio if count else 0
        self.bat_length = max(MIB, -(-self.bat_entries * 8 // MIB) * MIB)
        self.data_offset = BAT_OFFSET + self.bat_length
        self.image_size = self.data_offset + len(self.blocks) * block_size

    def _guid(self, n: int) -> bytes:
        return uuid.UUID(bytes=self.disk_id[n : n + 16]).bytes_le

    def _header(self, sequence: int) -> bytes:
        raw = bytearray(HEADER_SIZE)
        struct.pack_into("<4sIQ16s16s16sHHIQ", raw, 0, b"head", 0, sequence, self._guid(0), self._guid(8), bytes(16),
                         0, 1, LOG_LENGTH, LOG_OFFSET)
        struct.pack_into("<I", raw, 4, crc32c.crc32c(bytes(raw)))
        return bytes(raw) + bytes(64 * 1024 - HEADER_SIZE)

    def _region_table(self) -> bytes:
        raw = bytearray(REGION_TABLE_SIZE)
        struct.pack_into("<4sIII", raw, 0, b"regi", 0, 2, 0)
        struct.pack_into("<16sQII", raw, 16, BAT_GUID, BAT_OFFSET, self.bat_length, REGION_REQUIRED)
        struct.pack_into("<16sQII", raw, 48, METADATA_GUID, METADATA_OFFSET, METADATA_LENGTH, REGION_REQUIRED)
        struct.pack_into("<I", raw, 4, crc32c.crc32c(bytes(raw)))
        return bytes(raw)

    def _metadata(self) -> bytes:
        items = [
            (FILE_PARAMETERS_GUID, struct.pack("<II", self.block_size, 0), METADATA_REQUIRED),
            (VIRTUAL_DISK_SIZE_GUID, struct.pack("<Q", self.size), METADATA_REQUIRED_DISK),
            (PAGE83_GUID, self._guid(16), METADATA_REQUIRED_DISK),
            (LOGICAL_SECTOR_SIZE_GUID, struct.pack("<I", 512), METADATA_REQUIRED_DISK),
            (PHYSICAL_SECTOR_SIZE_GUID, struct.pack("<I", 4096), METADATA_REQUIRED_DISK),
        ]
        raw = bytearray(METADATA_LENGTH)
        struct.pack_into("<8sHH", raw, 0, b"metadata", 0, len(items))
        offset = METADATA_TABLE_SIZE  # items start after the 64 KiB table, as Hyper-V and qemu write them
        for i, (guid, value, flags) in enumerate(items):
            struct.pack_into("<16sIIII", raw, 32 + 32 * i, guid, offset, len(value), flags, 0)
            raw[offset : offset + len(value)] = value
            offset += len(value)
        return bytes(raw)

    def _bat(self) -> Iterator[bytes]:
        """The BAT in 1 MiB pieces: FULLY_PRESENT entries for the stored blocks, NOT_PRESENT (zero) elsewhere,
        sector-bitmap entries included (a dynamic disk has no bitmaps)."""
        first_mib = self.data_offset // MIB
        stored = iter((b + b // self.chunk_ratio, first_mib + rank * (self.block_size // MIB)) for rank, b in enumerate(self.blocks))
        entry = next(stored, None)
        per_piece = MIB // 8
        for first in range(0, self.bat_length // 8, per_piece):
            piece = array("Q", bytes(MIB))
            while entry is not None and entry[0] < first + per_piece:
                piece[entry[0] - first] = (entry[1] << BAT_OFFSET_SHIFT) | PAYLOAD_FULLY_PRESENT
                entry = next(stored, None)
            if sys.byteorder == "big":
                piece.byteswap()
            yield piece.tobytes()

    def stream(self, pieces: Iterable[Piece]) -> Iterator[Chunk]:
        """The whole VHDX, in order: metadata, then each stored block, from the disk's pieces."""
        creator = b"vhdxfile" + CREATOR.encode("utf-16-le")
        yield creator + bytes(64 * 1024 - len(creator))
        yield self._header(1)
        yield self._header(2)
        yield self._region_table()
        yield self._region_table()
        yield bytes(LOG_OFFSET - 320 * 1024)
        yield bytes(LOG_LENGTH)
        yield self._metadata()
        yield from self._bat()
        yield from stored_blocks(pieces, self.per_block)

def check(data: ByteSource, name: str, threads: int = 2) -> tuple[dict, Findings]:
    """Headers, region table, metadata, log and every BAT entry inside the file."""
    findings = Findings()
    reader = open_for_check(VhdxReader, data, name, "vhdx-header", findings)
    if reader is None:
        return {"format": "VHDX"}, findings
    allocated = check_blocks(reader, data, name, "vhdx-bat", findings)
    return {"format": reader.format, "virtual_size": reader.size, "block_size": reader.block_size,
            "logical_sector_size": reader.logical_sector_size, "allocated_blocks": allocated, "file_size": data.size}, findings
