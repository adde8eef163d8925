"""The disk cases every writer must handle, built as sparse files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

MIB = 1024 * 1024
GIB = 1024 * MIB
CLUSTER = 64 * 1024


def _write(path: Path, size: int, pieces: list[tuple[int, bytes]]) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in pieces:
            f.seek(offset)
            f.write(data)
    return path


def sparse_with_holes(p: Path) -> Path:
    return _write(p, 256 * MIB, [(0, os.urandom(3 * CLUSTER)), (100 * MIB, b"hello" * 20000), (200 * MIB, os.urandom(MIB))])


def allocated_with_zero_runs(p: Path) -> Path:
    """Every byte written (no holes): the zero runs must still be found by reading."""
    data = bytearray()
    for i in range(48):
        data += os.urandom(CLUSTER) if i % 3 == 0 else bytes(CLUSTER)
    data += bytes(5 * MIB) + os.urandom(1024) + bytes(CLUSTER)
    return _write(p, len(data), [(0, bytes(data))])


def unaligned_tail(p: Path) -> Path:
    """Size not a multiple of the cluster size, with data in the very last sector."""
    size = 40 * MIB + 7 * 512
    return _write(p, size, [(5 * MIB, os.urandom(4096)), (size - 512, b"\xab" * 512)])


def straddling(p: Path) -> Path:
    """Writes that cross cluster (and 512 MiB L2 table) boundaries."""
    return _write(
        p,
        GIB + 3 * MIB,
        [(CLUSTER - 100, os.urandom(300)), (3 * CLUSTER - 7, b"x" * (2 * CLUSTER + 14)), (512 * MIB - 50, os.urandom(100))],
    )


def larger_than_4gib(p: Path) -> Path:
    return _write(p, 5 * GIB + 512, [(4096, os.urandom(8192)), (4 * GIB + 12345, os.urandom(CLUSTER * 2)), (5 * GIB, b"z" * 512)])


def empty_sparse(p: Path) -> Path:
    return _write(p, 3 * GIB, [])


def all_zero_written(p: Path) -> Path:
    return _write(p, 8 * MIB, [(0, bytes(8 * MIB))])


CASES: dict[str, Callable[[Path], Path]] = {
    "sparse_with_holes": sparse_with_holes,
    "allocated_with_zero_runs": allocated_with_zero_runs,
    "unaligned_tail": unaligned_tail,
    "straddling": straddling,
    "larger_than_4gib": larger_than_4gib,
    "empty_sparse": empty_sparse,
    "all_zero_written": all_zero_written,
}
