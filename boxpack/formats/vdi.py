"""VDI (VirtualBox Disk Image): reader and checker, dynamic ("normal") and fixed images.

References: VirtualBox src/VBox/Storage/VDI.cpp and VDICore.h (header 1.1,
block map markers); qemu block/vdi.c (vdi_open: what it accepts). Structures
are in c_vdi.py.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import BadInput
from ..findings import Findings
from ..disk.bytesource import ByteSource, table_chunks
from ..disk.source import SECTOR
from .base import block_pieces, check_blocks, open_for_check
from .c_vdi import (BLOCK_FREE, BLOCK_ZERO, SIGNATURE, SIGNATURE_BYTES, TYPE_DIFF, TYPE_FIXED, TYPE_NORMAL, TYPE_UNDO,
                    VERSION_1_1, Header)

NAME = "VDI"
SUFFIXES = (".vdi",)
MAX_BLOCK = 256 * 1024 * 1024


def probe(head: bytes, tail: bytes) -> bool:
    return head[64:68] == SIGNATURE_BYTES


class VdiReader:
    """Reads a VDI's blocks through its block map, in guest order; differencing images are refused."""

    def __init__(self, data: ByteSource, name: str) -> None:
        self.data, self.name = data, name
        raw = data.pread(0, Header.sizeof())
        if len(raw) < Header.sizeof() or Header.parse(raw).signature != SIGNATURE:
            raise BadInput(f"{name}: not a VDI image (too short or bad signature)")
        h = Header.parse(raw)
        if h.version != VERSION_1_1:
            raise BadInput(f"{name}: VDI header version {h.version >> 16}.{h.version & 0xFFFF} is not supported (only 1.1, what VirtualBox writes)")
        if h.image_type in (TYPE_DIFF, TYPE_UNDO) or any(h.uuid_parent):
            raise BadInput(f"{name}: is a differencing VDI (a snapshot), whose data depends on its parent; clone it to a full image first (VBoxManage clonemedium)")
        if h.image_type not in (TYPE_NORMAL, TYPE_FIXED):
            raise BadInput(f"{name}: VDI image type {h.image_type} is unknown")
        if h.sector_size != SECTOR:
            raise BadInput(f"{name}: VDI sector size {h.sector_size} is not 512")
        if not SECTOR <= h.block_size <= MAX_BLOCK or h.block_size & (h.block_size - 1) or h.block_extra:
            raise BadInput(f"{name}: VDI block size {h.block_size} (extra {h.block_extra}) is not one qemu or VirtualBox reads")
        if h.blocks * h.block_size < h.disk_size:
            raise BadInput(f"{name}: {h.blocks} blocks of {h.block_size} bytes cannot hold a {h.disk_size}-byte disk")
        self.header = h
        self.size = h.disk_size
        self.block_size = h.block_size
        self.blocks = -(-h.disk_size // h.block_size)
        self.variant = "fixed" if h.image_type == TYPE_FIXED else "dynamic"
        self.format = f"VDI {self.variant}"
        self.data_estimate = min(data.size, self.size)

    def allocated(self) -> Iterator[tuple[int, int]]:
        """(block index, byte offset of its data) of every block the map says is stored."""
        h = self.header
        for first, table in table_chunks(self.data, h.offset_blocks, self.blocks, "I", False, "VDI block map"):
            for i, entry in enumerate(table):
                if entry in (BLOCK_FREE, BLOCK_ZERO):
                    continue
                if entry >= h.blocks:
                    raise BadInput(f"{self.name}: block map entry {first + i} names block {entry}, out of range (the image has {h.blocks})")
                yield first + i, h.offset_data + entry * self.block_size

    def pieces(self) -> Iterator[tuple[int, bytes]]:
        return block_pieces(self.data, self.allocated(), self.block_size, self.size, self.name)

    def close(self) -> None:
        self.data.close()


def check(data: ByteSource, name: str, threads: int = 2) -> tuple[dict, Findings]:
    """The header rules qemu and VirtualBox apply, and every block map entry inside the image and the file."""
    findings = Findings()
    reader = open_for_check(VdiReader, data, name, "vdi-header", findings)
    if reader is None:
        return {"format": "VDI"}, findings
    allocated = check_blocks(reader, data, name, "vdi-block-map", findings)
    return {"format": reader.format, "virtual_size": reader.size, "block_size": reader.block_size,
            "allocated_blocks": allocated, "file_size": data.size}, findings
