"""VHD (Microsoft Virtual Hard Disk 1.0): reader and checker, fixed and dynamic disks.

References: Microsoft "Virtual Hard Disk Image Format Specification" 1.0;
qemu block/vpc.c (vpc_open, get_image_offset). Structures are in c_vhd.py.

The virtual size is the footer's current size. Virtual PC (creator "vpc ")
and qemu's default (creator "qemu") size a disk by its CHS geometry, which can
be a little smaller; Hyper-V ("win "), Disk2vhd ("d2v ") and XenServer use the
current size, and so does boxpack: it never cuts data off, and for qemu's own
images the two agree. Sector bitmaps are not consulted for reads, as in qemu's
get_image_offset(): in a dynamic disk a sector the bitmap leaves out is zero in
the block anyway.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import BadInput
from ..findings import Findings
from ..disk.bytesource import ByteSource, table_chunks
from ..disk.source import SECTOR
from .base import block_pieces, check_blocks, open_for_check
from .c_vhd import (CHECKSUM_OFFSET, DISK_DIFFERENCING, DISK_DYNAMIC, DISK_FIXED, DYNAMIC_COOKIE, FOOTER_COOKIE,
                    FOOTER_SIZE, UNALLOCATED, DynamicHeader, Footer)

NAME = "VHD"
SUFFIXES = (".vhd",)
MAX_BLOCK = 256 * 1024 * 1024


def probe(head: bytes, tail: bytes) -> bool:
    """Dynamic disks carry a footer copy at byte 0; fixed ones only the footer at the end
    (511 bytes long in images made by Virtual PC before 2004)."""
    return head[:8] == FOOTER_COOKIE or tail[-512:-504] == FOOTER_COOKIE or tail[-511:-503] == FOOTER_COOKIE


def checksum(raw: bytes) -> int:
    """The spec's checksum: the one's complement of the byte sum, the checksum field taken as zero."""
    at = CHECKSUM_OFFSET[raw[:8]]
    return ~(sum(raw) - sum(raw[at : at + 4])) & 0xFFFFFFFF


class VhdReader:
    """Reads a fixed or dynamic VHD in guest order; a differencing one is refused by name."""

    def __init__(self, data: ByteSource, name: str) -> None:
        self.data, self.name = data, name
        head = data.pread(0, FOOTER_SIZE)
        if head[:8] == FOOTER_COOKIE:  # dynamic: the copy at the start (qemu falls back to it too)
            raw = head
        else:
            raw = data.pread(data.size - FOOTER_SIZE, FOOTER_SIZE) if data.size >= FOOTER_SIZE else b""
            if raw[:8] != FOOTER_COOKIE and raw[1:9] == FOOTER_COOKIE:  # a 511-byte footer
                raw = raw[1:] + b"\0"
        if len(raw) != FOOTER_SIZE or raw[:8] != FOOTER_COOKIE:
            raise BadInput(f"{name}: not a VHD (no footer)")
        f = Footer.parse(raw)
        if f.checksum != checksum(raw):
            raise BadInput(f"{name}: the VHD footer's checksum is wrong ({f.checksum:#010x}, computed {checksum(raw):#010x}); the file is damaged")
        self.footer = f
        self.size = f.current_size
        self.creator = f.creator_app.decode("latin-1").strip("\0 ")
        if f.disk_type == DISK_DIFFERENCING:
            raise BadInput(f"{name}: is a differencing VHD, whose data depends on a parent disk; merge it first")
        if f.disk_type == DISK_FIXED:
            self.variant = "fixed"
            self.block_size = 0
            if data.size < self.size + FOOTER_SIZE - 1:
                raise BadInput(f"{name}: a fixed VHD of {self.size} bytes, but the file holds only {data.size}; it is cut short")
        elif f.disk_type == DISK_DYNAMIC:
            self.variant = "dynamic"
            self._dynamic_header(f.data_offset)
        else:
            raise BadInput(f"{name}: VHD disk type {f.disk_type} is not fixed (2), dynamic (3) or differencing (4)")
        self.format = f"VHD {self.variant}"
        self.data_estimate = min(data.size, self.size)

    def _dynamic_header(self, offset: int) -> None:
        raw = self.data.pread(offset, 1024) if 0 < offset < self.data.size else b""
        if len(raw) != 1024 or raw[:8] != DYNAMIC_COOKIE:
            raise BadInput(f"{self.name}: the dynamic VHD's header at byte {offset} is missing")
        h = DynamicHeader.parse(raw)
        if h.checksum != checksum(raw):
            raise BadInput(f"{self.name}: the dynamic VHD header's checksum is wrong; the file is damaged")
        if h.block_size < SECTOR or h.block_size % SECTOR or h.block_size > MAX_BLOCK:
            raise BadInput(f"{self.name}: VHD block size {h.block_size} is not a multiple of 512 up to 256 MiB")
        needed = -(-self.size // h.block_size)
        if h.max_table_entries < needed:
            raise BadInput(f"{self.name}: the VHD's BAT has {h.max_table_entries} entries, {needed} needed for {self.size} bytes")
        self.block_size = h.block_size
        self.bat_offset = h.table_offset
        self.blocks = needed
        # Each block starts with its sector bitmap: one bit per sector, padded to whole sectors.
        self.bitmap_bytes = -(-(h.block_size // SECTOR) // (8 * SECTOR)) * SECTOR

    def allocated(self) -> Iterator[tuple[int, int]]:
        """(block index, byte offset of its data) of every allocated block of a dynamic disk."""
        for first, table in table_chunks(self.data, self.bat_offset, self.blocks, "I", True, "VHD block allocation table"):
            for i, sector in enumerate(table):
                if sector != UNALLOCATED:
                    yield first + i, sector * SECTOR + self.bitmap_bytes

    def pieces(self) -> Iterator[tuple[int, bytes]]:
        if self.variant == "fixed":
            step = 4 * 1024 * 1024
            for off in range(0, self.size, step):
                yield off, self.data.pread(off, min(step, self.size - off))
            return
        yield from block_pieces(self.data, self.allocated(), self.block_size, self.size, self.name)

    def close(self) -> None:
        self.data.close()


def check(data: ByteSource, name: str, threads: int = 2) -> tuple[dict, Findings]:
    """The footer and header checksums, and every BAT entry inside the file."""
    findings = Findings()
    reader = open_for_check(VhdReader, data, name, "vhd-header", findings)
    if reader is None:
        return {"format": "VHD"}, findings
    facts = {"format": reader.format, "virtual_size": reader.size, "creator": reader.creator, "file_size": data.size}
    if reader.variant == "dynamic":
        facts.update(block_size=reader.block_size, allocated_blocks=check_blocks(reader, data, name, "vhd-bat", findings))
    return facts, findings
