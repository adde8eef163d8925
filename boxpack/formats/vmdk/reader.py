"""The reader of monolithicSparse and streamOptimized VMDKs, in guest order."""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable, Iterator
from typing import Any

from ...errors import BadInput
from ...disk.bytesource import ByteSource, read_table, tables_ahead
from ..c_vmdk import (DESCRIPTOR_MAGIC, FLAG_COMPRESSED, FLAG_MARKERS, FLAG_NEWLINE_TEST, GD_AT_END, MAGIC, MARKER_EOS,
                      MARKER_FOOTER, NEWLINE_TEST, SECTOR, GrainMarker, SparseExtentHeader)
from .common import MAX_GD_BYTES, gd_entries, inflate_grain, metadata_sectors, tables_grains

# --- reading -------------------------------------------------------------------------------

SUPPORTED_TYPES = ("monolithicSparse", "streamOptimized")


def newline_problem(found: bytes) -> str:
    """Blame a text-mode copy only when the newline-test bytes show one (CR/LF added or removed)."""
    if found.startswith((b"\n \n", b"\r\n \r")):
        return "header corrupted by newline translation (was it copied in text mode?)"
    return f"the header's newline-test bytes are {found!r}, not {NEWLINE_TEST!r}: the header is damaged"


def parse_descriptor(text: str) -> tuple[str | None, list[str]]:
    """(createType, extent lines) of a descriptor."""
    create_type = None
    extents = []
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r'(?i)createType\s*=\s*"?([^"\s]+)"?', line)
        if m:
            create_type = m.group(1)
        elif re.match(r"(RW|RDONLY|NOACCESS)\s+\d+\s+\w+", line):
            extents.append(line)
    return create_type, extents


class VmdkReader:
    """Reads a monolithic sparse or streamOptimized VMDK, in guest order.

    streamOptimized files are read by walking their markers from overHead, as
    VirtualBox's importer does (this reads both VirtualBox's layout and qemu's);
    monolithicSparse files through their grain directory and tables. Compressed
    grains are returned as callables, so the caller inflates them on its pool.
    """

    def __init__(self, data: ByteSource, name: str) -> None:
        self.data, self.name = data, name
        raw = data.pread(0, SECTOR)
        if raw.startswith(DESCRIPTOR_MAGIC):
            create_type, extents = parse_descriptor(raw.decode("utf-8", "replace"))
            raise BadInput(
                f"{name}: is a VMDK descriptor (createType={create_type}) whose data lives in "
                f"{len(extents)} other file(s); multi-extent and flat VMDKs are not supported, "
                "convert to monolithicSparse or streamOptimized"
            )
        if len(raw) < SECTOR or raw[:4] != MAGIC:
            raise BadInput(f"{name}: not a sparse VMDK (too short or bad magic)")
        h = SparseExtentHeader.parse(raw)
        if h.version not in (1, 2, 3):
            raise BadInput(f"{name}: VMDK version {h.version} is not supported")
        if h.flags & FLAG_NEWLINE_TEST and h.newline_test != NEWLINE_TEST:
            raise BadInput(f"{name}: {newline_problem(h.newline_test)}")
        if h.grain_size < 1 or h.grain_size & (h.grain_size - 1) or h.grain_size > 2048:
            raise BadInput(f"{name}: grain size {h.grain_size} sectors is not a power of two up to 1 MiB")
        if not 1 <= h.num_gtes_per_gt <= 4096:
            raise BadInput(f"{name}: {h.num_gtes_per_gt} grain table entries per table is out of range")
        text = data.pread(h.descriptor_offset * SECTOR, min(h.descriptor_size, 2048) * SECTOR) if h.descriptor_offset else b""
        create_type, extents = parse_descriptor(text.split(b"\0", 1)[0].decode("utf-8", "replace"))
        if len(extents) > 1:
            raise BadInput(f"{name}: has {len(extents)} extents; multi-extent VMDKs are not supported")
        self.compressed = bool(h.flags & FLAG_COMPRESSED)
        self.markers = bool(h.flags & FLAG_MARKERS)
        create_type = create_type or ("streamOptimized" if self.markers else "monolithicSparse")
        if create_type not in SUPPORTED_TYPES:
            raise BadInput(f"{name}: createType {create_type} is not supported (only {', '.join(SUPPORTED_TYPES)})")
        if self.compressed and not self.markers:
            raise BadInput(f"{name}: compressed grains without markers are not supported")
        self.header = h
        self.grain_bytes = h.grain_size * SECTOR
        self.size = h.capacity * SECTOR
        exact = int(extents[0].split()[1]) if extents else 0
        if 0 < exact <= h.capacity:  # the extent line may give the size before rounding to a grain
            self.size = exact * SECTOR
        self.format = f"vmdk {create_type}"
        self.data_estimate = min(data.size, self.size)

    def pieces(self) -> Iterator[tuple[int, "bytes | Callable[[], bytes]"]]:
        """Guest-ordered data. A streamOptimized file whose grains are out of order (open-vmdk's
        `vmdk-convert --noreorder`) is read through its grain tables, as qemu reads every streamOptimized
        file (vmdk_read_extent in block/vmdk.c); that needs random access, so in a box it is refused."""
        if not self.markers:
            return self._tables()
        if self.data.random_access and not self._in_order():
            return self._marker_tables()
        return self._markers()

    def _in_order(self) -> bool:
        """Whether the grain markers' LBAs ascend, from their 12-byte headers alone."""
        last = -1
        for pos, m in self._walk():
            if m.lba <= last:
                return False
            last = m.lba
        return True

    def _markers(self) -> Iterator[tuple[int, "bytes | Callable[[], bytes]"]]:
        """The grains in stream order, as VirtualBox's sequential reader takes them: ascending LBAs only."""
        last = -1
        for pos, m in self._walk():
            if m.lba <= last:
                raise BadInput(f"{self.name}: grain at LBA {m.lba} comes after LBA {last}; grains are out of order, "
                                   "which only a file (not a box member) can be read in")
            last = m.lba
            yield m.lba * SECTOR, self._inflater(self.data.pread(pos + 12, m.size), m.lba)

    def _marker_tables(self) -> Iterator[tuple[int, "bytes | Callable[[], bytes]"]]:
        """The grains in guest order through the grain directory and tables, each entry the sector of a grain
        marker whose LBA must be the entry's own."""
        h = self.header
        for i, gt_sector in enumerate(self._grain_directory()):
            if not gt_sector:
                continue
            slots, sectors = self._used(gt_sector)
            for j, sector in zip(slots, sectors):
                lba = (i * h.num_gtes_per_gt + j) * h.grain_size
                if lba * SECTOR >= self.size:
                    break
                pos = sector * SECTOR
                m = GrainMarker.parse(self.data.pread(pos, 12).ljust(12, b"\0"))
                if m.lba != lba or not m.size or m.size > 2 * self.grain_bytes or pos + 12 + m.size > self.data.size:
                    raise BadInput(f"{self.name}: grain table entry for LBA {lba} points at sector {sector}, which holds no grain for it")
                yield lba * SECTOR, self._inflater(self.data.pread(pos + 12, m.size), lba)

    def _walk(self) -> Iterator[tuple[int, Any]]:
        """(byte offset, marker) of every grain from overHead; the stream must end with EOS.

        A file cut short (no EOS, or no footer where the header put the grain
        directory at the end) is refused, as qemu refuses it ("Invalid
        footer", vmdk_open_vmdk4 in block/vmdk.c): its missing grains would
        otherwise read as zeros.
        """
        h, size = self.header, self.data.size
        expected = tables_grains(self.data, h)
        pos = h.overhead * SECTOR
        footer = False
        walked = 0
        while pos + 12 <= size:
            m = GrainMarker.parse(self.data.pread(pos, 12))
            if m.size:
                if m.lba % h.grain_size or m.lba >= h.capacity:
                    raise BadInput(f"{self.name}: grain marker at byte {pos} has a bad LBA {m.lba} (capacity {h.capacity} sectors)")
                if m.size > 2 * self.grain_bytes or pos + 12 + m.size > size:
                    raise BadInput(f"{self.name}: grain at LBA {m.lba} is cut off by the end of the file or too large ({m.size} bytes)")
                yield pos, m
                walked += 1
                pos += -(-(12 + m.size) // SECTOR) * SECTOR
                continue
            kind = int.from_bytes(self.data.pread(pos + 12, 4), "little")
            if kind == MARKER_EOS:
                if h.gd_offset == GD_AT_END and not footer:
                    raise BadInput(f"{self.name}: ends without the footer its header announces (GD_AT_END); the file is cut short")
                return
            skip = metadata_sectors(h, kind)
            if skip is None:
                raise BadInput(f"{self.name}: unknown marker type {kind} at byte {pos}")
            footer = footer or kind == MARKER_FOOTER
            pos += (1 + skip) * SECTOR
        if pos == size and walked == expected:
            return  # qemu's layout, ended by its last grain
        raise BadInput(f"{self.name}: no end-of-stream marker (the file is cut short, or its overHead {h.overhead} is wrong)")

    def _inflater(self, payload: bytes, lba: int) -> Callable[[], bytes]:
        grain, name = self.grain_bytes, self.name

        def inflate() -> bytes | bytearray:
            out, excess = inflate_grain(payload, grain)
            if out is None:
                raise BadInput(f"{name}: grain at LBA {lba} does not inflate")
            if excess:
                raise BadInput(f"{name}: grain at LBA {lba} inflates to more than a grain")
            return out

        return inflate

    def _grain_directory(self) -> array:
        h, size = self.header, self.data.size
        gd_offset = h.gd_offset
        if gd_offset == GD_AT_END:
            raw = self.data.pread(size - 2 * SECTOR, SECTOR) if size >= 3 * SECTOR else b""
            if raw[:4] != MAGIC:
                raise BadInput(f"{self.name}: its grain directory is at the end, but there is no footer")
            gd_offset = SparseExtentHeader.parse(raw).gd_offset
        entries = gd_entries(h)
        if entries * 4 > MAX_GD_BYTES:
            raise BadInput(f"{self.name}: capacity {h.capacity} sectors needs a grain directory of {entries} entries; not a real disk")
        return self._u32s(gd_offset * SECTOR, entries, "grain directory")

    def _used(self, gt_sector: int) -> tuple[array, array]:
        """A grain table as (slots, grain sectors) of its allocated entries (0: absent; 1: zeroed, version 2)."""
        slots, sectors = array("I"), array("I")
        for j, sector in enumerate(self._u32s(gt_sector * SECTOR, self.header.num_gtes_per_gt, "grain table")):
            if sector > 1:
                slots.append(j)
                sectors.append(sector)
        return slots, sectors

    def _tables(self) -> Iterator[tuple[int, bytes]]:
        """Grains through the grain directory and tables. The tables before the first grain are read
        first (VMware's and qemu's layout keeps them all there), so a VMDK in a box streams."""
        h, size = self.header, self.data.size
        gd = self._grain_directory()
        early = tables_ahead((s for s in gd if s), self._used, lambda table: table[1])  # all in sectors
        for i, gt_sector in enumerate(gd):
            if not gt_sector:
                continue
            slots, sectors = early.pop(gt_sector) if gt_sector in early else self._used(gt_sector)
            for j, sector in zip(slots, sectors):
                guest = (i * h.num_gtes_per_gt + j) * self.grain_bytes
                if guest >= self.size:
                    break
                if sector * SECTOR >= size:
                    raise BadInput(f"{self.name}: grain at sector {sector} is past the end of the file")
                yield guest, self.data.pread(sector * SECTOR, self.grain_bytes).ljust(self.grain_bytes, b"\0")

    def _u32s(self, offset: int, count: int, what: str) -> array:
        return read_table(self.data, offset, count, "I", big_endian=False, what=what)

    def close(self) -> None:
        self.data.close()
