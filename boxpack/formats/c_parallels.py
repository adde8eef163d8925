"""Parallels expanding disk (.hds) on-disk structures and constants.

References: qemu docs/interop/parallels.rst (header, BAT, data area, format
extension) and block/parallels.c. All fields are little-endian.
"""

from __future__ import annotations

from construct import Bytes, Int32ul, Int64ul, Struct

MAGIC = b"WithoutFreeSpace"  # BAT entries in sectors; nb_sectors is 32 bits: what Parallels Desktop writes
MAGIC_EXT = b"WithouFreSpacExt"  # BAT entries in clusters, 64-bit nb_sectors: what qemu-img writes
VERSION = 2
IN_USE = 0x746F6E59  # opened read-write and not closed: the BAT may be behind the data
CLOSED = 0x312E3276  # closed cleanly by software that knows the format extension
HEADER_SIZE = 64

Header = Struct(
    "magic" / Bytes(16),
    "version" / Int32ul,
    "heads" / Int32ul,
    "cylinders" / Int32ul,
    "tracks" / Int32ul,  # the cluster size, in sectors
    "bat_entries" / Int32ul,
    "nb_sectors" / Int64ul,  # WithoutFreeSpace: only the low 32 bits count
    "in_use" / Int32ul,
    "data_off" / Int32ul,  # sectors; 0 in old images: right after the BAT
    "flags" / Int32ul,
    "ext_off" / Int64ul,
)
