"""Raw disk images compressed as a whole: image.raw.zst, .raw.xz, .raw.gz, .raw.bz2.

mkosi writes them with CompressOutput=, and most distributions publish their
cloud images as .raw.xz. The file is decompressed as a stream, never written
out: each scan decompresses it from the start, so a provider whose layout
needs the data map first (qcow2, VHDX, monolithicSparse VMDK) costs two
decompressions, as for a disk inside a box. All-zero clusters are dropped as
for a sparse file. The disk's size is only known at the end of the stream,
which the first scan reaches before any provider needs it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ..disk.source import CLUSTER, SECTOR, Progress, read_head
from ..errors import BadInput, InternalError
from ..formats.raw import data_clusters
from . import archive

CHUNK = 4 * 1024 * 1024
ZERO_CHUNK = bytes(CHUNK)
# Real compressed disks inflate 10 to 1000 times (a mostly empty 64 GiB mkosi image: about 1000); zstd can
# make 320 GiB of zeros from 10 MB, which takes minutes to stream. A raw file's holes cost nothing instead.
# Small disks may inflate more (xz -0 makes 300 KiB of a 2 GiB disk): up to MIN_BUDGET, the ratio is not
# asked (16 GiB of zeros stream in 6 s a scan, measured here).
MAX_RATIO = 2000
MIN_BUDGET = 16 * 1024**3


def peek(path: Path, kind: str, n: int) -> bytes:
    """The first n decompressed bytes (fewer if the stream is shorter)."""
    with _open(path, kind) as (_, stream):
        return _read_full(stream, n, path, kind)


class CompressedRawDisk:
    """A raw disk compressed as a whole, streamed through its decompressor on every scan."""

    architecture: str | None = None
    rereadable = False

    def __init__(self, path: Path, kind: str) -> None:
        self.path = path
        self.kind = kind
        self.format = f"raw, {kind}-compressed"
        self.compressed_size = os.stat(path).st_size
        self.file_size = 0  # the decompressed size, set by the first scan
        self.head = bytes(CLUSTER)
        self._scanned = False

    @property
    def size(self) -> int:
        if not self._scanned:
            raise InternalError(f"internal error: {self.path}: the size of a compressed disk is known only after a scan")
        return -(-self.file_size // SECTOR) * SECTOR

    @property
    def padded(self) -> bool:
        return self._scanned and self.size != self.file_size

    def scan(self, progress: Progress = None) -> Iterator[tuple[int, bytes | memoryview]]:
        """Non-zero 64 KiB clusters, ascending, decompressed in 4 MiB pieces; progress counts compressed bytes."""
        total, consumed = 0, 0
        with _open(self.path, self.kind) as (raw, stream):
            while chunk := _read_full(stream, CHUNK, self.path, self.kind):
                if total == 0:
                    self.head = chunk[:CLUSTER].ljust(CLUSTER, b"\0")
                first = total // CLUSTER
                total += len(chunk)
                if len(chunk) < CHUNK:  # the last piece, padded to whole clusters
                    chunk = chunk.ljust(-(-len(chunk) // CLUSTER) * CLUSTER, b"\0")
                if chunk != ZERO_CHUNK:
                    yield from data_clusters(chunk, first)
                if progress:
                    pos = raw.tell()
                    progress(pos - consumed)
                    consumed = pos
        if total == 0:
            raise BadInput(f"{self.path}: the {self.kind} stream holds no data, so no disk")
        if self._scanned and total != self.file_size:
            raise BadInput(f"{self.path}: the disk changed while it was being packed")
        self.file_size, self._scanned = total, True

    def read(self, offset: int, length: int) -> bytes:
        return read_head(self.head, offset, length)

    def other_disks(self) -> list:
        return []

    def progress_total(self) -> int:
        return self.compressed_size

    def close(self) -> None:
        pass

    def __enter__(self) -> CompressedRawDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def _open(path: Path, kind: str) -> Iterator[tuple[BinaryIO, Any]]:
    """The file and its decompressing reader, closed together."""
    try:
        raw = open(path, "rb")
    except OSError as e:
        raise BadInput(f"{path}: cannot open: {e.strerror}") from None
    limit = max(MIN_BUDGET, MAX_RATIO * os.fstat(raw.fileno()).st_size)
    stream = archive.Budget(archive.decompressor(kind, raw), lambda: limit, str(path),
                        f"the {kind} stream inflates to more than {MAX_RATIO} times its size: a decompression bomb, or a "
                        f"mostly empty disk; decompress it to a (sparse) raw file first and pack that")
    try:
        yield raw, stream
    finally:
        try:
            stream.close()
        except archive.ARCHIVE_ERRORS:
            pass
        raw.close()


def _read_full(stream: Any, n: int, path: Path, kind: str) -> bytes:
    """n bytes, fewer only at the end of the stream; a corrupt or cut-short stream is an error, never a short disk."""
    parts, got = [], 0
    try:
        while got < n:
            part = stream.read(n - got)
            if not part:
                break
            parts.append(part)
            got += len(part)
    except archive.ARCHIVE_ERRORS as e:
        raise BadInput(f"{path}: the {kind} stream is corrupt or cut short ({e})") from None
    return b"".join(parts)
