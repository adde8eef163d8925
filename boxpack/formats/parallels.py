"""Parallels expanding disk (.hds): writer, reader and checker.

References: qemu docs/interop/parallels.rst and block/parallels.c
(parallels_open, parallels_co_check). Structures are in c_parallels.py.

A header, the BAT (one 32-bit entry per cluster, 0 for a cluster that reads
as zeros), then the data clusters. Parallels Desktop writes the
`WithoutFreeSpace` variant, whose entries are sector offsets, so a file stops
at 2 TiB and a disk at 2^32 sectors; qemu-img writes `WithouFreSpacExt`, whose
entries count clusters. Both are read; the writer takes Parallels' own
variant whenever the disk and the file fit it (AlmaLinux rewrites qemu-img's
header into it for the same reason: tools/raw-to-vagrant-parallels.sh).
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterable, Iterator

from ..disk.bytesource import ByteSource, table_chunks
from ..disk.pieces import Piece
from ..disk.source import CLUSTER, SECTOR
from ..errors import BadInput
from ..findings import Findings
from ..member import Chunk
from .base import block_pieces, check_blocks, open_for_check, stored_blocks
from .c_parallels import CLOSED, HEADER_SIZE, IN_USE, MAGIC, MAGIC_EXT, VERSION, Header

NAME = "Parallels"
SUFFIXES = (".hds", ".hdd")
MAX_CLUSTER = 256 * 1024 * 1024
MIB = 1024 * 1024


def probe(head: bytes, tail: bytes) -> bool:
    return head[:16] in (MAGIC, MAGIC_EXT)


class ParallelsReader:
    """Reads an expanding Parallels image's clusters through its BAT, in guest order."""

    def __init__(self, data: ByteSource, name: str) -> None:
        self.data, self.name = data, name
        raw = data.pread(0, HEADER_SIZE)
        if len(raw) != HEADER_SIZE or not probe(raw, b""):
            raise BadInput(f"{name}: not a Parallels expanding image (no WithoutFreeSpace signature)")
        h = self.header = Header.parse(raw)
        self.ext = h.magic == MAGIC_EXT
        if h.version != VERSION:
            raise BadInput(f"{name}: Parallels image version {h.version} is not supported (only 2)")
        if not 0 < h.tracks * SECTOR <= MAX_CLUSTER:
            raise BadInput(f"{name}: Parallels cluster size of {h.tracks} sectors is not 1 to {MAX_CLUSTER // SECTOR}")
        self.block_size = h.tracks * SECTOR
        # parallels.rst: in a WithoutFreeSpace image only the low 4 bytes of nb_sectors count
        self.size = (h.nb_sectors if self.ext else h.nb_sectors & 0xFFFFFFFF) * SECTOR
        if self.size <= 0:
            raise BadInput(f"{name}: the Parallels image's disk size is 0")
        needed = -(-self.size // self.block_size)
        if h.bat_entries < needed:
            raise BadInput(f"{name}: the Parallels BAT has {h.bat_entries} entries, {needed} needed for {self.size} bytes")
        self.blocks = needed  # entries past the disk's end are never read (qemu's parallels_open takes the same count)
        bat_end = HEADER_SIZE + 4 * h.bat_entries
        if h.data_off:
            self.data_offset = h.data_off * SECTOR
        elif not self.ext:  # parallels.rst: old images leave it 0 and start the data after the BAT
            self.data_offset = -(-bat_end // SECTOR) * SECTOR
        else:
            raise BadInput(f"{name}: a WithouFreSpacExt image must give its data offset, and it is 0")
        if self.data_offset < bat_end:
            raise BadInput(f"{name}: the Parallels data area (byte {self.data_offset}) starts inside the BAT")
        self.unit = self.block_size if self.ext else SECTOR  # what one BAT entry counts
        self.closed = h.in_use != IN_USE
        self.variant = "WithouFreSpacExt" if self.ext else "WithoutFreeSpace"
        self.format = f"Parallels expanding ({self.variant})"
        self.data_estimate = min(data.size, self.size)

    def allocated(self) -> Iterator[tuple[int, int]]:
        """(cluster index, byte offset of its data) of every allocated cluster."""
        for first, table in table_chunks(self.data, HEADER_SIZE, self.blocks, "I", False, "Parallels BAT"):
            for i, entry in enumerate(table):
                if entry:
                    yield first + i, entry * self.unit

    def pieces(self) -> Iterator[tuple[int, bytes]]:
        return block_pieces(self.data, self.allocated(), self.block_size, self.size, self.name)

    def close(self) -> None:
        self.data.close()


class SplitReader:
    """A split Parallels disk: each storage's expanding image holds the sectors from its Start, and the disk
    is them one after another (prl-xml.rst; dissect.hypervisor's disk/hdd.py, StorageStream)."""

    def __init__(self, parts: list[tuple[int, int, ParallelsReader]], name: str) -> None:
        self.parts, self.name = parts, name
        for start, end, piece in parts:
            if piece.size < end - start:
                raise BadInput(f"{piece.name}: holds {piece.size} bytes, but its storage is {end - start}")
        self.size = parts[-1][1]
        self.format = f"Parallels expanding ({parts[0][2].variant}), split in {len(parts)}"
        self.data_estimate = sum(min(piece.data_estimate, end - start) for start, end, piece in parts)

    def pieces(self) -> Iterator[tuple[int, bytes]]:
        for start, end, piece in self.parts:
            for offset, data in piece.pieces():
                if offset >= end - start:
                    break
                yield start + offset, data[: end - start - offset]

    def close(self) -> None:
        for _, _, piece in self.parts:
            piece.close()


def check(data: ByteSource, name: str, threads: int = 2) -> tuple[dict, Findings]:
    """The header rules, and the BAT as parallels.rst states them: every offset inside the file, in the data
    area, cluster-aligned from its start, and used once (qemu's parallels_co_check)."""
    findings = Findings()
    reader = open_for_check(ParallelsReader, data, name, "parallels-header", findings)
    if reader is None:
        return {"format": NAME}, findings
    h = reader.header
    if not reader.closed:
        findings.add("parallels-in-use", "warning", f"{name}: marked in use (not closed cleanly); the BAT may miss "
                     "clusters written last (qemu-img check -r all -f parallels repairs it)")
    if reader.ext and h.data_off * SECTOR % reader.block_size:
        findings.add("parallels-header", "error", f"{name}: a WithouFreSpacExt image's data offset must be cluster-aligned")

    def in_data_area(index: int, host: int) -> str | None:
        if host < reader.data_offset or (host - reader.data_offset) % reader.block_size:
            return f"cluster {index} at byte {host} is not a cluster of the data area"
        return None

    allocated = check_blocks(reader, data, name, "parallels-bat", findings, in_data_area)
    return {"format": reader.format, "virtual_size": reader.size, "cluster_size": reader.block_size,
            "heads": h.heads, "cylinders": h.cylinders, "allocated_blocks": allocated, "file_size": data.size}, findings


# --- writing -------------------------------------------------------------------------------

CLUSTER_SECTORS = 2048  # 1 MiB, the default of Parallels Desktop and qemu-img
HEADS, SECTORS_PER_TRACK = 16, 32  # the geometry of Parallels-made descriptors (heads x sectors x cylinders = size)
GEOMETRY_UNIT = HEADS * SECTORS_PER_TRACK * SECTOR  # 256 KiB
MAX_VIRTUAL_SIZE = 0xFFFFFFFF * CLUSTER_SECTORS * SECTOR  # BAT entries are 32 bits, counting 1 MiB clusters


def padded_size(size: int) -> int:
    """The disk size a Parallels disk has: a whole number of 16 x 32 cylinders, as DiskDescriptor.xml's
    geometry must multiply to it (prl-xml.rst); the guest sees the padding as zeros at the end."""
    return -(-size // GEOMETRY_UNIT) * GEOMETRY_UNIT


class ParallelsLayout:
    """An expanding image laid out from the data map: header, BAT, then each 1 MiB cluster that holds data,
    in guest order. The size is known before a byte is written."""

    def __init__(self, disk_size: int, clusters: array) -> None:
        if disk_size > MAX_VIRTUAL_SIZE:
            raise BadInput(f"a Parallels disk holds at most {MAX_VIRTUAL_SIZE // 2**40} TiB")
        self.size = padded_size(disk_size)
        self.sectors = self.size // SECTOR
        self.block_size = CLUSTER_SECTORS * SECTOR
        self.per_block = self.block_size // CLUSTER
        self.clusters = clusters
        self.blocks = sorted({c // self.per_block for c in clusters})
        self.bat_entries = -(-self.sectors // CLUSTER_SECTORS)
        self.data_offset = -(-(HEADER_SIZE + 4 * self.bat_entries) // self.block_size) * self.block_size
        self.image_size = self.data_offset + len(self.blocks) * self.block_size
        self.ext = self.sectors > 0xFFFFFFFF or self.image_size // SECTOR > 0xFFFFFFFF
        self.cylinders = self.sectors // (HEADS * SECTORS_PER_TRACK)

    def _header(self) -> bytes:
        return struct.pack("<16s5IQIIIQ", MAGIC_EXT if self.ext else MAGIC, VERSION, HEADS, min(self.cylinders, 0xFFFFFFFF),
                           CLUSTER_SECTORS, self.bat_entries, self.sectors, CLOSED, self.data_offset // SECTOR, 0, 0)

    def _bat(self) -> Iterator[bytes]:
        """Header and BAT in 1 MiB pieces, up to the data area."""
        unit = self.block_size if self.ext else SECTOR
        stored = iter((b, (self.data_offset + rank * self.block_size) // unit) for rank, b in enumerate(self.blocks))
        entry = next(stored, None)
        per_piece = MIB // 4
        head = self._header()
        for first in range(0, self.data_offset // 4, per_piece):  # in entries of the file, header included
            piece = array("I", bytes(MIB))
            while entry is not None and HEADER_SIZE // 4 + entry[0] < first + per_piece:
                piece[HEADER_SIZE // 4 + entry[0] - first] = entry[1]
                entry = next(stored, None)
            if sys.byteorder == "big":
                piece.byteswap()
            raw = piece.tobytes()
            yield head + raw[HEADER_SIZE:] if first == 0 else raw

    def stream(self, pieces: Iterable[Piece]) -> Iterator[Chunk]:
        """The whole image, in order: header and BAT, then each stored cluster, from the disk's pieces."""
        yield from self._bat()
        yield from stored_blocks(pieces, self.per_block)
