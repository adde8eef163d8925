"""Sparse VMDK on-disk structures and constants (monolithicSparse and streamOptimized).

References: VMware "Virtual Disk Format 5.0" technical note (header, grain
directory and tables, markers); VirtualBox src/VBox/Storage/VMDK.cpp
(vmdkStreamReadSequential); qemu block/vmdk.c.
"""

from __future__ import annotations

from construct import Bytes, Const, Int8ul, Int16ul, Int32ul, Int64ul, Struct

SECTOR = 512
MAGIC = b"KDMV"
DESCRIPTOR_MAGIC = b"# Disk DescriptorFile"
FLAG_NEWLINE_TEST = 1 << 0
FLAG_REDUNDANT_GT = 1 << 1
FLAG_COMPRESSED = 1 << 16
FLAG_MARKERS = 1 << 17
GD_AT_END = 0xFFFFFFFFFFFFFFFF
NEWLINE_TEST = b"\n \r\n"
COMPRESS_DEFLATE = 1
MARKER_EOS, MARKER_GT, MARKER_GD, MARKER_FOOTER = 0, 1, 2, 3
MARKER_PROGRESS = 4  # undocumented; VirtualBox skips one sector

SparseExtentHeader = Struct(
    "magic" / Const(MAGIC),
    "version" / Int32ul,
    "flags" / Int32ul,
    "capacity" / Int64ul,
    "grain_size" / Int64ul,
    "descriptor_offset" / Int64ul,
    "descriptor_size" / Int64ul,
    "num_gtes_per_gt" / Int32ul,
    "rgd_offset" / Int64ul,
    "gd_offset" / Int64ul,
    "overhead" / Int64ul,
    "unclean_shutdown" / Int8ul,
    "newline_test" / Bytes(4),  # "\n \r\n": a file mangled by CR/LF translation shows here
    "compress_algorithm" / Int16ul,
    "pad" / Bytes(433),
)

# A grain marker is followed directly by `size` bytes of compressed data.
GrainMarker = Struct("lba" / Int64ul, "size" / Int32ul)

# Metadata markers (GT, GD, FOOTER, EOS) fill one sector; val is the number of
# sectors of metadata that follow.
MetadataMarker = Struct("val" / Int64ul, "size" / Const(0, Int32ul), "type" / Int32ul, "pad" / Bytes(496))
