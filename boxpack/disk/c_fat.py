"""FAT12/16/32 on-disk structures: the boot sector's BIOS parameter block and directory entries.

References: Microsoft's FAT specification ("Microsoft Extensible Firmware
Initiative FAT32 File System Specification", 1.03: sections 3 and 6, and 7
for long names), which UEFI 2.10 section 13.3 makes the EFI system
partition's file system. All fields are little-endian.
"""

from __future__ import annotations

from construct import Bytes, Int8ul, Int16ul, Int32ul, Struct

BootSector = Struct(
    "jump" / Bytes(3),
    "oem_name" / Bytes(8),
    "bytes_per_sector" / Int16ul,
    "sectors_per_cluster" / Int8ul,
    "reserved_sectors" / Int16ul,
    "fat_count" / Int8ul,
    "root_entries" / Int16ul,  # 0 on FAT32, whose root directory is a cluster chain
    "total_sectors_16" / Int16ul,
    "media" / Int8ul,
    "fat_size_16" / Int16ul,
    "sectors_per_track" / Int16ul,
    "heads" / Int16ul,
    "hidden_sectors" / Int32ul,
    "total_sectors_32" / Int32ul,
    # FAT32's extended BPB; on FAT12/16 these bytes are other fields, read only when fat_size_16 is 0.
    "fat_size_32" / Int32ul,
    "ext_flags" / Int16ul,
    "fs_version" / Int16ul,
    "root_cluster" / Int32ul,
)

DirEntry = Struct(
    "name" / Bytes(11),  # 8.3, space-padded; 0x00 ends the directory, 0xE5 marks a deleted entry
    "attributes" / Int8ul,
    "nt_reserved" / Int8ul,  # Windows NT's case flags: LOWER_BASE, LOWER_EXTENSION
    "create_tenths" / Int8ul,
    "create_time" / Int16ul,
    "create_date" / Int16ul,
    "access_date" / Int16ul,
    "cluster_high" / Int16ul,
    "write_time" / Int16ul,
    "write_date" / Int16ul,
    "cluster_low" / Int16ul,
    "size" / Int32ul,
)

LongNameEntry = Struct(
    "order" / Int8ul,  # 1-based; 0x40 marks the last (first stored) entry of a name
    "chars1" / Bytes(10),
    "attributes" / Int8ul,
    "type" / Int8ul,
    "checksum" / Int8ul,  # of the short name the long name belongs to
    "chars2" / Bytes(12),
    "cluster" / Int16ul,
    "chars3" / Bytes(4),
)

SIGNATURE = b"\x55\xaa"  # at byte 510 of the boot sector
ENTRY_SIZE = 32
ATTR_DIRECTORY = 0x10
ATTR_VOLUME_ID = 0x08
ATTR_LONG_NAME = 0x0F  # read-only, hidden, system and volume ID together
LAST_LONG_ENTRY = 0x40
LOWER_BASE, LOWER_EXTENSION = 0x08, 0x10
END_OF_DIRECTORY = 0x00
DELETED = 0xE5
# Section 3.5: the type follows from the number of data clusters alone.
FAT12_MAX_CLUSTERS = 4084
FAT16_MAX_CLUSTERS = 65524
FAT32_ENTRY_MASK = 0x0FFFFFFF
