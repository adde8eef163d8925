"""Disk sources: one interface for raw disks, qcow2, VMDK and boxes.

Every source offers its virtual size and scan(): the 64 KiB clusters that hold
a non-zero byte, in ascending order, read sequentially. That is all the
writers need (the data map from one scan, the data from the same or a second
scan), so a disk inside a .tar.gz box is read straight from the archive.

Raw disks find their holes with SEEK_DATA/SEEK_HOLE, so a sparse 200 GiB disk
costs no more to scan than the data it holds. Format readers (qcow2.py,
vmdk.py) yield their allocated units through regrain(), which cuts them into
64 KiB clusters and drops the all-zero ones; compressed units are inflated on
a thread pool, in order.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Protocol

from .errors import BoxpackError

SECTOR = 512
CLUSTER = 64 * 1024
ZERO_CLUSTER = bytes(CLUSTER)
_SCAN_CHUNK = 4 * 1024 * 1024


class RawDisk:
    """A raw disk image opened read-only. Reads past the end return zeros."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise BoxpackError(f"{self.path}: no such file") from None
        except IsADirectoryError:
            raise BoxpackError(f"{self.path}: is a directory, expected a disk image") from None
        except PermissionError:
            raise BoxpackError(f"{self.path}: permission denied (cannot read the disk image)") from None
        except OSError as e:
            raise BoxpackError(f"{self.path}: cannot open: {e.strerror}") from None
        self.fd = fd
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            self.close()
            raise BoxpackError(f"{self.path}: is a directory, expected a disk image")
        if stat.S_ISBLK(st.st_mode):
            self.file_size = os.lseek(fd, 0, os.SEEK_END)
        elif stat.S_ISREG(st.st_mode):
            self.file_size = st.st_size
        else:
            self.close()
            raise BoxpackError(f"{self.path}: not a regular file or block device")
        if self.file_size == 0:
            self.close()
            raise BoxpackError(f"{self.path}: is empty, expected a disk image")
        try:
            os.pread(fd, 1, 0)
        except OSError as e:
            self.close()
            raise BoxpackError(f"{self.path}: cannot read: {e.strerror}") from None
        #: The disk size as guests see it: the file size padded to a whole sector.
        self.size = -(-self.file_size // SECTOR) * SECTOR

    @property
    def padded(self) -> bool:
        """True when the file size is not a multiple of 512 and reads pad it."""
        return self.size != self.file_size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> RawDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, offset: int, length: int) -> bytes:
        """Read length bytes at offset; bytes past the end of the file read as zero."""
        try:
            data = os.pread(self.fd, length, offset)
        except OSError as e:
            raise BoxpackError(f"{self.path}: read error at byte {offset}: {e.strerror}") from None
        if len(data) < length:
            data += bytes(length - len(data))
        return data

    def extents(self) -> Iterator[tuple[int, int]]:
        """Yield (start, end) byte ranges that may hold data; holes are skipped."""
        end_of_file = self.file_size
        pos = 0
        while pos < end_of_file:
            try:
                start = os.lseek(self.fd, pos, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:  # only a hole remains
                    return
                if e.errno in (errno.EINVAL, errno.EOPNOTSUPP):  # no hole support here
                    yield pos, end_of_file
                    return
                raise
            stop = os.lseek(self.fd, start, os.SEEK_HOLE)
            yield start, min(stop, end_of_file)
            pos = stop

    def scan(self, progress=None) -> Iterator[tuple[int, bytes | memoryview]]:
        """Yield (cluster index, 64 KiB of data) for every cluster holding a non-zero byte, ascending."""
        last = -1
        for start, end in self.extents():
            pos = start // CLUSTER * CLUSTER
            while pos < end:
                n = min(_SCAN_CHUNK, -(-(end - pos) // CLUSTER) * CLUSTER)
                chunk = self.read(pos, n)
                view = memoryview(chunk)
                first = pos // CLUSTER
                for i, off in enumerate(range(0, n, CLUSTER)):
                    # Slicing bytes copies: look at 8 bytes first, the whole cluster only if they are zero.
                    if first + i > last and (chunk[off : off + 8] != ZERO_CLUSTER[:8] or chunk[off : off + CLUSTER] != ZERO_CLUSTER):
                        last = first + i
                        yield last, view[off : off + CLUSTER]
                if progress:
                    progress(min(pos + n, end) - max(pos, start))
                pos += n

    def progress_total(self) -> int:
        return sum(e - s for s, e in self.extents())

    @property
    def format(self) -> str:
        return "raw"


class ByteSource(Protocol):
    """Byte access to an image file, by offset: a file, or a member streamed from a box."""

    size: int
    name: str

    def pread(self, offset: int, length: int) -> bytes: ...

    def close(self) -> None: ...


def read_table(data: ByteSource, offset: int, count: int, typecode: str, big_endian: bool, what: str) -> array:
    """count unsigned integers (an array typecode: B, H, I or Q) at offset, in the file's byte order; an error if cut short."""
    raw = data.pread(offset, count * array(typecode).itemsize)
    if len(raw) != count * array(typecode).itemsize:
        raise BoxpackError(f"{data.name}: {what} at byte {offset} is cut off by the end of the file")
    table = array(typecode, raw)
    if (sys.byteorder == "little") == big_endian:
        table.byteswap()
    return table


class FileBytes:
    def __init__(self, fd: int, size: int, name: str) -> None:
        self.fd, self.size, self.name = fd, size, name

    def close(self) -> None:
        """The descriptor belongs to the RawDisk that opened the file."""

    def pread(self, offset: int, length: int) -> bytes:
        try:
            return os.pread(self.fd, length, offset)
        except OSError as e:
            raise BoxpackError(f"{self.name}: read error at byte {offset}: {e.strerror}") from None


class StreamBytes:
    """Forward-only byte access to a stream (a box member): reads may only move forward.

    It keeps the last WINDOW bytes, so a reader may look back a little (at a
    header, say). A layout that needs to go further back cannot be streamed,
    and says so.
    """

    WINDOW = 4 * 1024 * 1024

    def __init__(self, stream: BinaryIO, size: int, name: str, owner: object = None) -> None:
        self.stream, self.size, self.name = stream, size, name
        self.owner = owner  # what to close with it: the archive the member is read from
        self.buf = bytearray()
        self.buf_start = 0  # stream offset of buf[0]

    def close(self) -> None:
        if self.owner is not None:
            self.owner.close()

    def pread(self, offset: int, length: int) -> bytes:
        if offset < self.buf_start:
            raise BoxpackError(
                f"{self.name}: its layout needs random access (a read at byte {offset} after byte "
                f"{self.buf_start + len(self.buf)}); extract the disk from the box and pass it instead"
            )
        end = min(offset + length, self.size)
        while self.buf_start + len(self.buf) < end:
            data = self.stream.read(max(1024 * 1024, end - self.buf_start - len(self.buf)))
            if not data:
                raise BoxpackError(f"{self.name}: ends early, at byte {self.buf_start + len(self.buf)} of {self.size}")
            self.buf += data
        piece = bytes(self.buf[offset - self.buf_start : end - self.buf_start])
        drop = min(max(0, end - self.buf_start - self.WINDOW), len(self.buf))
        if drop:
            del self.buf[:drop]
            self.buf_start += drop
        return piece


def regrain(pieces: Iterable[tuple[int, bytes]], size: int, name: str) -> Iterator[tuple[int, bytes]]:
    """Cut ascending (byte offset, data) pieces of any size into 64 KiB clusters, dropping zero ones."""
    cur, buf, last_end = -1, bytearray(), 0
    for off, data in pieces:
        if off < last_end:
            raise BoxpackError(f"{name}: data at byte {off} comes after data up to byte {last_end}; out of order")
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


def inflate_in_order(pieces: Iterable[tuple[int, "bytes | Callable[[], bytes]"]], threads: int) -> Iterator[tuple[int, bytes]]:
    """Run the callables among the pieces (decompressions) on a thread pool; yield results in order."""
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="inflate")
    pending: deque[tuple[int, Future | bytes]] = deque()
    try:
        for off, data in pieces:
            pending.append((off, pool.submit(data) if callable(data) else data))
            if len(pending) >= 8 * threads:
                off0, item = pending.popleft()
                yield off0, item.result() if isinstance(item, Future) else item
        while pending:
            off0, item = pending.popleft()
            yield off0, item.result() if isinstance(item, Future) else item
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class ImageSource:
    """A disk in an image format (qcow2, VMDK), in a file or in a box: scanned through its reader.

    open_reader() gives a fresh reader for each pass (a box member is streamed
    again; a file is just read again).
    """

    def __init__(
        self, path: Path, open_reader: Callable[[], "Reader"], threads: int = 2, close: Callable[[], None] = lambda: None
    ) -> None:
        self.path = path
        self.open_reader = open_reader
        self.threads = threads
        self.close = close
        reader = open_reader()
        self.size = reader.size
        self.file_size = reader.size
        self.format = reader.format
        self.data_estimate = reader.data_estimate
        self.architecture: str | None = None  # from a box's metadata.json
        self.head = bytes(CLUSTER)  # cluster 0, filled by the first scan
        reader.close()

    padded = False

    def scan(self, progress=None) -> Iterator[tuple[int, bytes]]:
        reader = self.open_reader()
        try:
            for idx, data in regrain(inflate_in_order(reader.pieces(), self.threads), self.size, str(self.path)):
                if idx == 0:
                    self.head = data
                if progress:
                    progress(len(data))
                yield idx, data
        finally:
            reader.close()

    def read(self, offset: int, length: int) -> bytes:
        """Only the first 64 KiB (the partition table), after a scan; zeros elsewhere."""
        return (self.head[offset : offset + length] if offset < CLUSTER else b"").ljust(length, b"\0")

    def progress_total(self) -> int:
        return self.data_estimate

    def __enter__(self) -> "ImageSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Reader(Protocol):
    """A disk image format reader (qcow2.Qcow2Reader, vmdk.VmdkReader)."""

    size: int  # virtual size in bytes
    format: str  # e.g. "qcow2 v3", "vmdk streamOptimized"
    data_estimate: int  # bytes of data, for progress

    def pieces(self) -> Iterator[tuple[int, "bytes | Callable[[], bytes]"]]:
        """(guest byte offset, data or a callable that inflates it), ascending."""
        ...

    def close(self) -> None: ...


def open_source(path: str | os.PathLike[str], threads: int = 2) -> "RawDisk | ImageSource":
    """The right source for a file, by its first bytes: qcow2, VMDK, a box (tar, gzip, ...), else raw."""
    disk = RawDisk(path)
    magic = disk.read(0, 512)
    if magic[:4] == b"QFI\xfb" or magic[:4] == b"KDMV" or magic.startswith(b"# Disk DescriptorFile"):
        from .qcow2 import Qcow2Reader
        from .vmdk import VmdkReader

        cls = Qcow2Reader if magic[:4] == b"QFI\xfb" else VmdkReader
        fd, size, name = disk.fd, disk.file_size, str(disk.path)
        return ImageSource(disk.path, lambda: cls(FileBytes(fd, size, name), name), threads, close=disk.close)
    if _is_archive(magic):
        from .boxfile import box_source

        disk.close()
        return box_source(Path(path), threads)
    return disk


def _is_archive(magic: bytes) -> bool:
    """gzip, xz, bzip2, zstd, or a tar header ("ustar" at byte 257)."""
    return (
        magic[:2] == b"\x1f\x8b"
        or magic[:6] == b"\xfd7zXZ\x00"
        or magic[:3] == b"BZh"
        or magic[:4] == b"\x28\xb5\x2f\xfd"
        or magic[257:262] == b"ustar"
    )


Source = RawDisk | ImageSource
