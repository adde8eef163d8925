"""qcow2 writer: a complete image laid out up front and streamed in one pass.

References: qemu docs/interop/qcow2.rst (format), block/qcow2.h (constants),
block/qcow2-refcount.c (what `qemu-img check` recomputes).

The layout is header, refcount table, refcount blocks, L1 table, L2 tables,
then the data clusters in guest order. Every host cluster is used exactly once,
so every refcount is 1 and every L1/L2 entry carries OFLAG_COPIED. Because the
layout depends only on the data map, the image's exact size is known before a
byte is written and the image can stream straight into a tar member.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterator

from construct import Const, Int8ub, Int32ub, Int64ub, Padding, Struct

from .source import CLUSTER, RawDisk

MAGIC = b"QFI\xfb"
CLUSTER_BITS = 16
assert 1 << CLUSTER_BITS == CLUSTER
OFLAG_COPIED = 1 << 63
L2_ENTRIES = CLUSTER // 8  # one L2 table maps 512 MiB
REFCOUNT_ORDER = 4  # 16-bit refcounts, the only width v2 knows
REFBLOCK_ENTRIES = CLUSTER * 8 // (1 << REFCOUNT_ORDER)
V3_HEADER_LENGTH = 112
_DATA_RUN = 64  # clusters read per source read: 4 MiB

# The v2 header: 72 bytes, big-endian.
HeaderV2 = Struct(
    "magic" / Const(MAGIC),
    "version" / Int32ub,
    "backing_file_offset" / Int64ub,
    "backing_file_size" / Int32ub,
    "cluster_bits" / Int32ub,
    "size" / Int64ub,
    "crypt_method" / Int32ub,
    "l1_size" / Int32ub,
    "l1_table_offset" / Int64ub,
    "refcount_table_offset" / Int64ub,
    "refcount_table_clusters" / Int32ub,
    "nb_snapshots" / Int32ub,
    "snapshots_offset" / Int64ub,
)

# The fields v3 adds after byte 72, as qemu writes them (header_length 112).
HeaderV3Tail = Struct(
    "incompatible_features" / Int64ub,
    "compatible_features" / Int64ub,
    "autoclear_features" / Int64ub,
    "refcount_order" / Int32ub,
    "header_length" / Int32ub,
    "compression_type" / Int8ub,
    Padding(7),
)

COMPAT_VERSIONS = {"1.1": 3, "0.10": 2}


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _be64(values: array) -> bytes:
    """array('Q') as big-endian bytes."""
    if sys.byteorder == "little":
        values = array("Q", values)
        values.byteswap()
    return values.tobytes()


class Qcow2Layout:
    """Where every table and data cluster of the image goes.

    virtual_size is the guest disk size in bytes; clusters the sorted guest
    cluster indices that hold data (the source's data map).
    """

    def __init__(self, virtual_size: int, clusters: array, version: int = 3) -> None:
        self.virtual_size = virtual_size
        self.clusters = clusters
        self.version = version
        self.l1_size = _ceil_div(virtual_size, CLUSTER * L2_ENTRIES)
        self.l1_clusters = max(1, _ceil_div(self.l1_size * 8, CLUSTER))
        #: L1 indices that need an L2 table, ascending.
        self.l2_tables = sorted({idx // L2_ENTRIES for idx in clusters})
        self.table_clusters, self.refblocks = self._refcount_sizes()
        self.refcount_table_offset = CLUSTER
        self.refblock_offset = self.refcount_table_offset + self.table_clusters * CLUSTER
        self.l1_offset = self.refblock_offset + self.refblocks * CLUSTER
        self.l2_offset = self.l1_offset + self.l1_clusters * CLUSTER
        self.data_offset = self.l2_offset + len(self.l2_tables) * CLUSTER
        self.host_clusters = self.data_offset // CLUSTER + len(clusters)
        #: The exact size of the image file in bytes.
        self.image_size = self.host_clusters * CLUSTER

    def _refcount_sizes(self) -> tuple[int, int]:
        """(table clusters, refcount blocks): qemu's fixed point, the metadata counts itself."""
        fixed = 1 + self.l1_clusters + len(self.l2_tables) + len(self.clusters)
        table, blocks = 1, 1
        while True:
            new_blocks = _ceil_div(fixed + table + blocks, REFBLOCK_ENTRIES)
            new_table = _ceil_div(new_blocks * 8, CLUSTER)
            if (new_blocks, new_table) == (blocks, table):
                return table, blocks
            table, blocks = new_table, new_blocks

    def header(self) -> bytes:
        fields = dict(
            version=self.version,
            backing_file_offset=0,
            backing_file_size=0,
            cluster_bits=CLUSTER_BITS,
            size=self.virtual_size,
            crypt_method=0,
            l1_size=self.l1_size,
            l1_table_offset=self.l1_offset,
            refcount_table_offset=self.refcount_table_offset,
            refcount_table_clusters=self.table_clusters,
            nb_snapshots=0,
            snapshots_offset=0,
        )
        head = HeaderV2.build(fields)
        if self.version >= 3:
            # The header extension list that follows is empty: its end marker is
            # the zero bytes after the header.
            head += HeaderV3Tail.build(
                dict(
                    incompatible_features=0,
                    compatible_features=0,
                    autoclear_features=0,
                    refcount_order=REFCOUNT_ORDER,
                    header_length=V3_HEADER_LENGTH,
                    compression_type=0,
                )
            )
        return head + bytes(CLUSTER - len(head))

    def metadata(self) -> Iterator[bytes]:
        """Every cluster before the data: header, refcounts, L1 and L2 tables."""
        yield self.header()
        table = array("Q", (self.refblock_offset + i * CLUSTER for i in range(self.refblocks)))
        yield _be64(table) + bytes(self.table_clusters * CLUSTER - len(table) * 8)
        used = self.host_clusters
        for b in range(self.refblocks):
            ones = min(REFBLOCK_ENTRIES, used - b * REFBLOCK_ENTRIES)
            yield b"\x00\x01" * ones + bytes((REFBLOCK_ENTRIES - ones) * 2)
        l1 = array("Q", bytes(8 * self.l1_size))
        for i, t in enumerate(self.l2_tables):
            l1[t] = (self.l2_offset + i * CLUSTER) | OFLAG_COPIED
        yield _be64(l1) + bytes(self.l1_clusters * CLUSTER - self.l1_size * 8)
        yield from self._l2_tables()

    def _l2_tables(self) -> Iterator[bytes]:
        table = array("Q", bytes(CLUSTER))
        current = -1
        for rank, idx in enumerate(self.clusters):
            t, slot = divmod(idx, L2_ENTRIES)
            if t != current:
                if current >= 0:
                    yield _be64(table)
                    table = array("Q", bytes(CLUSTER))
                current = t
            table[slot] = (self.data_offset + rank * CLUSTER) | OFLAG_COPIED
        if current >= 0:
            yield _be64(table)

    def stream(self, disk: RawDisk, progress=None) -> Iterator[bytes]:
        """The whole image, in order, reading the data clusters from disk."""
        yield from self.metadata()
        clusters = self.clusters
        i, n = 0, len(clusters)
        while i < n:
            start = clusters[i]
            j = i + 1
            while j < n and j - i < _DATA_RUN and clusters[j] == start + (j - i):
                j += 1
            data = disk.read(start * CLUSTER, (j - i) * CLUSTER)
            yield data
            if progress:
                progress(len(data))
            i = j
