"""VDI (VirtualBox Disk Image) on-disk structures and constants.

References: VirtualBox src/VBox/Storage/VDICore.h (VDIHEADER1PLUS, the
version 1.1 header VirtualBox writes; VDI_IMAGE_BLOCK_FREE/ZERO); qemu
block/vdi.c. All fields are little-endian.
"""

from __future__ import annotations

from construct import Bytes, Int32ul, Int64ul, Struct

SIGNATURE = 0xBEDA107F
SIGNATURE_BYTES = SIGNATURE.to_bytes(4, "little")
VERSION_1_1 = 0x00010001
TYPE_NORMAL, TYPE_FIXED, TYPE_UNDO, TYPE_DIFF = 1, 2, 3, 4  # normal is what VirtualBox calls dynamic
BLOCK_FREE = 0xFFFFFFFF  # never written: reads as zeros
BLOCK_ZERO = 0xFFFFFFFE  # discarded: reads as zeros

Header = Struct(
    "text" / Bytes(64),
    "signature" / Int32ul,
    "version" / Int32ul,
    "header_size" / Int32ul,
    "image_type" / Int32ul,
    "image_flags" / Int32ul,
    "description" / Bytes(256),
    "offset_blocks" / Int32ul,
    "offset_data" / Int32ul,
    "cylinders" / Int32ul,
    "heads" / Int32ul,
    "sectors" / Int32ul,
    "sector_size" / Int32ul,
    "unused1" / Int32ul,
    "disk_size" / Int64ul,
    "block_size" / Int32ul,
    "block_extra" / Int32ul,
    "blocks" / Int32ul,
    "blocks_allocated" / Int32ul,
    "uuid_image" / Bytes(16),
    "uuid_last_snap" / Bytes(16),
    "uuid_link" / Bytes(16),
    "uuid_parent" / Bytes(16),
)
