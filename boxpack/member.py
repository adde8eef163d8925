"""What a provider lists and the output stage writes: the files of a box, each of known size, as a stream."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass


class Deflated:
    """A piece of a member already compressed as a whole gzip member (disk/pieces.py), which the box's gzip
    copies as it is; len() is the length of the data it holds, as the tar member counts its bytes."""

    __slots__ = ("member", "length")

    def __init__(self, member: bytes, length: int) -> None:
        self.member = member
        self.length = length

    def __len__(self) -> int:
        return self.length


Chunk = bytes | bytearray | memoryview | Deflated


@dataclass
class Member:
    """One file of the box: its name, exact size, and a callable that yields its bytes (or Deflated pieces).

    stored marks content that is already compressed, which the box's gzip stores as it is.
    """

    name: str
    size: int
    chunks: Callable[[], Iterable[Chunk]]
    stored: bool = False

    @classmethod
    def from_bytes(cls, name: str, data: bytes) -> Member:
        return cls(name, len(data), lambda: (data,))
