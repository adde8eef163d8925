"""The one interface every writer reads a disk through, whatever its format or container.

A source offers its virtual size and scan(): the 64 KiB clusters that hold a
non-zero byte, in ascending order, read sequentially. That is all the writers
need (the data map from one scan, the data from the same or a second scan), so
a disk inside a .tar.gz box is read straight from the archive.

Raw disks (formats/raw.py) find their holes with SEEK_DATA/SEEK_HOLE. Image
formats (formats/qcow2.py, formats/vmdk/) give a Reader whose allocated
units ImageSource cuts into 64 KiB clusters (dropping all-zero ones), with
compressed units inflated on a thread pool, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol, Self

from ..errors import BadInput
from ..ordered import in_order

SECTOR = 512
CLUSTER = 64 * 1024
ZERO_CLUSTER = bytes(CLUSTER)

Progress = Callable[[int], None] | None


class Source(Protocol):
    """A disk to pack: RawDisk or ImageSource."""

    path: Path
    file_size: int
    format: str
    architecture: str | None  # from a box's metadata.json
    rereadable: bool  # a second scan is only a read of the file (a raw disk), not a second decompression

    @property
    def size(self) -> int:
        """The virtual size in bytes, a multiple of 512."""
        ...

    @property
    def padded(self) -> bool: ...

    def scan(self, progress: Progress = None) -> Iterator[tuple[int, bytes | memoryview]]: ...

    def read(self, offset: int, length: int) -> bytes: ...

    def progress_total(self) -> int: ...

    def other_disks(self) -> list[Source]:
        """After the first scan: a box's disks after its first, in order (each opened); [] for anything else."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


class Reader(Protocol):
    """A disk image format's reader (formats.qcow2.Qcow2Reader, formats.vmdk.VmdkReader, ...)."""

    size: int  # virtual size in bytes
    format: str  # e.g. "qcow2 v3", "vmdk streamOptimized"
    data_estimate: int  # bytes of data, for progress

    def pieces(self) -> Iterator[tuple[int, "bytes | Callable[[], bytes]"]]:
        """(guest byte offset, data or a callable that inflates it), ascending."""
        ...

    def close(self) -> None: ...


def read_head(head: bytes, offset: int, length: int) -> bytes:
    """A read of a streamed disk after its scan: the first 64 KiB (the partition table) are kept, the rest
    reads as zeros."""
    return (head[offset : offset + length] if offset < CLUSTER else b"").ljust(length, b"\0")


def regrain(pieces: Iterable[tuple[int, bytes]], size: int, name: str) -> Iterator[tuple[int, bytes]]:
    """Cut ascending (byte offset, data) pieces of any size into 64 KiB clusters, dropping zero ones."""
    cur, buf, last_end = -1, bytearray(), 0
    for off, data in pieces:
        if off < last_end:
            raise BadInput(f"{name}: data at byte {off} comes after data up to byte {last_end}; out of order")
        end = min(off + len(data), size)
        last_end = off + len(data)
        if off % CLUSTER == 0 and end - off == CLUSTER and cur < off // CLUSTER:  # the common case: whole clusters
            if cur >= 0 and buf != ZERO_CLUSTER:
                yield cur, bytes(buf)
            cur, buf = -1, bytearray()
            if data != ZERO_CLUSTER:
                yield off // CLUSTER, data
            continue
        pos = off
        while pos < end:
            idx = pos // CLUSTER
            if idx != cur:
                if cur >= 0 and buf != ZERO_CLUSTER:
                    yield cur, bytes(buf)
                cur, buf = idx, bytearray(CLUSTER)
            n = min(end, (idx + 1) * CLUSTER) - pos
            buf[pos - idx * CLUSTER : pos - idx * CLUSTER + n] = data[pos - off : pos - off + n]
            pos += n
    if cur >= 0 and buf != ZERO_CLUSTER:
        yield cur, bytes(buf)


def rescan(disk: Source, clusters: Iterable[int]) -> Iterator[tuple[int, bytes | memoryview]]:
    """A second scan of the disk, checked cluster by cluster against the data map of the first:
    writers whose layout was computed from the data map (qcow2, monolithicSparse VMDK, VHDX) stream
    their data with it, and a disk that changed in between is an error, not a wrong image."""
    expected = iter(clusters)
    for idx, data in disk.scan():
        if idx != next(expected, None):
            raise BadInput(f"{disk.path}: the disk changed while it was being packed")
        yield idx, data
    if next(expected, None) is not None:
        raise BadInput(f"{disk.path}: the disk changed while it was being packed")


class ImageSource:
    """A disk in an image format, in a file or in a box: scanned through its Reader.

    reader is open already (for a box, the pass that found the disk); the first
    scan uses it, and reopen() gives a fresh reader for each later pass (a box
    member is streamed again; a file is just read again). after_first_scan, if
    set, runs once the first scan has read the whole disk (a box reads the
    members after the disk there).
    """

    def __init__(
        self,
        path: Path,
        reader: Reader,
        reopen: Callable[[], Reader],
        threads: int = 2,
        close: Callable[[], None] = lambda: None,
    ) -> None:
        self.path = path
        self._reader: Reader | None = reader
        self.reopen = reopen
        self.threads = threads
        self._close = close
        self.size = -(-reader.size // SECTOR) * SECTOR
        self.file_size = reader.size
        self.format = reader.format
        self.data_estimate = reader.data_estimate
        self.architecture: str | None = None
        self.rereadable = False
        self.after_first_scan: Callable[[], None] | None = None
        self.others: Callable[[], list[Source]] = list  # a box's other disks, known after the first scan
        self.head = bytes(CLUSTER)  # cluster 0, filled by the first scan

    @property
    def padded(self) -> bool:
        return False

    def scan(self, progress: Progress = None) -> Iterator[tuple[int, bytes]]:
        reader, self._reader = self._reader, None
        first = reader is not None
        if reader is None:
            reader = self.reopen()
        try:
            for idx, data in regrain(in_order(reader.pieces(), self.threads), self.size, str(self.path)):
                if idx == 0:
                    self.head = data
                if progress:
                    progress(len(data))
                yield idx, data
            if first and self.after_first_scan:
                self.after_first_scan()
        finally:
            reader.close()

    def read(self, offset: int, length: int) -> bytes:
        return read_head(self.head, offset, length)

    def progress_total(self) -> int:
        return self.data_estimate

    def other_disks(self) -> list[Source]:
        return self.others()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._close()

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
