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
import zlib
from array import array
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from construct import Const, Int8ub, Int32ub, Int64ub, Padding, Struct

from .errors import BoxpackError
from .source import CLUSTER, read_table

if TYPE_CHECKING:
    from .source import ByteSource, Source

MAGIC = b"QFI\xfb"
CLUSTER_BITS = 16
assert 1 << CLUSTER_BITS == CLUSTER
OFLAG_COPIED = 1 << 63
L2_ENTRIES = CLUSTER // 8  # one L2 table maps 512 MiB
REFCOUNT_ORDER = 4  # 16-bit refcounts, the only width v2 knows
REFBLOCK_ENTRIES = CLUSTER * 8 // (1 << REFCOUNT_ORDER)
V3_HEADER_LENGTH = 112
_RUN = 64  # data clusters joined into one 4 MiB piece for the compressor

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

    def stream(self, disk: "Source") -> Iterator[bytes]:
        """The whole image, in order: the tables, then the data clusters from a second scan of the disk."""
        yield from self.metadata()
        expected = iter(self.clusters)
        run: list[bytes | memoryview] = []  # consecutive clusters, written as one piece
        for idx, data in disk.scan():
            if idx != next(expected, None):
                raise BoxpackError(f"{disk.path}: the disk changed while it was being packed")
            run.append(data)
            if len(run) == _RUN:
                yield b"".join(run)
                run.clear()
        if run:
            yield b"".join(run)
        if next(expected, None) is not None:
            raise BoxpackError(f"{disk.path}: the disk changed while it was being packed")


# --- reading -------------------------------------------------------------------------------

INCOMPAT_DIRTY, INCOMPAT_CORRUPT, INCOMPAT_DATA_FILE, INCOMPAT_COMPRESSION, INCOMPAT_EXTL2 = (1 << i for i in range(5))
L1E_OFFSET_MASK = 0x00FFFFFFFFFFFE00
L2E_OFFSET_MASK = 0x00FFFFFFFFFFFE00
OFLAG_COMPRESSED = 1 << 62
OFLAG_ZERO = 1


class Qcow2Reader:
    """Reads a qcow2 image's active L1/L2 tables and clusters, in guest order.

    Compressed clusters (raw deflate; qemu writes a 4 KiB window, any window
    up to 32 KiB reads) are returned as callables, so the caller inflates them
    on its thread pool. Features boxpack cannot honour are refused by name.
    """

    def __init__(self, data: "ByteSource", name: str) -> None:
        self.data, self.name = data, name
        raw = data.pread(0, 512)
        if len(raw) < HeaderV2.sizeof() or raw[:4] != MAGIC:
            raise BoxpackError(f"{name}: not a qcow2 image (too short or bad magic)")
        h = HeaderV2.parse(raw)
        if h.version not in (2, 3):
            raise BoxpackError(f"{name}: qcow2 version {h.version} is not supported (only 2 and 3)")
        self.version = h.version
        incompat, compression_type = 0, 0
        if h.version == 3:
            tail = HeaderV3Tail.parse(raw[72:112].ljust(40, b"\0"))
            incompat = tail.incompatible_features
            compression_type = tail.compression_type if tail.header_length > 104 else 0
            if tail.refcount_order > 6:
                raise BoxpackError(f"{name}: qcow2 refcount_order {tail.refcount_order} is invalid")
        if h.backing_file_offset:
            backing = data.pread(h.backing_file_offset, min(h.backing_file_size, 1023)).decode("utf-8", "replace")
            raise BoxpackError(
                f"{name}: has a backing file ({backing}); make it standalone first (qemu-img convert -O qcow2)"
            )
        if h.crypt_method:
            raise BoxpackError(f"{name}: is encrypted; boxes cannot carry encrypted qcow2 images")
        for bit, what in (
            (INCOMPAT_CORRUPT, "is marked corrupt (run qemu-img check -r all)"),
            (INCOMPAT_DATA_FILE, "keeps its data in an external data file, which is not supported"),
            (INCOMPAT_EXTL2, "uses extended L2 entries (subclusters), which are not supported"),
        ):
            if incompat & bit:
                raise BoxpackError(f"{name}: {what}")
        if incompat & INCOMPAT_COMPRESSION or compression_type:
            raise BoxpackError(f"{name}: uses zstd-compressed clusters, which are not supported (recompress with zlib)")
        unknown = incompat & ~(INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2)
        if unknown:
            raise BoxpackError(f"{name}: has unknown incompatible qcow2 features {unknown:#x}")
        if not 9 <= h.cluster_bits <= 21:
            raise BoxpackError(f"{name}: cluster_bits {h.cluster_bits} is out of qemu's range 9..21")
        self.cluster_bits = h.cluster_bits
        self.cluster_size = 1 << h.cluster_bits
        self.size = h.size
        entries = self.cluster_size // 8
        needed = _ceil_div(h.size, self.cluster_size * entries)
        if h.l1_size < needed:
            raise BoxpackError(f"{name}: L1 table too small ({h.l1_size} entries for {needed} needed)")
        if h.l1_table_offset % self.cluster_size or h.l1_table_offset + needed * 8 > data.size:
            raise BoxpackError(f"{name}: L1 table at byte {h.l1_table_offset} is misaligned or past the end of the file")
        self.l1_offset = h.l1_table_offset
        self.l1_entries = needed
        self.format = f"qcow2 v{h.version}"
        self.data_estimate = min(data.size, h.size)

    def _table(self, offset: int, count: int) -> array:
        return read_table(self.data, offset, count, "Q", big_endian=True, what="table")

    def compressed_range(self, entry: int) -> tuple[int, int]:
        """(host byte offset, bytes it may span) of a compressed L2 entry: the sector count is of extra sectors."""
        x = 62 - (self.cluster_bits - 8)
        host = entry & ((1 << x) - 1)
        sectors = ((entry >> x) & ((1 << (self.cluster_bits - 8)) - 1)) + 1
        return host, sectors * 512 - host % 512

    def pieces(self) -> Iterator[tuple[int, "bytes | Callable[[], bytes]"]]:
        cs, entries, size = self.cluster_size, self.cluster_size // 8, self.data.size
        for i, l1e in enumerate(self._table(self.l1_offset, self.l1_entries)):
            l2_offset = l1e & L1E_OFFSET_MASK
            if not l2_offset:
                continue
            if l2_offset % cs or l2_offset + cs > size:
                raise BoxpackError(f"{self.name}: L2 table at byte {l2_offset} is misaligned or past the end of the file ({size} bytes)")
            for j, l2e in enumerate(self._table(l2_offset, entries)):
                if not l2e:
                    continue
                guest = (i * entries + j) * cs
                if guest >= self.size:
                    break
                if l2e & OFLAG_COMPRESSED:
                    host, length = self.compressed_range(l2e)
                    if host >= size:
                        raise BoxpackError(f"{self.name}: compressed cluster at byte {host} is past the end of the file")
                    payload = self.data.pread(host, min(length, size - host))
                    yield guest, self._inflater(payload, guest)
                    continue
                if l2e & OFLAG_ZERO:
                    continue
                host = l2e & L2E_OFFSET_MASK
                if not host:
                    continue
                if host % cs or host >= size:
                    raise BoxpackError(f"{self.name}: data cluster at byte {host} is misaligned or past the end of the file")
                yield guest, self.data.pread(host, cs).ljust(cs, b"\0")

    def _inflater(self, payload: bytes, guest: int) -> "Callable[[], bytes]":
        cs, name = self.cluster_size, self.name

        def inflate() -> bytes:
            try:
                out = zlib.decompressobj(-15).decompress(payload, cs)
            except zlib.error as e:
                raise BoxpackError(f"{name}: compressed cluster at guest byte {guest} does not inflate ({e})") from None
            if len(out) != cs:
                raise BoxpackError(f"{name}: compressed cluster at guest byte {guest} inflates to {len(out)} bytes, not {cs}")
            return out

        return inflate

    def close(self) -> None:
        self.data.close()


# --- checking ------------------------------------------------------------------------------

L1E_RESERVED_MASK = 0x7F000000000001FF
L2E_STD_RESERVED_MASK = 0x3F000000000001FE
REFT_RESERVED_MASK = 0x1FF
_REFCOUNT_ARRAYS = {3: "B", 4: "H", 5: "I", 6: "Q"}
MAX_CHECKED_CLUSTERS = 1 << 24  # 1 TiB of image at 64 KiB clusters: 64 MiB of counters
MAX_CHECKED_TABLE = 64 * 1024 * 1024


def check(data: "ByteSource", name: str) -> tuple[dict, list[tuple[str, str, str]]]:
    """What `qemu-img check` checks, from the image's metadata alone: (facts, findings).

    Findings are (code, severity, message). Tables are read in ascending file
    order, so an image inside a box is checked as it streams by; a layout that
    would need going back is reported, not guessed at.
    """
    findings: list[tuple[str, str, str]] = []
    reader = Qcow2Reader(data, name)  # header rules: raises BoxpackError for what cannot be read at all
    h = HeaderV2.parse(data.pread(0, 72))
    order = HeaderV3Tail.parse(data.pread(72, 40).ljust(40, b"\0")).refcount_order if h.version == 3 else 4
    cs = reader.cluster_size
    facts = {
        "format": reader.format,
        "virtual_size": reader.size,
        "cluster_size": cs,
        "file_size": data.size,
        "refcount_bits": 1 << order,
    }
    for what, offset, length in (
        ("refcount table", h.refcount_table_offset, h.refcount_table_clusters * cs),
        ("L1 table", h.l1_table_offset, h.l1_size * 8),
    ):
        if offset % cs or offset + length > data.size or length > MAX_CHECKED_TABLE:
            findings.append(("qcow2-bounds", "error", f"{name}: {what} ({length} bytes at byte {offset}) does not fit in the file"))
            return facts, findings
    host_clusters = _ceil_div(data.size, cs) + 1
    if host_clusters > MAX_CHECKED_CLUSTERS:
        findings.append(("qcow2-unchecked", "info", f"{name}: {host_clusters} host clusters; refcounts not checked"))
        return facts, findings
    expected = array("I", bytes(4 * host_clusters))
    oob: list[str] = []

    def use(offset: int, length: int, what: str) -> None:
        if offset + length > data.size + cs:  # the last cluster may be short in the file
            oob.append(f"{what} at byte {offset} is past the end of the file ({data.size} bytes)")
            return
        for c in range(offset // cs, _ceil_div(offset + length, cs)):
            expected[c] += 1

    use(0, cs, "header")
    use(h.refcount_table_offset, h.refcount_table_clusters * cs, "refcount table")
    use(h.l1_table_offset, _ceil_div(h.l1_size * 8, cs) * cs, "L1 table")
    # Tables discovered while reading, visited in file order: (offset, kind, index).
    pending = [(h.refcount_table_offset, "reftable", 0), (h.l1_table_offset, "l1", 0)]
    refblocks: dict[int, int] = {}
    stored = None
    allocated = compressed = 0
    copied_l1: list[tuple[int, int]] = []
    copied_l2: list[tuple[int, int]] = []
    if h.nb_snapshots:
        findings.append(("qcow2-snapshots", "info", f"{name}: has {h.nb_snapshots} internal snapshot(s); refcounts not checked"))
    while pending:
        pending.sort()
        offset, kind, index = pending.pop(0)
        if kind == "reftable":
            table = reader._table(offset, h.refcount_table_clusters * cs // 8)
            for i, e in enumerate(table):
                if e & REFT_RESERVED_MASK:
                    findings.append(("qcow2-reserved-bits", "error", f"{name}: refcount table entry {i} has reserved bits set"))
                if e & ~REFT_RESERVED_MASK:
                    refblocks[i] = e & ~REFT_RESERVED_MASK
                    use(refblocks[i], cs, "refcount block")
                    pending.append((refblocks[i], "refblock", i))
        elif kind == "refblock":
            if order not in _REFCOUNT_ARRAYS:
                continue
            block = read_table(data, offset, cs * 8 >> order, _REFCOUNT_ARRAYS[order], big_endian=True, what="refcount block")
            if stored is None:
                stored = {}
            stored[index] = block
        elif kind == "l1":
            for i, e in enumerate(reader._table(offset, h.l1_size)):
                if e & L1E_RESERVED_MASK:
                    findings.append(("qcow2-reserved-bits", "error", f"{name}: L1 entry {i} has reserved bits set"))
                l2 = e & L1E_OFFSET_MASK
                if l2:
                    if l2 % cs:
                        findings.append(("qcow2-unaligned", "error", f"{name}: L2 table {i} at byte {l2} is not cluster-aligned"))
                        continue
                    use(l2, cs, f"L2 table {i}")
                    copied_l1.append((l2, e & OFLAG_COPIED))
                    if l2 + cs <= data.size:
                        pending.append((l2, "l2", i))
        elif kind == "l2":
            for j, e in enumerate(reader._table(offset, cs // 8)):
                if not e:
                    continue
                if e & OFLAG_COMPRESSED:
                    if e & OFLAG_COPIED:
                        findings.append(("qcow2-copied", "error", f"{name}: compressed cluster {index}/{j} carries OFLAG_COPIED"))
                    host, length = reader.compressed_range(e)
                    use(host, length, "compressed cluster")  # every host cluster its sectors touch
                    compressed += 1
                    continue
                if e & L2E_STD_RESERVED_MASK:
                    findings.append(("qcow2-reserved-bits", "error", f"{name}: L2 entry {index}/{j} has reserved bits set"))
                host = e & L2E_OFFSET_MASK
                if host:
                    if host % cs:
                        findings.append(("qcow2-unaligned", "error", f"{name}: data cluster at byte {host} is not aligned"))
                        continue
                    use(host, cs, "data cluster")
                    copied_l2.append((host, e & OFLAG_COPIED))
                    allocated += 1
    facts.update(allocated_clusters=allocated, compressed_clusters=compressed)
    for message in oob[:5]:
        findings.append(("qcow2-bounds", "error", f"{name}: {message}"))
    if stored is None or h.nb_snapshots:
        return facts, findings
    per_block = cs * 8 // (1 << order)

    def refcount(cluster: int) -> int:
        block = stored.get(cluster // per_block)
        return block[cluster % per_block] if block is not None else 0

    leaks, errors = [], []
    for c in range(_ceil_div(data.size, cs)):  # like qemu-img, clusters past the end of the file are not compared
        r1, r2 = refcount(c), expected[c]
        if r1 > r2:
            leaks.append(c)
        elif r1 < r2:
            errors.append((c, r1, r2))
    for c, r1, r2 in errors[:5]:
        code = "qcow2-overlap" if r2 > 1 and r1 else "qcow2-refcount"
        findings.append((code, "error", f"{name}: cluster {c} has refcount {r1} but {r2} references"
                         + (" (two things use it)" if r2 > 1 else "")))
    if leaks:
        findings.append(("qcow2-leak", "warning", f"{name}: {len(leaks)} leaked cluster(s) (refcount without a reference), first {leaks[0]}"))
    for what, entries in (("L2 table", copied_l1), ("data cluster", copied_l2)):
        for host, flag in entries:
            if bool(flag) != (refcount(host // cs) == 1):
                findings.append(("qcow2-copied", "error", f"{name}: {what} at byte {host}: OFLAG_COPIED does not match its refcount"))
                break
    return facts, findings
