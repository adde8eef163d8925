"""VHD (Microsoft Virtual Hard Disk 1.0) on-disk structures and constants.

References: Microsoft "Virtual Hard Disk Image Format Specification" 1.0
(footer, dynamic disk header, BAT, sector bitmaps); qemu block/vpc.c.
All fields are big-endian.
"""

from __future__ import annotations

from construct import Bytes, Int8ub, Int16ub, Int32ub, Int64ub, Struct

FOOTER_COOKIE = b"conectix"
DYNAMIC_COOKIE = b"cxsparse"
FOOTER_SIZE = 512
DYNAMIC_HEADER_SIZE = 1024
FIXED_DATA_OFFSET = 0xFFFFFFFFFFFFFFFF
UNALLOCATED = 0xFFFFFFFF  # a BAT entry for a block that holds no data
DISK_FIXED, DISK_DYNAMIC, DISK_DIFFERENCING = 2, 3, 4

Footer = Struct(
    "cookie" / Bytes(8),
    "features" / Int32ub,
    "version" / Int32ub,
    "data_offset" / Int64ub,
    "timestamp" / Int32ub,
    "creator_app" / Bytes(4),
    "creator_version" / Int32ub,
    "creator_os" / Bytes(4),
    "original_size" / Int64ub,
    "current_size" / Int64ub,
    "cylinders" / Int16ub,
    "heads" / Int8ub,
    "sectors_per_track" / Int8ub,
    "disk_type" / Int32ub,
    "checksum" / Int32ub,
    "unique_id" / Bytes(16),
    "saved_state" / Int8ub,
    "reserved" / Bytes(427),
)

DynamicHeader = Struct(
    "cookie" / Bytes(8),
    "data_offset" / Int64ub,
    "table_offset" / Int64ub,
    "version" / Int32ub,
    "max_table_entries" / Int32ub,
    "block_size" / Int32ub,
    "checksum" / Int32ub,
    "parent_unique_id" / Bytes(16),
    "parent_timestamp" / Int32ub,
    "reserved1" / Int32ub,
    "parent_name" / Bytes(512),
    "parent_locators" / Bytes(8 * 24),
    "reserved2" / Bytes(256),
)

CHECKSUM_OFFSET = {FOOTER_COOKIE: 64, DYNAMIC_COOKIE: 36}
