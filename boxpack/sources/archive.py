"""Box archives read safely: told by their first bytes, decompressed, and walked as a forward-only tar.

A box is a tar, bare or compressed with gzip, xz, bzip2 or zstd, read as a stream and never extracted.
What a stranger's archive can do is bounded here: a decompression bomb stops at a budget, a tar header
claiming more than there is ends the read, long names and PAX headers over 1 MiB and archives of more
than 10,000 members are refused. box.py reads boxes through this.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .. import accel
from ..errors import BadInput, InternalError
from .zstd import zstd

HEADER_LIMIT = 1024 * 1024  # a GNU long name or PAX header larger than this is an attack, not a name
MAX_MEMBERS = 10_000  # boxes hold a handful of files; tarfile keeps every member it has read
CHUNK = 1024 * 1024
ARCHIVE_ERRORS: tuple[type[BaseException], ...] = (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zstd.ZstdError, *accel.ERRORS)


@contextmanager
def damaged(box: object) -> Iterator[None]:
    """What the archive's readers raise on a damaged or cut-short archive, said in one line about box."""
    try:
        yield
    except ARCHIVE_ERRORS as e:
        raise BadInput(f"{box}: not a readable box archive ({e})") from None


class Bomb(BadInput):
    """A stream that inflates beyond its budget."""


class Budget:
    """Decompressed bytes, stopped once they pass limit(): a decompression bomb ends the read at once
    instead of taking minutes (a 10 MB zstd stream can hold 320 GiB of zeros)."""

    def __init__(self, inner: Any, limit: Callable[[], int], where: str, why: str) -> None:
        self.inner, self.limit, self.where, self.why = inner, limit, where, why
        self.total = 0

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.total += len(data)
        if self.total > self.limit():
            raise Bomb(f"{self.where}: {self.why}")
        return data

    def close(self) -> None:
        self.inner.close()


MAX_RATIO = 1000  # a qcow2 of zeros compresses about 1000:1 in a box; a box inflating more is a bomb
MIN_BUDGET = 1024**3


def box_budget(inner: Any, compressed: Callable[[], int], where: object) -> Budget:
    """The budget of a box archive: MAX_RATIO times its compressed bytes read so far, and at least MIN_BUDGET."""
    return Budget(inner, lambda: max(MIN_BUDGET, MAX_RATIO * compressed()), str(where),
                  f"inflates to more than {MAX_RATIO} times its size (a decompression bomb?)")


def compression(head: bytes) -> str | None:
    """The box archive's compression ("none" for a bare tar), or None when head is not a box archive."""
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[:3] == b"BZh":
        return "bzip2"
    # A zstd frame, or a skippable frame before one (magic 0x184D2A50-0x184D2A5F, RFC 8878 section 3.1.2;
    # pzstd writes one first), which the decoder passes over.
    if head[:4] == b"\x28\xb5\x2f\xfd" or (head[1:4] == b"\x2a\x4d\x18" and 0x50 <= head[0] <= 0x5F):
        return "zstd"
    if is_tar(head):
        return "none"
    return None


def is_tar(head: bytes) -> bool:
    """A tar header's magic (POSIX ustar and GNU): at byte 257 of the first block."""
    return head[257:262] == b"ustar"


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads a GNU long name or a PAX header whole into memory: refuse huge ones first."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE):
            if self.size > HEADER_LIMIT:
                raise tarfile.HeaderError(f"a {self.size}-byte extended header (long name or PAX record)")
        return super()._proc_member(tar)  # type: ignore[misc]  # tarfile's hook for extended headers, not in its stubs


class _EndGuard:
    """A stream that raises at a second read past its end: tarfile skips a member by reading
    its claimed size block by block, and would spin for ever on a header claiming a terabyte."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.ended = False

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        if not data and n != 0:
            if self.ended:
                raise EOFError("the archive ends inside a member (its size field claims more than there is)")
            self.ended = True
        return data

    def close(self) -> None:
        self.inner.close()


class _TarStream(tarfile.TarFile):
    """A forward-only tar reader that closes the stream it reads when it is closed."""

    source: Any = None

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.source is not None:
                self.source.close()


def read_tar(stream: Any) -> tarfile.TarFile:
    """A forward-only tar reader over a decompressed stream, safe on hostile headers; closing it closes stream."""
    guard = _EndGuard(stream)
    try:
        tar = _TarStream.open(fileobj=guard, mode="r|", tarinfo=_BoundedTarInfo)  # type: ignore[call-overload]  # read() is all "r|" calls
    except BaseException:
        stream.close()
        raise
    tar.source = guard
    return tar


def members(tar: tarfile.TarFile, where: object) -> Iterator[tuple[int, tarfile.TarInfo]]:
    """(ordinal, member), at most MAX_MEMBERS of them."""
    for ordinal, m in enumerate(tar):
        if ordinal >= MAX_MEMBERS:
            raise BadInput(f"{where}: holds more than {MAX_MEMBERS} files; not a box")
        yield ordinal, m


def member_file(tar: tarfile.TarFile, m: tarfile.TarInfo) -> IO[bytes]:
    """A regular file's bytes as a stream (the callers have tested isfile())."""
    f = tar.extractfile(m)
    if f is None:
        raise InternalError(f"internal error: {m.name} is not a regular file")
    return f


def decompressor(kind: str, raw: Any) -> Any:
    """A reader of the decompressed bytes of a box archive whose compression() is kind."""
    if kind == "gzip":
        if accel.igzip is not None:
            return accel.igzip.IGzipFile(fileobj=raw, mode="rb")
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "xz":
        return io.BufferedReader(_XzStreams(raw), CHUNK)
    if kind == "bzip2":
        return bz2.BZ2File(raw)
    if kind == "zstd":
        return zstd.ZstdFile(raw)
    return raw


class _XzStreams(io.RawIOBase):
    """An .xz file as its format has it (xz-file-format 1.0.4, section 2): streams one after another, with
    Stream Padding (null bytes, a multiple of four) between and after them, which lzma.LZMAFile refuses."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._decoder = lzma.LZMADecompressor(lzma.FORMAT_XZ)
        self._input = b""
        self._padding = 0
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        while not self._ended:
            if self._decoder.eof:
                self._input = self._decoder.unused_data + self._input
                if not self._next_stream():
                    break
            if self._decoder.needs_input and not self._input:
                self._input = self._raw.read(CHUNK)
                if not self._input:
                    raise EOFError("the xz stream is cut short")
            out = self._decoder.decompress(self._input, max_length=len(buf))
            self._input = b""
            if out:
                buf[: len(out)] = out
                return len(out)
        return 0

    def _next_stream(self) -> bool:
        """Past the padding to the next stream; False at the end of the file."""
        while True:
            stripped = self._input.lstrip(b"\0")
            self._padding += len(self._input) - len(stripped)
            self._input = stripped
            if self._input:
                break
            self._input = self._raw.read(CHUNK)
            if not self._input:
                if self._padding % 4:
                    raise lzma.LZMAError(f"{self._padding} bytes of stream padding, not a multiple of four")
                self._ended = True
                return False
        if self._padding % 4:
            raise lzma.LZMAError(f"{self._padding} bytes of stream padding, not a multiple of four")
        self._padding = 0
        self._decoder = lzma.LZMADecompressor(lzma.FORMAT_XZ)
        return True


def open_tar(box: Path) -> tarfile.TarFile:
    """The box file as a tar stream; gzip is inflated on another thread with ISA-L where it is available."""
    with damaged(box):
        return _open_tar(box)


def _open_tar(box: Path) -> tarfile.TarFile:
    f = open(box, "rb")
    try:
        kind = compression(f.read(512))
        f.seek(0)
        if kind is None:
            raise BadInput(f"{box}: not a box archive")
        if kind == "gzip" and accel.igzip_threaded is not None:
            f.close()
            size = os.path.getsize(box)
            return read_tar(box_budget(accel.igzip_threaded.open(box, "rb", threads=1), lambda: size, box))
        return read_tar(box_budget(_Closing(decompressor(kind, f), f), f.tell, box))
    except BaseException:
        f.close()
        raise


class _Closing:
    """A decompressing reader that also closes the file under it."""

    def __init__(self, inner: Any, file: Any) -> None:
        self.inner, self.file = inner, file

    def read(self, n: int = -1) -> bytes:
        return self.inner.read(n)

    def close(self) -> None:
        self.inner.close()
        self.file.close()
