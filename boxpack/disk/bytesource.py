"""Byte access to an image, by offset: a file (random access) or a box member (forward only)."""

from __future__ import annotations

import lzma
import os
import sys
import tarfile
from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Protocol, TypeVar

from .. import accel
from ..errors import BadInput

_STREAM_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, tarfile.TarError, lzma.LZMAError, *accel.ERRORS)


class _Closable(Protocol):
    def close(self) -> None: ...


class ByteSource(Protocol):
    """Byte access to an image file, by offset: a file, or a member streamed from a box."""

    size: int
    name: str
    random_access: bool  # False: reads may only move forward (beyond a small look-back window)

    def pread(self, offset: int, length: int) -> bytes: ...

    def close(self) -> None: ...


class FileBytes:
    """A file descriptor that belongs to someone else (the RawDisk that opened it)."""

    random_access = True

    def __init__(self, fd: int, size: int, name: str) -> None:
        self.fd, self.size, self.name = fd, size, name

    def close(self) -> None:
        """The descriptor is closed by its owner."""

    def pread(self, offset: int, length: int) -> bytes:
        """Up to length bytes at offset; nothing past the end (a header's offset may be anything)."""
        if offset < 0 or offset >= self.size or length <= 0:
            return b""
        try:
            return os.pread(self.fd, min(length, self.size - offset), offset)
        except OSError as e:
            raise BadInput(f"{self.name}: read error at byte {offset}: {e.strerror}") from None


Reopen = Callable[[], tuple[IO[bytes], _Closable]]


class StreamBytes:
    """Forward-only byte access to a stream (a box member).

    It keeps the last WINDOW bytes, so a reader may look back a little (at a
    header, say). A layout that needs to go further back (qemu-img resize puts
    a qcow2's L1 table after the data) takes another pass over the box when
    reopen can start one, at most PASSES in all; else it cannot be streamed,
    and says so.
    """

    WINDOW = 4 * 1024 * 1024
    PASSES = 3  # tables after the data need a second pass; a hostile layout cannot make it hundreds
    random_access = False

    def __init__(
        self, stream: IO[bytes], size: int, name: str, owner: _Closable | None = None, reopen: Reopen | None = None
    ) -> None:
        self.stream, self.size, self.name = stream, size, name
        self.owner = owner  # what to close with it: the archive the member is read from
        self.reopen = reopen  # a new stream of the member from its start, and the archive to close with it
        self.passes = 1
        self.again: _Closable | None = None  # the archive of the current pass after the first
        self.buf = bytearray()
        self.buf_start = 0  # stream offset of buf[0]

    def close(self) -> None:
        if self.again is not None:
            self.again.close()
        if self.owner is not None:
            self.owner.close()

    def pread(self, offset: int, length: int) -> bytes:
        if offset < self.buf_start:
            self._rewind(offset)
        end = min(offset + length, self.size)
        if offset > self.buf_start + len(self.buf) + self.WINDOW:
            self._skip_to(offset)  # far ahead: what lies between is never kept
        while self.buf_start + len(self.buf) < end:
            self.buf += self._read(max(1024 * 1024, end - self.buf_start - len(self.buf)), self.buf_start + len(self.buf))
        piece = bytes(self.buf[offset - self.buf_start : end - self.buf_start])
        drop = min(max(0, end - self.buf_start - self.WINDOW), len(self.buf))
        if drop:
            del self.buf[:drop]
            self.buf_start += drop
        return piece

    def _rewind(self, offset: int) -> None:
        """Start the member again from its first byte, in a new pass over the box (the first pass's archive
        is left where it is: its caller reads on to the members after the disk)."""
        if self.reopen is None or self.passes >= self.PASSES:
            why = "a box read from a stream cannot be read twice" if self.reopen is None else f"after {self.passes} passes over the box"
            raise BadInput(
                f"{self.name}: its layout needs random access (a read at byte {offset} after byte "
                f"{self.buf_start + len(self.buf)}, {why}); extract the disk from the box and pass it instead"
            )
        if self.again is not None:
            self.again.close()
            self.again = None
        self.stream, self.again = self.reopen()
        self.passes += 1
        self.buf.clear()
        self.buf_start = 0

    def _skip_to(self, offset: int) -> None:
        """Read and drop the stream up to offset: a checker jumping over a gigabyte of data keeps none of it."""
        self.buf_start += len(self.buf)
        self.buf.clear()
        while self.buf_start < offset:
            self.buf_start += len(self._read(offset - self.buf_start, self.buf_start))

    def _read(self, n: int, at: int) -> bytes:
        """The next bytes of the stream, at most 16 MiB of them; an error if there are none."""
        try:
            data = self.stream.read(min(n, 16 * 1024 * 1024))
        except _STREAM_ERRORS as e:
            raise BadInput(f"{self.name}: the box archive is damaged ({e})") from None
        if not data:
            raise BadInput(f"{self.name}: ends early, at byte {at} of {self.size}")
        return data


def read_table(data: ByteSource, offset: int, count: int, typecode: str, big_endian: bool, what: str) -> array:
    """count unsigned integers (an array typecode: B, H, I or Q) at offset, in the file's byte order; an error if cut short."""
    width = array(typecode).itemsize
    if offset < 0 or offset + count * width > data.size:
        raise BadInput(f"{data.name}: {what} at byte {offset} is cut off by the end of the file")
    raw = data.pread(offset, count * width)
    if len(raw) != count * width:
        raise BadInput(f"{data.name}: {what} at byte {offset} is cut off by the end of the file")
    table = array(typecode, raw)
    if (sys.byteorder == "little") == big_endian:
        table.byteswap()
    return table


def table_chunks(
    data: ByteSource, offset: int, count: int, typecode: str, big_endian: bool, what: str, chunk: int = 65536
) -> Iterator[tuple[int, array]]:
    """A table read in pieces of chunk entries, as (index of the first, entries): a disk's block map
    is walked without holding all of it, so memory grows with the data, not the virtual size."""
    width = array(typecode).itemsize
    if offset < 0 or offset + count * width > data.size:
        raise BadInput(f"{data.name}: {what} at byte {offset} ({count} entries) is cut off by the end of the file")
    for first in range(0, count, chunk):
        yield first, read_table(data, offset + first * width, min(chunk, count - first), typecode, big_endian, what)


Table = TypeVar("Table")


def tables_ahead(offsets: Iterable[int], read: Callable[[int], Table], data_at: Callable[[Table], Iterable[int]]) -> dict[int, Table]:
    """{offset: table} of the tables that lie before the first data they point at, read in file order.

    A reader that reads these first and the others when their turn comes streams both boxpack's
    layouts (every table before the data) and qemu's (each table just before its data) from a box.
    data_at gives the offsets of the data a table points at (0 for none), in the unit of offsets.
    """
    early: dict[int, Table] = {}
    first_data: int | None = None
    for offset in sorted(set(offsets)):
        if first_data is not None and offset > first_data:
            break
        early[offset] = table = read(offset)
        hosts = [h for h in data_at(table) if h]
        if hosts:
            first_data = min(hosts) if first_data is None else min(first_data, *hosts)
    return early
