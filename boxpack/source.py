"""A raw disk image as a source: its size, where its data is, and reads.

Holes are found with SEEK_DATA/SEEK_HOLE, so a sparse 200 GiB disk costs no more
to scan than the data it holds. All-zero clusters inside data extents are found
by reading them, and left out of the data map too.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import deflate

from .errors import BoxpackError

SECTOR = 512
CLUSTER = 64 * 1024
_ZERO_CLUSTER = bytes(CLUSTER)
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
        self.crc32 = 0

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

    def scan(self, progress=None) -> Iterator[tuple[int, bytes]]:
        """Yield (cluster index, 64 KiB of data) for every cluster holding a non-zero byte, ascending.

        Holes are skipped without reading; data extents are read once. The
        indices collected from this are the data map every writer works from:
        it grows with the data, not with the virtual size (8 bytes per 64 KiB).
        self.crc32 ends up as a checksum of everything read, for derived IDs.
        """
        last = -1
        self.crc32 = 0
        for start, end in self.extents():
            pos = start // CLUSTER * CLUSTER
            while pos < end:
                n = min(_SCAN_CHUNK, -(-(end - pos) // CLUSTER) * CLUSTER)
                chunk = self.read(pos, n)
                self.crc32 = deflate.crc32(chunk, self.crc32)
                first = pos // CLUSTER
                for i, off in enumerate(range(0, n, CLUSTER)):
                    data = chunk[off : off + CLUSTER]
                    if first + i > last and data != _ZERO_CLUSTER:
                        last = first + i
                        yield last, data
                if progress:
                    progress(min(pos + n, end) - max(pos, start))
                pos += n
