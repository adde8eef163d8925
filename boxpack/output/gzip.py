"""Output sinks: parallel gzip, and a digest computed on the bytes as written.

The gzip stream is cut into 1 MiB pieces compressed on a thread pool; both
libraries used release the GIL, so every core compresses. Two engines:

- default: libdeflate (levels 1-12), one gzip member per MiB. Level 6 is a
  little smaller than `gzip -6` at about 3x its speed per core.
- fast: ISA-L level 3, pigz-style: each piece is raw deflate primed with the
  previous piece's last 32 KiB and sync-flushed, so a run of pieces forms one
  gzip member (crc32 combined). About twice libdeflate level 1's speed, boxes
  about 12% larger than `gzip -6`.

Data that is already compressed (a VMDK's grains) is stored, not deflated
again: it goes into gzip members of stored blocks, except its runs of zeros
(the sector padding after each grain, the empty parts of grain tables),
which are deflated. Deflate lets stored and compressed blocks follow each
other in one stream, so a VirtualBox box pays neither a second deflate of its
grains nor the padding between them.

A disk's data comes as Deflated pieces (disk/pieces.py): gzip members
compressed once per run for every box that holds the data as it is, copied
into the stream as they are, between the members of the box's own tables.

Concatenated members are one valid gzip file (RFC 1952 section 2.2): gzip, GNU
tar, bsdtar (Vagrant's extractor), Go's and Python's readers all read them.
Piece boundaries depend only on the input, so the output is the same bytes
whatever the thread count.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import deflate

from ..accel import isal_zlib
from ..member import Chunk, Deflated
from ..ordered import OrderedPool

CHUNK = 1024 * 1024
LEVELS = range(1, 13)  # libdeflate's levels
DEFAULT_LEVEL = 6
FAST_LEVEL = 3  # ISA-L's best
MEM_LEVEL = 8  # measured on a Debian disk: 11.9% larger than gzip -6 at 630 MB/s; 5 is 11.5% at 444 MB/s, 9 is worse
WINDOW = 32 * 1024
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, no mtime, OS unknown


ZERO_RUN = 32  # zero bytes: a run this long costs fewer bytes deflated than stored
_ZEROS = bytes(ZERO_RUN)
_NONZERO = re.compile(rb"[^\x00]")
STORED_MAX = 65535  # bytes in one stored block
# Stored data between zero runs shorter than this (a VMDK grain that compressed to under a quarter) is
# deflated with its neighbours: alike grains then shrink against each other, as they do in the outer gzip
# of qemu-img + tar -czf. Measured on the bench disk: 16 KiB brings the VirtualBox box from 1.002x to
# 1.000x of that pipeline's for 1.2 s more CPU; 32 KiB gains 0.2% more for 3.5 s more.
DEFLATE_BELOW = 16 * 1024
REDEFLATE_LEVEL = 1


@functools.lru_cache(maxsize=1024)
def _zero_run(n: int) -> bytes:
    """n zero bytes as non-final deflate blocks that end on a byte boundary (zlib's sync flush)."""
    return _deflated(bytes(n), 9)


def _deflated(data: bytes, level: int) -> bytes:
    """data as non-final raw deflate blocks ending on a byte boundary, referring to nothing before them."""
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)


ZERO_CHUNK = bytes(CHUNK)


@functools.lru_cache(maxsize=16)
def _zero_member(level: int) -> bytes:
    """A gzip member of CHUNK zero bytes: compressed once, not once per MiB of a 64 TiB disk's empty tables."""
    return bytes(deflate.gzip_compress(ZERO_CHUNK, level))


@functools.lru_cache(maxsize=16)
def _zero_isal_piece(dictionary: int, final: bool) -> tuple[bytes, int]:
    """_isal_piece of CHUNK zero bytes after dictionary zero bytes, once."""
    return _isal_piece(ZERO_CHUNK, ZERO_CHUNK[:dictionary], final)


def stored_member(data: bytes | bytearray | memoryview) -> bytes:
    """A gzip member holding data in stored blocks, but for its runs of zeros and the short stretches
    between them, which are deflated. Each piece of the stream starts and ends on a byte boundary and
    refers to nothing before it, so they simply follow each other."""
    data = bytes(data)
    parts = [GZIP_HEADER]
    n = len(data)
    group = None  # where the run of zeros and short stretches being gathered for deflate starts
    pos = 0
    while pos < n:
        zero = data.find(_ZEROS, pos)
        end = n if zero < 0 else zero
        if end - pos >= DEFLATE_BELOW:
            if group is not None:
                parts.append(_zero_run(pos - group) if not any(data[group:pos]) else _deflated(data[group:pos], REDEFLATE_LEVEL))
                group = None
            for i in range(pos, end, STORED_MAX):  # BFINAL 0, BTYPE 00, padding; LEN, NLEN; the bytes
                block = data[i : min(end, i + STORED_MAX)]
                parts += (b"\x00", struct.pack("<HH", len(block), len(block) ^ 0xFFFF), block)
        elif group is None:
            group = pos
        if zero < 0:
            break
        nonzero = _NONZERO.search(data, zero)
        if group is None:
            group = zero
        pos = nonzero.start() if nonzero else n
    if group is not None:
        parts.append(_deflated(data[group:n], REDEFLATE_LEVEL))
    parts.append(b"\x03\x00")  # the final block: empty, fixed Huffman codes
    parts.append(struct.pack("<II", deflate.crc32(data), n & 0xFFFFFFFF))
    return b"".join(parts)


class Sink(Protocol):
    def write(self, data: bytes | memoryview, /) -> object: ...


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class DigestWriter:
    """Passes bytes through to a file and hashes and counts them on the way."""

    def __init__(self, out: Sink, algorithm: str = "sha256") -> None:
        self.out = out
        self.hash = hashlib.new(algorithm)
        self.algorithm = algorithm
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self.hash.update(data)
        self.out.write(data)
        self.size += len(data)

    def hexdigest(self) -> str:
        return self.hash.hexdigest()


def _isal_piece(data: bytes | bytearray | memoryview, dictionary: bytes | memoryview, final: bool) -> tuple[bytes, int]:
    """Raw deflate of one piece primed with the previous 32 KiB; (stream bytes, crc32 of data)."""
    c = isal_zlib.compressobj(FAST_LEVEL, isal_zlib.DEFLATED, -15, MEM_LEVEL, 0, dictionary) if dictionary else \
        isal_zlib.compressobj(FAST_LEVEL, isal_zlib.DEFLATED, -15, MEM_LEVEL)
    out = c.compress(data) + c.flush(isal_zlib.Z_FINISH if final else isal_zlib.Z_SYNC_FLUSH)
    return out, isal_zlib.crc32(data)


def member_compressor(level: int, fast: bool) -> Callable[[bytes | bytearray], bytes]:
    """A function that makes one piece of disk data a whole gzip member (disk/pieces.py), with the box's engine."""
    if not fast:
        return lambda data: bytes(deflate.gzip_compress(data, level))

    def isal_member(data: bytes | bytearray) -> bytes:
        stream, crc = _isal_piece(data, b"", final=True)
        return GZIP_HEADER + stream + struct.pack("<II", crc, len(data) & 0xFFFFFFFF)

    return isal_member


def zlib_compressor(level: int, fast: bool) -> Callable[[bytes], bytes | bytearray]:
    """A function that zlib-wraps one buffer (VMDK grains), with the engine the box uses."""
    if fast:
        return lambda data: isal_zlib.compress(data, FAST_LEVEL, 15)
    return lambda data: deflate.zlib_compress(data, level)


@dataclass(frozen=True)
class Compression:
    """How a run compresses, one value for all three uses: the box's gzip stream (gzip False: a plain tar),
    the disk's pieces as gzip members (disk/pieces.py), and VirtualBox's zlib grains (formats/vmdk/stream.py).
    level is libdeflate's; fast uses ISA-L (the level is then its own)."""

    gzip: bool = True
    level: int = DEFAULT_LEVEL
    fast: bool = False
    threads: int = 1

    def stream(self, sink: Sink) -> ParallelGzip:
        return ParallelGzip(sink, self.level, self.threads, self.fast)

    def member(self) -> Callable[[bytes | bytearray], bytes]:
        return member_compressor(self.level, self.fast)

    def zlib(self) -> Callable[[bytes], bytes | bytearray]:
        return zlib_compressor(self.level, self.fast)


class ParallelGzip:
    """A write-only gzip stream into sink, compressed on `threads` threads, written in order.

    write(data, stored=True) marks data that is already compressed. fast
    selects the ISA-L engine (level is then ignored).
    """

    def __init__(self, sink: Sink, level: int = DEFAULT_LEVEL, threads: int | None = None, fast: bool = False) -> None:
        self.sink = sink
        self.level = level
        self.fast = fast
        threads = threads or default_threads()
        # 2 pieces in flight per thread: bounds memory to a few MiB.
        self.pool: OrderedPool[Callable[[object], bytes], object] = OrderedPool(threads, 2 * threads, "gzip")
        self.buf = bytearray()
        self.stored = False  # mode of what is in buf
        self.wrote_any = False
        # ISA-L member state: the previous piece's tail, and the running crc and size.
        self.tail: bytes = b""
        self.member_open = False
        self.crc = 0
        self.isize = 0

    def _push(self, work: Callable[[], Any] | bytes, finish: Callable[[Any], bytes], run: bool = True) -> None:
        """Compress on the pool (or, not run, take bytes made already); finish turns the result into bytes, in
        order, as it is written."""
        for fin, result in self.pool.put(finish, work, run):
            self.sink.write(fin(result))
        self.wrote_any = True

    def _piece(self, data: bytes | bytearray | memoryview, final: bool) -> None:
        """Compress one piece of the current mode; final ends the current ISA-L member."""
        if self.stored:
            self._push(lambda: stored_member(data), bytes)
            return
        if not self.fast:
            if len(data) == CHUNK and data == ZERO_CHUNK:  # empty table space: the same bytes every time
                self._push(lambda: _zero_member(self.level), bytes)
                return
            self._push(lambda: deflate.gzip_compress(data, self.level), bytes)
            return
        head = b"" if self.member_open else GZIP_HEADER
        self.member_open = not final
        dictionary = self.tail
        self.tail = bytes(data[-WINDOW:]) if len(data) >= WINDOW else (self.tail + bytes(data))[-WINDOW:]
        n = len(data)

        def finish(result: tuple[bytes, int], head: bytes = head, n: int = n, final: bool = final) -> bytes:
            stream, crc = result
            self.crc = isal_zlib.crc32_combine(self.crc, crc, n)
            self.isize += n
            if not final:
                return head + stream
            trailer = struct.pack("<II", self.crc, self.isize & 0xFFFFFFFF)
            self.crc, self.isize = 0, 0
            return head + stream + trailer

        if final:
            self.tail = b""
        if len(data) == CHUNK and data == ZERO_CHUNK and dictionary == ZERO_CHUNK[: len(dictionary)]:
            self._push(lambda: _zero_isal_piece(len(dictionary), final), finish)
            return
        self._push(lambda: _isal_piece(data, dictionary, final), finish)

    def _end_mode(self) -> None:
        """Flush what is buffered as the last piece of the current mode."""
        if self.buf or (self.fast and not self.stored and self.member_open):
            piece, self.buf = self.buf, bytearray()
            self._piece(piece, final=True)

    def write(self, data: Chunk, stored: bool = False) -> None:
        if isinstance(data, Deflated):  # a gzip member made once for every box of the run: copied as it is
            self._end_mode()
            self._push(data.member, bytes, run=False)
            return
        if stored != self.stored:
            self._end_mode()
            self.stored = stored
        mv = memoryview(data)
        if self.buf:
            need = CHUNK - len(self.buf)
            self.buf += mv[:need]
            mv = mv[need:]
            if len(self.buf) < CHUNK or not mv:
                return  # a full buffer waits: it may be the last piece of an ISA-L member
            piece, self.buf = self.buf, bytearray()  # hand the buffer over, no copy
            self._piece(piece, final=False)
        while len(mv) > CHUNK:
            self._piece(mv[:CHUNK], final=False)
            mv = mv[CHUNK:]
        self.buf += mv

    def close(self) -> None:
        """Compress what is buffered and write everything; the sink stays open."""
        try:
            self._end_mode()
            if not self.wrote_any:  # an empty stream is still one gzip member
                self._push(lambda: deflate.gzip_compress(b"", self.level), bytes)
            for fin, result in self.pool.drain():
                self.sink.write(fin(result))
        finally:
            self.pool.close()

    def abort(self) -> None:
        """Stop without writing anything more (on error or Ctrl-C)."""
        self.pool.close()
