"""What a disk format module declares: its probe, reader and checker, and the file names it goes by.

qemu's block drivers each fill one BlockDriver table (probe, open, read,
check); boxpack's formats each fill one Format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..bytesource import ByteSource
from ..disk import Reader
from ..findings import Findings

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
