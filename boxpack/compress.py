"""Output sinks: parallel gzip, and a digest computed on the bytes as written.

The gzip stream is a series of gzip members, one per MiB of input, each made
by libdeflate on a worker thread (libdeflate releases the GIL, so members are
compressed on every core). Concatenated members are one valid gzip file
(RFC 1952 section 2.2): gzip, GNU tar, bsdtar (Vagrant's extractor), Go's and
Python's readers all read them. Chunk boundaries depend only on the input, so
the output is the same bytes whatever the thread count.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO, Protocol

import deflate

CHUNK = 1024 * 1024
LEVELS = range(0, 13)  # libdeflate's levels; 0 stores
DEFAULT_LEVEL = 6


class Sink(Protocol):
    def write(self, data: bytes | memoryview, /) -> object: ...


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class DigestWriter:
    """Passes bytes through to a file and hashes and counts them on the way."""

    def __init__(self, out: BinaryIO, algorithm: str = "sha256") -> None:
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


class ParallelGzip:
    """A write-only stream that gzips into sink on `threads` threads, in order."""

    def __init__(self, sink: Sink, level: int = DEFAULT_LEVEL, threads: int | None = None) -> None:
        self.sink = sink
        self.level = level
        threads = threads or default_threads()
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gzip")
        self.window = 2 * threads  # members in flight: bounds memory to a few MiB
        self.pending: deque[Future[bytes]] = deque()
        self.buf = bytearray()

    def _submit(self, chunk: bytes | memoryview) -> None:
        if len(self.pending) >= self.window:
            self.sink.write(self.pending.popleft().result())
        self.pending.append(self.pool.submit(deflate.gzip_compress, chunk, self.level))

    def write(self, data: bytes | memoryview) -> None:
        mv = memoryview(data)
        if self.buf:
            need = CHUNK - len(self.buf)
            self.buf += mv[:need]
            mv = mv[need:]
            if len(self.buf) < CHUNK:
                return
            self._submit(bytes(self.buf))
            self.buf.clear()
        while len(mv) >= CHUNK:
            self._submit(mv[:CHUNK])
            mv = mv[CHUNK:]
        self.buf += mv

    def close(self) -> None:
        """Compress what is buffered and write every member; the sink stays open."""
        try:
            if self.buf or not self.pending:
                self._submit(bytes(self.buf))
                self.buf.clear()
            while self.pending:
                self.sink.write(self.pending.popleft().result())
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        """Stop without writing anything more (on error or Ctrl-C)."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.pending.clear()
