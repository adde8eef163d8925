"""Raw disks: the file as the guest sees it, holes found with SEEK_DATA/SEEK_HOLE.

raw is what is left when no other format's probe matches, so it has no probe
of its own. A raw disk in a file is read by RawDisk (which skips holes without
reading them); one inside a box by RawReader (a stream has no holes to skip).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ..disk.bytesource import ByteSource
from ..disk.source import CLUSTER, SECTOR, ZERO_CLUSTER, Progress
from ..errors import BadInput

_SCAN_CHUNK = 4 * 1024 * 1024


def data_clusters(chunk: bytes, first: int) -> Iterator[tuple[int, memoryview]]:
    """(cluster index, 64 KiB) for each cluster of chunk (whole clusters from cluster `first`) holding a non-zero byte."""
    view = memoryview(chunk)
    for i, off in enumerate(range(0, len(chunk), CLUSTER)):
        # Slicing bytes copies: look at 8 bytes first, the whole cluster only if they are zero.
        if chunk[off : off + 8] != ZERO_CLUSTER[:8] or chunk[off : off + CLUSTER] != ZERO_CLUSTER:
            yield first + i, view[off : off + CLUSTER]


class RawDisk:
    """A disk image file (or block device) opened read-only. Reads past the end return zeros."""

    format = "raw"
    architecture: str | None = None
    rereadable = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise BadInput(f"{self.path}: no such file") from None
        except IsADirectoryError:
            raise BadInput(f"{self.path}: is a directory, expected a disk image") from None
        except PermissionError:
            raise BadInput(f"{self.path}: permission denied (cannot read the disk image)") from None
        except OSError as e:
            raise BadInput(f"{self.path}: cannot open: {e.strerror}") from None
        self.fd = fd
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            self.close()
            raise BadInput(f"{self.path}: is a directory, expected a disk image")
        if stat.S_ISBLK(st.st_mode):
            self.file_size = os.lseek(fd, 0, os.SEEK_END)
        elif stat.S_ISREG(st.st_mode):
            self.file_size = st.st_size
        else:
            self.close()
            raise BadInput(f"{self.path}: not a regular file or block device")
        if self.file_size == 0:
            self.close()
            raise BadInput(f"{self.path}: is empty, expected a disk image")
        try:
            os.pread(fd, 1, 0)
        except OSError as e:
            self.close()
            raise BadInput(f"{self.path}: cannot read: {e.strerror}") from None
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
        if offset < 0 or length < 0:
            raise BadInput(f"{self.path}: read at byte {offset} of {length} bytes is out of range")
        if offset >= self.file_size:
            return bytes(length)
        try:
            data = os.pread(self.fd, length, offset)
        except OSError as e:
            raise BadInput(f"{self.path}: read error at byte {offset}: {e.strerror}") from None
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

    def scan(self, progress: Progress = None) -> Iterator[tuple[int, bytes | memoryview]]:
        """Yield (cluster index, 64 KiB of data) for every cluster holding a non-zero byte, ascending."""
        last = -1
        for start, end in self.extents():
            pos = start // CLUSTER * CLUSTER
            while pos < end:
                n = min(_SCAN_CHUNK, -(-(end - pos) // CLUSTER) * CLUSTER)
                for idx, data in data_clusters(self.read(pos, n), pos // CLUSTER):
                    if idx > last:
                        last = idx
                        yield idx, data
                if progress:
                    progress(min(pos + n, end) - max(pos, start))
                pos += n

    def other_disks(self) -> list:
        return []

    def progress_total(self) -> int:
        return sum(e - s for s, e in self.extents())


class RawReader:
    """A raw disk streamed from a box, in 4 MiB pieces."""

    format = "raw"

    def __init__(self, data: ByteSource, name: str) -> None:
        if data.size <= 0:
            raise BadInput(f"{name}: the disk is empty")
        self.data, self.name = data, name
        self.size = -(-data.size // SECTOR) * SECTOR
        self.data_estimate = data.size

    def pieces(self) -> Iterator[tuple[int, bytes]]:
        for off in range(0, self.data.size, 64 * CLUSTER):
            yield off, self.data.pread(off, 64 * CLUSTER)

    def close(self) -> None:
        self.data.close()
