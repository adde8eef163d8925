"""What a provider lists and the output stage writes: the files of a box, each of known size, as a stream."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass
class Member:
    """One file of the box: its name, exact size, and a callable that yields its bytes.

    stored marks content that is already compressed, which the box's gzip stores as it is.
    """

    name: str
    size: int
    chunks: Callable[[], Iterable[bytes]]
    stored: bool = False

    @classmethod
    def from_bytes(cls, name: str, data: bytes) -> Member:
        return cls(name, len(data), lambda: (data,))
