"""qcow2: the libvirt box's disk format. Writer, reader and checker.

References: qemu docs/interop/qcow2.rst (format), block/qcow2.h (constants
and limits), block/qcow2-refcount.c (what `qemu-img check` recomputes).
Structures are in c_qcow2.py.

The writer lays out header, refcount table, refcount blocks, L1 table, L2
tables, then the data clusters in guest order. Every host cluster is used
exactly once, so every refcount is 1 and every L1/L2 entry carries
OFLAG_COPIED. Because the layout depends only on the data map, the image's
exact size is known before a byte is written and the image can stream
straight into a tar member.
"""

from __future__ import annotations

import heapq
import sys
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator

from ..errors import BadInput
from ..findings import Findings
from ..member import Chunk
from ..disk.bytesource import ByteSource, read_table, tables_ahead
from ..disk.source import CLUSTER
from ..disk.pieces import Piece
from .c_qcow2 import (INCOMPAT_COMPRESSION, INCOMPAT_CORRUPT, INCOMPAT_DATA_FILE, INCOMPAT_EXTL2, INCOMPAT_KNOWN,
                      L1E_OFFSET_MASK, L1E_RESERVED_MASK, L2E_OFFSET_MASK, L2E_STD_RESERVED_MASK, MAGIC,
                      MAX_CLUSTER_BITS, MAX_L1_BYTES, MAX_REFTABLE_BYTES, MIN_CLUSTER_BITS, OFLAG_COMPRESSED,
                      OFLAG_COPIED, OFLAG_ZERO, REFT_RESERVED_MASK, V3_HEADER_LENGTH, HeaderV2, HeaderV3Tail)

NAME = "qcow2"
SUFFIXES = (".qcow2", ".img")
CLUSTER_BITS = 16  # boxpack writes 64 KiB clusters, the size of its data map's clusters
L2_ENTRIES = CLUSTER // 8  # one L2 table maps 512 MiB
REFCOUNT_ORDER = 4  # 16-bit refcounts, the only width v2 knows
REFBLOCK_ENTRIES = CLUSTER * 8 // (1 << REFCOUNT_ORDER)


def probe(head: bytes, tail: bytes) -> bool:
    return head[:4] == MAGIC


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

    def stream(self, pieces: Iterable[Piece]) -> Iterator[Chunk]:
        """The whole image, in order: the tables, then the data clusters, from the disk's pieces."""
        yield from self.metadata()
        yield from (data for _, _, data in pieces)


# --- reading -------------------------------------------------------------------------------


class Qcow2Reader:
    """Reads a qcow2 image's active L1/L2 tables and clusters, in guest order.

    L2 tables are read in file order, and all of those that come before the
    first data cluster are read first: boxpack's own layout (every table
    before the data) and qemu's (each table before its data) both stream from
    a box without going back. Compressed clusters (raw deflate; any window up
    to 32 KiB reads) are returned as callables, so the caller inflates them on
    its thread pool. Features boxpack cannot honour are refused by name.
    """

    def __init__(self, data: ByteSource, name: str) -> None:
        self.data, self.name = data, name
        raw = data.pread(0, 512)
        if len(raw) < HeaderV2.sizeof() or raw[:4] != MAGIC:
            raise BadInput(f"{name}: not a qcow2 image (too short or bad magic)")
        h = HeaderV2.parse(raw)
        if h.version not in (2, 3):
            raise BadInput(f"{name}: qcow2 version {h.version} is not supported (only 2 and 3)")
        self.version = h.version
        self.refcount_order = 4
        incompat, compression_type = 0, 0
        if h.version == 3:
            tail = HeaderV3Tail.parse(raw[72:112].ljust(40, b"\0"))
            incompat = tail.incompatible_features
            compression_type = tail.compression_type if tail.header_length > 104 else 0
            if tail.refcount_order > 6:
                raise BadInput(f"{name}: qcow2 refcount_order {tail.refcount_order} is invalid")
            self.refcount_order = tail.refcount_order
        if h.backing_file_offset:
            backing = data.pread(h.backing_file_offset, min(h.backing_file_size, 1023)).decode("utf-8", "replace")
            raise BadInput(
                f"{name}: has a backing file ({backing!r}); make it standalone first (qemu-img convert -O qcow2)"
            )
        if h.crypt_method:
            raise BadInput(f"{name}: is encrypted; boxes cannot carry encrypted qcow2 images")
        for bit, what in (
            (INCOMPAT_CORRUPT, "is marked corrupt (run qemu-img check -r all)"),
            (INCOMPAT_DATA_FILE, "keeps its data in an external data file, which is not supported"),
            (INCOMPAT_EXTL2, "uses extended L2 entries (subclusters), which are not supported"),
        ):
            if incompat & bit:
                raise BadInput(f"{name}: {what}")
        if incompat & INCOMPAT_COMPRESSION or compression_type:
            raise BadInput(f"{name}: uses zstd-compressed clusters, which are not supported (recompress with zlib)")
        if incompat & ~INCOMPAT_KNOWN:
            raise BadInput(f"{name}: has unknown incompatible qcow2 features {incompat & ~INCOMPAT_KNOWN:#x}")
        if not MIN_CLUSTER_BITS <= h.cluster_bits <= MAX_CLUSTER_BITS:
            raise BadInput(f"{name}: cluster_bits {h.cluster_bits} is out of qemu's range {MIN_CLUSTER_BITS}..{MAX_CLUSTER_BITS}")
        self.header = h
        self.cluster_bits = h.cluster_bits
        self.cluster_size = 1 << h.cluster_bits
        self.size = h.size
        entries = self.cluster_size // 8
        needed = _ceil_div(h.size, self.cluster_size * entries)
        if h.l1_size < needed:
            raise BadInput(f"{name}: L1 table too small ({h.l1_size} entries for {needed} needed)")
        if needed * 8 > MAX_L1_BYTES:  # qcow2_do_open refuses it too (block/qcow2.c)
            raise BadInput(f"{name}: virtual size {h.size} needs an L1 table larger than qemu's limit of {MAX_L1_BYTES} bytes")
        if h.l1_table_offset % self.cluster_size or h.l1_table_offset + needed * 8 > data.size:
            raise BadInput(f"{name}: L1 table at byte {h.l1_table_offset} is misaligned or past the end of the file")
        self.l1_offset = h.l1_table_offset
        self.l1_entries = needed
        self.format = f"qcow2 v{h.version}"
        self.data_estimate = min(data.size, h.size)

    def _table(self, offset: int, count: int, what: str = "table") -> array:
        return read_table(self.data, offset, count, "Q", big_endian=True, what=what)

    def compressed_range(self, entry: int) -> tuple[int, int]:
        """(host byte offset, bytes it may span) of a compressed L2 entry: the sector count is of extra sectors."""
        x = 62 - (self.cluster_bits - 8)
        host = entry & ((1 << x) - 1)
        sectors = ((entry >> x) & ((1 << (self.cluster_bits - 8)) - 1)) + 1
        return host, sectors * 512 - host % 512

    def _host(self, l2e: int) -> int:
        return self.compressed_range(l2e)[0] if l2e & OFLAG_COMPRESSED else l2e & L2E_OFFSET_MASK

    def _l2_offsets(self) -> dict[int, int]:
        """{L1 index: L2 table offset} for the tables in use, each checked against the file."""
        cs, size = self.cluster_size, self.data.size
        tables = {}
        for i, l1e in enumerate(self._table(self.l1_offset, self.l1_entries, "L1 table")):
            offset = l1e & L1E_OFFSET_MASK
            if not offset:
                continue
            if offset % cs or offset + cs > size:
                raise BadInput(f"{self.name}: L2 table at byte {offset} is misaligned or past the end of the file ({size} bytes)")
            tables[i] = offset
        return tables

    def _used(self, offset: int) -> tuple[array, array]:
        """An L2 table as (slots, entries) of its non-zero entries: memory grows with the data, not the disk."""
        slots, used = array("I"), array("Q")
        for j, e in enumerate(self._table(offset, self.cluster_size // 8, "L2 table")):
            if e:
                slots.append(j)
                used.append(e)
        return slots, used

    def pieces(self) -> Iterator[tuple[int, "bytes | Callable[[], bytes]"]]:
        cs, entries, size = self.cluster_size, self.cluster_size // 8, self.data.size
        tables = self._l2_offsets()
        early = tables_ahead(tables.values(), self._used, lambda table: map(self._host, table[1]))
        for i in sorted(tables):
            slots, used = early.pop(tables[i]) if tables[i] in early else self._used(tables[i])
            for j, l2e in zip(slots, used):
                guest = (i * entries + j) * cs
                if guest >= self.size:
                    break
                if l2e & OFLAG_COMPRESSED:
                    host, length = self.compressed_range(l2e)
                    if host >= size:
                        raise BadInput(f"{self.name}: compressed cluster at byte {host} is past the end of the file")
                    yield guest, self._inflater(self.data.pread(host, min(length, size - host)), guest)
                    continue
                if l2e & OFLAG_ZERO:
                    continue
                host = l2e & L2E_OFFSET_MASK
                if not host:
                    continue
                if host % cs or host >= size:
                    raise BadInput(f"{self.name}: data cluster at byte {host} is misaligned or past the end of the file")
                yield guest, self.data.pread(host, cs).ljust(cs, b"\0")

    def _inflater(self, payload: bytes, guest: int) -> Callable[[], bytes]:
        cs, name = self.cluster_size, self.name

        def inflate() -> bytes:
            try:
                out = zlib.decompressobj(-15).decompress(payload, cs)  # bounded: never more than one cluster
            except zlib.error as e:
                raise BadInput(f"{name}: compressed cluster at guest byte {guest} does not inflate ({e})") from None
            if len(out) != cs:
                raise BadInput(f"{name}: compressed cluster at guest byte {guest} inflates to {len(out)} bytes, not {cs}")
            return out

        return inflate

    def close(self) -> None:
        self.data.close()


# --- checking ------------------------------------------------------------------------------

_REFCOUNT_ARRAYS = {3: "B", 4: "H", 5: "I", 6: "Q"}
MAX_CHECKED_CLUSTERS = 1 << 24  # 1 TiB of image at 64 KiB clusters: 64 MiB of counters


def check(data: ByteSource, name: str, threads: int = 2) -> tuple[dict, Findings]:
    """What `qemu-img check` checks, from the image's metadata alone: (facts, findings).

    Tables are read in ascending file order, each once, so an image inside a
    box is checked as it streams by; a layout that would need going back is
    reported, not guessed at. Work and memory are bounded by the file's size.
    """
    findings = Findings()
    reader = Qcow2Reader(data, name)  # header rules: raises BoxpackError for what cannot be read at all
    h = reader.header
    order = reader.refcount_order
    cs = reader.cluster_size
    facts = {
        "format": reader.format,
        "virtual_size": reader.size,
        "cluster_size": cs,
        "file_size": data.size,
        "refcount_bits": 1 << order,
    }
    for what, offset, length, limit in (
        ("refcount table", h.refcount_table_offset, h.refcount_table_clusters * cs, MAX_REFTABLE_BYTES),
        ("L1 table", h.l1_table_offset, h.l1_size * 8, MAX_L1_BYTES),
    ):
        if offset % cs or offset + length > data.size or length > limit:
            findings.add("qcow2-bounds", "error", f"{name}: {what} ({length} bytes at byte {offset}) does not fit in the file or exceeds qemu's limit")
            return facts, findings
    host_clusters = _ceil_div(data.size, cs) + 1
    if host_clusters > MAX_CHECKED_CLUSTERS:
        findings.add("qcow2-unchecked", "info", f"{name}: {host_clusters} host clusters; refcounts not checked")
        return facts, findings
    expected = array("I", bytes(4 * host_clusters))

    def use(offset: int, length: int, what: str) -> None:
        if offset + length > data.size + cs:  # the last cluster may be short in the file
            findings.add("qcow2-bounds", "error", f"{name}: {what} at byte {offset} is past the end of the file ({data.size} bytes)")
            return
        for c in range(offset // cs, _ceil_div(offset + length, cs)):
            expected[c] += 1

    use(0, cs, "header")
    use(h.refcount_table_offset, h.refcount_table_clusters * cs, "refcount table")
    use(h.l1_table_offset, _ceil_div(h.l1_size * 8, cs) * cs, "L1 table")
    # Tables discovered while reading, visited in file order, each offset once: (offset, kind, index).
    pending = [(h.refcount_table_offset, 0, 0), (h.l1_table_offset, 1, 0)]
    queued: set[int] = set()
    REFTABLE, L1, REFBLOCK, L2 = 0, 1, 2, 3
    stored: dict[int, array] | None = None
    allocated = compressed = 0
    copied_l1, copied_l2 = array("Q"), array("Q")  # host offset | OFLAG_COPIED as found
    if h.nb_snapshots:
        findings.add("qcow2-snapshots", "info", f"{name}: has {h.nb_snapshots} internal snapshot(s); refcounts not checked")

    def later(offset: int, kind: int, index: int) -> None:
        if offset not in queued:
            queued.add(offset)
            heapq.heappush(pending, (offset, kind, index))

    while pending:
        offset, kind, index = heapq.heappop(pending)
        if kind == REFTABLE:
            for i, e in enumerate(reader._table(offset, h.refcount_table_clusters * cs // 8, "refcount table")):
                if e & REFT_RESERVED_MASK:
                    findings.add("qcow2-reserved-bits", "error", f"{name}: refcount table entry {i} has reserved bits set")
                block = e & ~REFT_RESERVED_MASK
                if block:
                    use(block, cs, "refcount block")
                    if block + cs <= data.size and block % cs == 0:
                        later(block, REFBLOCK, i)
        elif kind == REFBLOCK:
            if order not in _REFCOUNT_ARRAYS:
                continue
            block = read_table(data, offset, cs * 8 >> order, _REFCOUNT_ARRAYS[order], big_endian=True, what="refcount block")
            stored = stored if stored is not None else {}
            stored[index] = block
        elif kind == L1:
            for i, e in enumerate(reader._table(offset, h.l1_size, "L1 table")):
                if e & L1E_RESERVED_MASK:
                    findings.add("qcow2-reserved-bits", "error", f"{name}: L1 entry {i} has reserved bits set")
                l2 = e & L1E_OFFSET_MASK
                if not l2:
                    continue
                if l2 % cs:
                    findings.add("qcow2-unaligned", "error", f"{name}: L2 table {i} at byte {l2} is not cluster-aligned")
                    continue
                use(l2, cs, f"L2 table {i}")
                copied_l1.append(l2 | (e & OFLAG_COPIED))
                if l2 + cs <= data.size:
                    later(l2, L2, i)
        else:
            for j, e in enumerate(reader._table(offset, cs // 8, "L2 table")):
                if not e:
                    continue
                if e & OFLAG_COMPRESSED:
                    if e & OFLAG_COPIED:
                        findings.add("qcow2-copied", "error", f"{name}: compressed cluster {index}/{j} carries OFLAG_COPIED")
                    host, length = reader.compressed_range(e)
                    use(host, length, "compressed cluster")  # every host cluster its sectors touch
                    compressed += 1
                    continue
                if e & L2E_STD_RESERVED_MASK:
                    findings.add("qcow2-reserved-bits", "error", f"{name}: L2 entry {index}/{j} has reserved bits set")
                host = e & L2E_OFFSET_MASK
                if host:
                    if host % cs:
                        findings.add("qcow2-unaligned", "error", f"{name}: data cluster at byte {host} is not aligned")
                        continue
                    use(host, cs, "data cluster")
                    copied_l2.append(host | (e & OFLAG_COPIED))
                    allocated += 1
    facts.update(allocated_clusters=allocated, compressed_clusters=compressed)
    if stored is None or h.nb_snapshots:
        return facts, findings
    per_block = cs * 8 // (1 << order)

    def refcount(cluster: int) -> int:
        block = stored.get(cluster // per_block)
        return block[cluster % per_block] if block is not None else 0

    leaks, first_leak = 0, -1
    for c in range(_ceil_div(data.size, cs)):  # like qemu-img, clusters past the end of the file are not compared
        r1, r2 = refcount(c), expected[c]
        if r1 > r2:
            leaks += 1
            first_leak = c if first_leak < 0 else first_leak
        elif r1 < r2:
            code = "qcow2-overlap" if r2 > 1 and r1 else "qcow2-refcount"
            findings.add(code, "error", f"{name}: cluster {c} has refcount {r1} but {r2} references" + (" (two things use it)" if r2 > 1 else ""))
    if leaks:
        findings.add("qcow2-leak", "warning", f"{name}: {leaks} leaked cluster(s) (refcount without a reference), first {first_leak}")
    for what, entries in (("L2 table", copied_l1), ("data cluster", copied_l2)):
        for e in entries:
            host = e & ~OFLAG_COPIED
            if bool(e & OFLAG_COPIED) != (refcount(host // cs) == 1):
                findings.add("qcow2-copied", "error", f"{name}: {what} at byte {host}: OFLAG_COPIED does not match its refcount")
                break
    return facts, findings
