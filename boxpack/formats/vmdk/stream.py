"""The streamOptimized writer (VirtualBox's export layout, what `vagrant up` imports): grains compressed
as the scan feeds them, into a spool file, then the tables; its size is known once the spool is complete."""

from __future__ import annotations

import functools
import tempfile
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from ...errors import BadInput, InternalError
from ...ordered import OrderedPool
from ..c_vmdk import GD_AT_END, MARKER_EOS, MARKER_FOOTER, MARKER_GD, MARKER_GT, SECTOR, GrainMarker
from .common import (DESCRIPTOR_OFFSET, DESCRIPTOR_SECTORS, GRAIN_SECTORS, GT_COVERAGE, GT_SECTORS, GTES_PER_GT,
                     OVERHEAD, capacity_sectors, descriptor, header, le32, marker, sector_pad)


class VmdkSpool:
    """Builds a streamOptimized VMDK from the disk's data clusters, in order, into a spool file.

    feed() takes each non-zero 64 KiB cluster in ascending order (the scan's
    output); grains are compressed on a thread pool while the scan reads on.
    The VMDK's size is known only once every grain is compressed, and a tar
    header needs it first: so the VMDK goes to an anonymous temporary file
    (no name, removed by the kernel even on a crash) and is copied into the
    box after. Memory holds one GT and the GD: 2 KiB + 4 bytes per 32 MiB.
    """

    def __init__(
        self,
        file_name: str,
        compress: Callable[[bytes], bytes | bytearray],
        threads: int,
        spool_dir: Path | None,
    ) -> None:
        self.gd = array("I")  # grows with the data: a compressed disk's size is known only at its end
        self.gt = array("I", bytes(4 * GTES_PER_GT))
        self.gt_index = -1
        try:
            self.file: BinaryIO = tempfile.TemporaryFile(dir=spool_dir, prefix=".boxpack-vmdk-")
        except OSError as e:
            raise BadInput(f"{spool_dir or tempfile.gettempdir()}: cannot create the VMDK spool file: {e.strerror}") from None
        self.sector = 0
        self.compress = compress  # data -> zlib stream
        self.pool: OrderedPool[int, bytes] = OrderedPool(threads, 4 * threads, "vmdk")
        self.last_lba = -1
        self.file_name = file_name
        # The descriptor carries IDs derived from the whole disk: finish() writes it.
        self._write(bytes(SECTOR + DESCRIPTOR_SECTORS * SECTOR))  # header and descriptor, written by finish()
        self._write(bytes((OVERHEAD - self.sector) * SECTOR))

    def _write(self, data: bytes) -> None:
        """Whole sectors to the spool; a full file system is the user's to fix, said in one line."""
        try:
            self.file.write(data)
        except OSError as e:
            raise BadInput(f"cannot write the VMDK spool file: {e.strerror}") from None
        self.sector += len(data) // SECTOR

    def feed(self, cluster: int, data: bytes) -> None:
        """Queue one grain (64 KiB of disk data at cluster index `cluster`) for compression."""
        for done in self.pool.put(cluster, functools.partial(self.compress, data)):
            self._store(*done)

    def _store(self, cluster: int, payload: bytes) -> None:
        lba = cluster * GRAIN_SECTORS
        if lba <= self.last_lba:  # VirtualBox's sequential reader rejects anything else
            raise InternalError(f"internal error: VMDK grains out of order ({lba} after {self.last_lba})")
        self.last_lba = lba
        gt_index, slot = divmod(cluster, GTES_PER_GT)
        if gt_index != self.gt_index:
            self._flush_gt()
            self.gt_index = gt_index
        self.gt[slot] = self.sector
        record = GrainMarker.build(dict(lba=lba, size=len(payload))) + payload
        self._write(record + bytes(sector_pad(len(record))))

    def _flush_gt(self) -> None:
        if self.gt_index < 0:
            return
        self._write(marker(MARKER_GT, GT_SECTORS))
        self.gd.extend([0] * (self.gt_index + 1 - len(self.gd)))
        self.gd[self.gt_index] = self.sector
        self._write(le32(self.gt))
        self.gt = array("I", bytes(4 * GTES_PER_GT))

    def finish(self, disk_size: int, disk_id: bytes) -> tuple[BinaryIO, int]:
        """Write the tail (GTs, GD, footer, EOS), the header and the descriptor; return the spool rewound and its size."""
        for done in self.pool.drain():
            self._store(*done)
        self.pool.close()
        self._flush_gt()
        capacity = capacity_sectors(disk_size)
        gt_count = -(-capacity // GT_COVERAGE)
        if len(self.gd) > gt_count:
            raise InternalError(f"internal error: VMDK grains past the disk's end ({len(self.gd)} tables for {gt_count})")
        self.gd.extend([0] * (gt_count - len(self.gd)))
        gd_bytes = le32(self.gd)
        gd_bytes += bytes(sector_pad(len(gd_bytes)))
        self._write(marker(MARKER_GD, len(gd_bytes) // SECTOR))
        gd_offset = self.sector
        self._write(gd_bytes)
        self._write(marker(MARKER_FOOTER, 1))
        self._write(header(capacity, gd_offset))
        self._write(marker(MARKER_EOS, 0))
        try:
            size = self.file.tell()
            self.file.seek(0)
            self.file.write(header(capacity, GD_AT_END))
            self.file.seek(DESCRIPTOR_OFFSET * SECTOR)
            self.file.write(descriptor(capacity, self.file_name, disk_id, disk_size // SECTOR))
            self.file.flush()
            self.file.seek(0)
        except OSError as e:
            raise BadInput(f"cannot write the VMDK spool file: {e.strerror}") from None
        return self.file, size

    def close(self) -> None:
        self.pool.close()
        try:
            self.file.close()
        except OSError:
            pass  # the last buffered write failed too (a full file system, already reported): the file is gone


def read_chunks(f: BinaryIO, size: int, chunk: int = 1024 * 1024) -> Iterator[bytes]:
    """The spool's bytes, in chunks, for the tar member."""
    left = size
    while left:
        data = f.read(min(chunk, left))
        if not data:
            raise OSError("VMDK spool file ended early")
        left -= len(data)
        yield data
