"""qcow2 on-disk structures and constants.

References: qemu docs/interop/qcow2.rst (the format), block/qcow2.h (constants
and qemu's limits).
"""

from __future__ import annotations

from construct import Const, Int8ub, Int32ub, Int64ub, Padding, Struct

MAGIC = b"QFI\xfb"
V3_HEADER_LENGTH = 112

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

# Incompatible feature bits.
INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
INCOMPAT_DATA_FILE = 1 << 2
INCOMPAT_COMPRESSION = 1 << 3
INCOMPAT_EXTL2 = 1 << 4
INCOMPAT_KNOWN = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2

# Table entries.
OFLAG_COPIED = 1 << 63
OFLAG_COMPRESSED = 1 << 62
OFLAG_ZERO = 1
L1E_OFFSET_MASK = 0x00FFFFFFFFFFFE00
L2E_OFFSET_MASK = 0x00FFFFFFFFFFFE00
L1E_RESERVED_MASK = 0x7F000000000001FF
L2E_STD_RESERVED_MASK = 0x3F000000000001FE
REFT_RESERVED_MASK = 0x1FF

# qemu's limits (block/qcow2.h): larger tables are refused when the image is opened.
MAX_L1_BYTES = 0x2000000  # QCOW_MAX_L1_SIZE, 32 MiB
MAX_REFTABLE_BYTES = 0x800000  # QCOW_MAX_REFTABLE_SIZE, 8 MiB
MIN_CLUSTER_BITS, MAX_CLUSTER_BITS = 9, 21
