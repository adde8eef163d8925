"""The monolithicSparse writer (VMware's hosted sparse extent, what a VM runs from), laid out from the data
map before a byte is written, then streamed."""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator

from ...member import Chunk
from ...disk.pieces import Piece
from ..c_vmdk import SECTOR
from .common import (DESCRIPTOR_OFFSET, DESCRIPTOR_SECTORS, GRAIN_SECTORS, GT_COVERAGE, GT_SECTORS, GTES_PER_GT,
                     descriptor, header, le32)

EMPTY_TABLES = 512  # grain tables of 2 KiB: 1 MiB
_EMPTY_TABLES = bytes(EMPTY_TABLES * GT_SECTORS * SECTOR)


class SparseLayout:
    """A monolithicSparse VMDK (VMware's hosted sparse extent, what a VM runs from), laid out from the data map.

    The layout is qemu's and VMware's (vmdk_init_extent in qemu block/vmdk.c):
    header, descriptor, the redundant grain directory and all its grain tables,
    the primary directory and tables, then the grains in guest order from the
    first grain boundary. Every grain table is allocated, as VMware allocates
    them. The exact size is known before a byte is written, so the VMDK
    streams into the tar like the qcow2 image.
    """

    def __init__(self, disk_size: int, clusters: array, file_name: str, disk_id: bytes, hardware_version: str) -> None:
        self.capacity = disk_size // SECTOR
        self.clusters = clusters
        self.gt_count = -(-self.capacity // GT_COVERAGE)
        self.gd_sectors = -(-self.gt_count * 4 // SECTOR)
        self.tables_sectors = self.gd_sectors + self.gt_count * GT_SECTORS
        self.rgd_offset = DESCRIPTOR_OFFSET + DESCRIPTOR_SECTORS
        self.gd_offset = self.rgd_offset + self.tables_sectors
        self.overhead = -(-(self.gd_offset + self.tables_sectors) // GRAIN_SECTORS) * GRAIN_SECTORS
        self.image_size = (self.overhead + len(clusters) * GRAIN_SECTORS) * SECTOR
        self.descriptor = descriptor(self.capacity, file_name, disk_id, self.capacity, "monolithicSparse", hardware_version)

    def _tables(self, gd_at: int) -> Iterator[bytes]:
        """A grain directory at sector gd_at, then every grain table after it, in order."""
        first_gt = gd_at + self.gd_sectors
        gd = array("I", (first_gt + i * GT_SECTORS for i in range(self.gt_count)))
        yield le32(gd) + bytes(self.gd_sectors * SECTOR - 4 * self.gt_count)
        ranks = iter(enumerate(self.clusters))
        pending = next(ranks, None)
        t = 0
        while t < self.gt_count:
            empty = (pending[1] // GTES_PER_GT if pending is not None else self.gt_count) - t
            if empty > 0:  # tables of no grain, up to 1 MiB at a time: an empty 64 TiB disk has 4 GiB of them
                n = min(empty, EMPTY_TABLES)
                yield _EMPTY_TABLES[: n * GT_SECTORS * SECTOR]
                t += n
                continue
            gt = array("I", bytes(4 * GTES_PER_GT))
            while pending is not None and pending[1] // GTES_PER_GT == t:
                rank, cluster = pending
                gt[cluster % GTES_PER_GT] = self.overhead + rank * GRAIN_SECTORS
                pending = next(ranks, None)
            yield le32(gt)
            t += 1

    def stream(self, pieces: Iterable[Piece]) -> Iterator[Chunk]:
        """The whole VMDK, in order: metadata, then the grains, from the disk's pieces."""
        yield header(self.capacity, self.gd_offset, sparse=True, rgd_offset=self.rgd_offset, overhead=self.overhead)
        yield self.descriptor
        yield from self._tables(self.rgd_offset)
        yield from self._tables(self.gd_offset)
        yield bytes((self.overhead - self.gd_offset - self.tables_sectors) * SECTOR)
        yield from (data for _, _, data in pieces)

