"""A FAT12/16/32 directory reader: enough of the EFI system partition to see which boot loaders it holds.

It lists directories, long names included, and reads no file. read(offset,
length) gives the volume's bytes; whatever it raises (a part of the volume
the caller did not keep) ends the walk, as does anything the FAT
specification does not allow, with FatError. Every chain is bounded by the
specification's largest directory (65536 entries), so a looping FAT ends.
Structures: c_fat.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from .c_fat import (ATTR_DIRECTORY, ATTR_LONG_NAME, ATTR_VOLUME_ID, DELETED, END_OF_DIRECTORY, ENTRY_SIZE,
                    FAT12_MAX_CLUSTERS, FAT16_MAX_CLUSTERS, FAT32_ENTRY_MASK, LAST_LONG_ENTRY, LOWER_BASE,
                    LOWER_EXTENSION, SIGNATURE, BootSector, DirEntry, LongNameEntry)

MAX_DIRECTORY = 65536 * ENTRY_SIZE  # section 6: a directory holds at most 65536 entries


class FatError(Exception):
    """Not a FAT volume, or one whose structures break the specification."""


@dataclass(frozen=True)
class Entry:
    name: str  # the long name when there is one, else the 8.3 name as NAME.EXT
    directory: bool
    cluster: int


class FatVolume:
    def __init__(self, read: Callable[[int, int], bytes]) -> None:
        self.read = read
        sector = read(0, 512)
        if sector[510:512] != SIGNATURE:
            raise FatError("no boot sector signature")
        b = BootSector.parse(sector)
        if b.bytes_per_sector not in (512, 1024, 2048, 4096) or b.sectors_per_cluster not in (1, 2, 4, 8, 16, 32, 64, 128):
            raise FatError("sector or cluster size is not one FAT allows")
        if not b.reserved_sectors or not b.fat_count:
            raise FatError("no reserved sectors or no FAT")
        fat_size = b.fat_size_16 or b.fat_size_32
        total = b.total_sectors_16 or b.total_sectors_32
        root_sectors = -(-b.root_entries * ENTRY_SIZE // b.bytes_per_sector)
        first_data = b.reserved_sectors + b.fat_count * fat_size + root_sectors
        if not fat_size or first_data >= total:
            raise FatError("the FATs and root directory leave no data area")
        self.clusters = (total - first_data) // b.sectors_per_cluster
        self.bits = 12 if self.clusters <= FAT12_MAX_CLUSTERS else 16 if self.clusters <= FAT16_MAX_CLUSTERS else 32
        if (self.bits == 32) != (b.root_entries == 0):
            raise FatError(f"a FAT{self.bits} volume with {b.root_entries} fixed root directory entries")
        self.cluster_size = b.bytes_per_sector * b.sectors_per_cluster
        self.fat = b.reserved_sectors * b.bytes_per_sector
        self.root = (b.reserved_sectors + b.fat_count * fat_size) * b.bytes_per_sector, root_sectors * b.bytes_per_sector
        self.data = first_data * b.bytes_per_sector
        self.root_cluster = b.root_cluster if self.bits == 32 else 0
        self.end_of_chain = {12: 0xFF8, 16: 0xFFF8, 32: 0x0FFFFFF8}[self.bits]

    def listdir(self, path: Sequence[str]) -> list[Entry]:
        """The entries of the directory at path (names compared without case, as UEFI's file system does)."""
        entries = self._entries(self.root_cluster)
        for part in path:
            found = next((e for e in entries if e.directory and e.name.upper() == part.upper()), None)
            if found is None:
                raise FileNotFoundError(part)
            entries = self.children(found)
        return entries

    def children(self, directory: Entry) -> list[Entry]:
        return self._entries(directory.cluster)

    def _entries(self, cluster: int) -> list[Entry]:
        data = self.read(*self.root) if cluster == 0 and self.bits != 32 else b"".join(self._chain(cluster))
        out = []
        parts: dict[int, str] = {}  # the long name's pieces by order, and the short name's checksum they carry
        checksum = None
        for pos in range(0, len(data) - ENTRY_SIZE + 1, ENTRY_SIZE):
            raw = data[pos : pos + ENTRY_SIZE]
            if raw[0] == END_OF_DIRECTORY:
                break
            if raw[0] == DELETED:
                parts, checksum = {}, None
                continue
            e = DirEntry.parse(raw)
            if e.attributes & 0x3F == ATTR_LONG_NAME:
                n = LongNameEntry.parse(raw)
                if n.order & LAST_LONG_ENTRY:
                    parts, checksum = {}, n.checksum
                parts[n.order & 0x1F] = (n.chars1 + n.chars2 + n.chars3).decode("utf-16-le", "replace")
                continue
            name = _short_name(e.name, e.nt_reserved)
            if parts and checksum == _checksum(e.name):
                name = "".join(parts[k] for k in sorted(parts)).split("\0", 1)[0]
            parts, checksum = {}, None
            if e.attributes & ATTR_VOLUME_ID or name in (".", ".."):
                continue
            first = e.cluster_low | (e.cluster_high << 16 if self.bits == 32 else 0)
            out.append(Entry(name, bool(e.attributes & ATTR_DIRECTORY), first))
        return out

    def _chain(self, first: int) -> Iterator[bytes]:
        """A directory's clusters, in chain order, up to the largest directory there can be."""
        cluster = first
        for _ in range(max(1, MAX_DIRECTORY // self.cluster_size)):
            if not 2 <= cluster < self.clusters + 2:
                raise FatError(f"cluster {cluster} is outside the data area")
            yield self.read(self.data + (cluster - 2) * self.cluster_size, self.cluster_size)
            cluster = self._next(cluster)
            if cluster >= self.end_of_chain:
                return
        raise FatError("a directory longer than FAT allows (a looping chain?)")

    def _next(self, cluster: int) -> int:
        if self.bits == 32:
            return int.from_bytes(self.read(self.fat + cluster * 4, 4), "little") & FAT32_ENTRY_MASK
        if self.bits == 16:
            return int.from_bytes(self.read(self.fat + cluster * 2, 2), "little")
        pair = int.from_bytes(self.read(self.fat + cluster * 3 // 2, 2), "little")
        return pair >> 4 if cluster & 1 else pair & 0xFFF


def _short_name(raw: bytes, case: int) -> str:
    """NAME.EXT, each part in lower case where the entry's case flags say (as Windows and Linux write a
    lower-case name that fits 8.3, with no long name)."""
    raw = b"\xe5" + raw[1:] if raw[0] == 0x05 else raw  # 0x05 stands for a first byte of 0xE5
    base, ext = raw[:8].decode("cp437").rstrip(), raw[8:].decode("cp437").rstrip()
    base = base.lower() if case & LOWER_BASE else base
    ext = ext.lower() if case & LOWER_EXTENSION else ext
    return f"{base}.{ext}" if ext else base


def _checksum(raw: bytes) -> int:
    """Section 7.2: the short name's checksum that each of its long-name entries carries."""
    s = 0
    for c in raw:
        s = (((s & 1) << 7) + (s >> 1) + c) & 0xFF
    return s
