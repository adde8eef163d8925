"""The disk's data, compressed once per run for every box that holds it as it is.

The disk members of the libvirt, qemu and utm boxes (qcow2), vmware_desktop's
(monolithicSparse VMDK), hyperv's (VHDX) and parallels' all carry the same data
clusters in the same order, between tables of their own. So the data is cut
into pieces, each a run of consecutive clusters inside one aligned MiB of the
disk, and each piece is compressed once, on the thread pool, into a gzip
member of its own, which every box copies into its gzip stream between its own
tables (concatenated members are one gzip file, RFC 1952 section 2.2): six
boxes cost one compression. The members are spooled to an anonymous temporary
file (PieceSpool) for the boxes after the first, and, for a source that is
costly to read again (a box), during the scan: a box converted from another
box reads and decompresses its source once.

A piece never crosses an aligned MiB, so it lies contiguous in every one of
those formats: qcow2 and monolithicSparse place data clusters one after the
other, and VHDX's and Parallels' blocks (1 MiB or larger, aligned) keep each
cluster at its place in the block. Pieces are cut by the disk alone, so a box
is the same bytes whatever other boxes the run makes and whatever the thread
count. Cutting at the disk's MiBs rather than at the tar stream's costs no
size where the data is contiguous (bench disk: 1.0000x); on a fragmented disk
pieces are shorter (measured there with libdeflate 6: pieces of 512 KiB cost
0.3%, 256 KiB 0.9%, 64 KiB 4.3%). No piece is primed with the one before it:
what precedes a piece differs between formats (zeros inside a VHDX block).
VirtualBox's grains are 64 KiB zlib streams of their own (formats/vmdk/stream.py):
reused as pieces, they would make every other box 4.3% larger, so a run with
VirtualBox compresses the data twice, once in grains and once in pieces.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import BadInput, InternalError
from ..member import Deflated
from ..ordered import OrderedPool
from .source import CLUSTER, Source, rescan

PIECE = 16  # clusters: one MiB, the smallest VHDX and Parallels block
RECORD = struct.Struct("<QII")  # a spooled piece: its first cluster, how many clusters, the member's length

Piece = tuple[int, int, "bytes | bytearray | Deflated"]  # (first cluster, clusters, data or its gzip member)


class _Run:
    """Gathers consecutive clusters into one piece; add() returns the piece it closed, if any."""

    def __init__(self) -> None:
        self.first = -1
        self.count = 0
        self.data = bytearray()

    def add(self, cluster: int, data: bytes | memoryview) -> tuple[int, int, bytearray] | None:
        done = None
        if self.count and (cluster != self.first + self.count or cluster // PIECE != self.first // PIECE):
            done = self.take()
        if not self.count:
            self.first = cluster
        self.data += data  # a copy: the scan's clusters are views of buffers it reuses
        self.count += 1
        return done

    def take(self) -> tuple[int, int, bytearray] | None:
        if not self.count:
            return None
        done = (self.first, self.count, self.data)
        self.first, self.count, self.data = -1, 0, bytearray()
        return done


def raw_pieces(disk: Source, clusters: Iterable[int]) -> Iterator[Piece]:
    """The pieces from a second scan of the disk, uncompressed: what a box written without gzip holds, and
    what the first box made from a raw disk compresses."""
    run = _Run()
    for cluster, data in rescan(disk, clusters):
        done = run.add(cluster, data)
        if done:
            yield done
    last = run.take()
    if last:
        yield last


class PieceSpool:
    """The disk's pieces as gzip members, compressed once and read by each box that holds them.

    Two ways to fill it. A disk that is costly to read again (a box's member, a
    compressed raw disk) is compressed as the scan feeds it (feed(), finish()),
    so its source is read and decompressed once. A raw disk is read again at
    little cost: then the first box compresses the pieces of a second scan as it
    writes them, overlapping compression with its tar, digest and writes, and
    keeps them for the boxes after it (keep), or, alone in the run, keeps nothing.
    """

    def __init__(self, compress: Callable[[bytes | bytearray], bytes], threads: int, spool_dir: Path | None,
                 keep: bool = True, during_scan: bool = False) -> None:
        self.compress = compress
        self.spool_dir = spool_dir
        self.keep = keep
        self.during_scan = during_scan  # fed by the scan (feed(), finish()), not by the first box
        self.file: BinaryIO | None = None
        self.pool: OrderedPool[tuple[int, int], bytes] = OrderedPool(threads, 4 * threads, "pieces")
        self.run = _Run()
        self.size = 0
        self.state = "empty"  # "filling", then "full": the pieces are in the file

    @classmethod
    def for_disk(cls, compress: Callable[[bytes | bytearray], bytes] | None, threads: int, spool_dir: Path | None,
                 readers: int, rereadable: bool) -> PieceSpool | None:
        """The one place that decides how a run compresses a disk's pieces, for readers boxes that hold the data as
        it is (compress None: the boxes are not gzipped). None when no box would read them; for a source that is
        costly to read again (a box, a compressed disk), compressed during the scan and kept; for one that is not
        (a raw disk), compressed by the first box as it is written, and kept only when another box reads them."""
        if compress is None or not readers:
            return None
        return cls(compress, threads, spool_dir, keep=readers > 1 or not rereadable, during_scan=not rereadable)

    def feed(self, cluster: int, data: bytes | memoryview) -> None:
        """One non-zero cluster of the scan, in ascending order."""
        self.state = "filling"
        done = self.run.add(cluster, data)
        if done:
            for piece in self._queue(*done):
                self._store(*piece)

    def finish(self) -> None:
        """After the scan: compress and spool what is left."""
        last = self.run.take()
        for piece in [*(self._queue(*last) if last else ()), *self.pool.drain()]:
            self._store(*piece)
        self._full()

    def pieces(self, raw: Callable[[], Iterator[Piece]]) -> Iterator[Piece]:
        """Every piece, in order: read back from the spool, or compressed now from raw's (a second scan)."""
        if self.state == "full":
            yield from self._read_back()
            return
        if self.state != "empty":
            raise InternalError("internal error: the pieces are read before they are all made")
        self.state = "filling"
        for first, count, data in raw():
            for piece in self._queue(first, count, data):
                yield self._store(*piece)
        for piece in self.pool.drain():
            yield self._store(*piece)
        self._full()

    def _queue(self, first: int, count: int, data: bytes | bytearray | Deflated) -> list[tuple[tuple[int, int], bytes]]:
        if isinstance(data, Deflated):
            raise InternalError("internal error: a compressed piece is compressed again")
        if len(data) != count * CLUSTER:
            raise InternalError(f"internal error: a piece of {count} clusters holds {len(data)} bytes")
        return self.pool.put((first, count), lambda: self.compress(data))

    def _store(self, tag: tuple[int, int], member: bytes) -> Piece:
        first, count = tag
        if self.keep:
            try:
                if self.file is None:
                    self.file = tempfile.TemporaryFile(dir=self.spool_dir, prefix=".boxpack-pieces-")
                self.file.write(RECORD.pack(first, count, len(member)))
                self.file.write(member)
            except OSError as e:
                raise BadInput(f"{self.spool_dir or tempfile.gettempdir()}: cannot write the spool file: {e.strerror}") from None
            self.size += RECORD.size + len(member)
        return first, count, Deflated(member, count * CLUSTER)

    def _full(self) -> None:
        self.pool.close()
        try:
            if self.file:
                self.file.flush()
        except OSError as e:
            raise BadInput(f"cannot write the spool file: {e.strerror}") from None
        self.state = "full"

    def _read_back(self) -> Iterator[Piece]:
        if not self.keep:
            raise InternalError("internal error: the pieces were not kept for a second box")
        pos = 0
        while pos < self.size:
            assert self.file is not None  # self.size > 0: a piece was written
            first, count, length = RECORD.unpack(_pread(self.file, RECORD.size, pos))
            member = _pread(self.file, length, pos + RECORD.size)
            pos += RECORD.size + length
            yield first, count, Deflated(member, count * CLUSTER)

    def close(self) -> None:
        self.pool.close()
        try:
            if self.file:
                self.file.close()
        except OSError:
            pass  # the last buffered write failed too, and was reported


def _pread(f: BinaryIO, length: int, offset: int) -> bytes:
    """Positioned reads: the spool is read once per box, from its start."""
    data = os.pread(f.fileno(), length, offset)
    if len(data) != length:
        raise InternalError("internal error: the spool file ended early")
    return data
