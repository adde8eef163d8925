"""What a disk format module declares: its probe, reader and checker, and the file names it goes by.

qemu's block drivers each fill one BlockDriver table (probe, open, read,
check); boxpack's formats each fill one Format.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from ..disk.bytesource import ByteSource
from ..disk.pieces import PIECE, Piece
from ..disk.source import CLUSTER, Reader
from ..errors import BadInput, BoxpackError, InternalError
from ..findings import Findings
from ..member import Chunk

R = TypeVar("R")

HEAD = 4096  # bytes at the start of a file that every probe may look at
TAIL = 1024  # and at its end (VHD's footer, DMG's koly block); empty when reading a stream


@dataclass(frozen=True)
class Format:
    name: str  # as users know it: "qcow2", "VHDX"
    probe: Callable[[bytes, bytes], bool]  # (head, tail) -> is it this format?
    reader: Callable[[ByteSource, str], Reader] | None = None  # None: recognised but not readable
    check: Callable[[ByteSource, str, int], tuple[dict, Findings]] | None = None  # (data, name, threads)
    suffixes: tuple[str, ...] = ()  # file names that suggest it (a box member, when no probe matches)
    refusal: str = ""  # why boxpack refuses a format it has no reader for


def block_pieces(
    data: ByteSource, blocks: Iterable[tuple[int, int]], block_size: int, virtual_size: int, name: str
) -> Iterator[tuple[int, bytes]]:
    """The data of allocated blocks, (guest byte offset, bytes), for formats that map fixed-size blocks
    (VHD, VHDX, VDI). blocks are (block index, file byte offset) in ascending index order; each is
    checked against the file, and a block is read in 64 KiB pieces where it is aligned to them."""
    step = CLUSTER if block_size % CLUSTER == 0 else block_size
    for index, host in _distinct(blocks, name):
        guest = index * block_size
        length = min(block_size, virtual_size - guest)
        if length <= 0:
            raise BadInput(f"{name}: block {index} lies past the end of the virtual disk ({virtual_size} bytes)")
        if host < 0 or host + length > data.size:
            raise BadInput(f"{name}: block {index} at byte {host} is past the end of the file ({data.size} bytes)")
        for off in range(0, length, step):
            n = min(step, length - off)
            yield guest + off, data.pread(host + off, n)


def _distinct(blocks: Iterable[tuple[int, int]], name: str) -> Iterator[tuple[int, int]]:
    """The blocks, each at a place of its own in the file. Two map entries naming one place are a corrupt
    image (qemu's vdi_co_check: "block index also used by"), and millions of them naming one small block
    would cost minutes: with every place distinct and inside the file, the work follows the file's size."""
    seen: set[int] = set()
    for index, host in blocks:
        if host in seen:
            raise BadInput(f"{name}: block {index} is stored at byte {host}, where another block is: the map is corrupt")
        seen.add(host)
        yield index, host


def open_for_check(reader_class: Callable[[ByteSource, str], R], data: ByteSource, name: str, code: str,
                   findings: Findings) -> R | None:
    """A checker's opening: the format's reader, whose constructor applies the header rules, or None with
    the first broken rule as an error finding under code (a checker reports, never raises)."""
    try:
        return reader_class(data, name)
    except BoxpackError as e:
        findings.add(code, "error", str(e))
        return None


def check_blocks(reader, data: ByteSource, name: str, code: str, findings: Findings,
                 rule: Callable[[int, int], str | None] | None = None) -> int:
    """Every allocated block of a block-mapped disk (VHD, VHDX, VDI, Parallels) inside the file; returns how many
    there are. reader offers allocated(), block_size and size; a map that cannot be read is a finding too. rule:
    the format's own placement rule, (index, byte offset) -> what is wrong, reported for the first 3 blocks
    that break it, in the same walk of the map."""
    allocated = broken = 0
    try:
        for index, host in _distinct(reader.allocated(), name):
            allocated += 1
            if host + min(reader.block_size, reader.size - index * reader.block_size) > data.size:
                findings.add(code, "error", f"{name}: block {index} at byte {host} is past the end of the file")
            problem = rule(index, host) if rule else None
            if problem:
                broken += 1
                if broken <= 3:
                    findings.add(code, "error", f"{name}: {problem}")
    except BoxpackError as e:
        findings.add(code, "error", str(e))
    return allocated


def stored_blocks(pieces: Iterable[Piece], per_block: int) -> Iterator[Chunk]:
    """The data of every block that holds any, whole and in guest order: the data area of the block-mapped
    writers (VHDX, Parallels), whose map gives each such block the next place. A block is a whole number of
    pieces (disk/pieces.py), so each piece lies inside one block, with zeros where the disk has none."""
    if per_block % PIECE:
        raise InternalError(f"internal error: a block of {per_block} clusters is not a whole number of pieces")
    block, filled = -1, 0
    for first, count, data in pieces:
        b, slot = divmod(first, per_block)
        if b != block:
            if block >= 0:
                yield bytes((per_block - filled) * CLUSTER)
            block, filled = b, 0
        if slot > filled:
            yield bytes((slot - filled) * CLUSTER)
        yield data
        filled = slot + count
    if block >= 0:
        yield bytes((per_block - filled) * CLUSTER)
