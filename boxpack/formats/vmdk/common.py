"""What the VMDK writers, reader and checker share: the format's constants, header, descriptor and
marker encodings, and the reading of grain tables and compressed grains."""

from __future__ import annotations

import sys
import zlib
from array import array

import deflate

from ...errors import InternalError
from ...disk.bytesource import ByteSource, read_table
from ...disk.source import CLUSTER
from ..c_vmdk import (COMPRESS_DEFLATE, DESCRIPTOR_MAGIC, FLAG_COMPRESSED, FLAG_MARKERS, FLAG_NEWLINE_TEST,
                      FLAG_REDUNDANT_GT, GD_AT_END, MAGIC, MARKER_FOOTER, MARKER_GD, MARKER_GT, MARKER_PROGRESS,
                      NEWLINE_TEST, SECTOR, MetadataMarker, SparseExtentHeader)

NAME = "vmdk"
SUFFIXES = (".vmdk",)
VERSION = 3
GRAIN_SECTORS = CLUSTER // SECTOR  # 128: one grain is one 64 KiB cluster of the data map
GTES_PER_GT = 512
GT_SECTORS = GTES_PER_GT * 4 // SECTOR  # 4: VirtualBox's sequential reader skips exactly this
GT_COVERAGE = GTES_PER_GT * GRAIN_SECTORS  # sectors one GT maps: 32 MiB
DESCRIPTOR_OFFSET = 1
DESCRIPTOR_SECTORS = 20  # qemu looks for the descriptor in these sectors
OVERHEAD = GRAIN_SECTORS  # the first marker starts at sector 128
TOOLS_VERSION = 2147483647  # "provided by the host", what qemu writes
MAX_GD_BYTES = 64 * 1024 * 1024  # a grain directory this large would map petabytes


def probe(head: bytes, tail: bytes) -> bool:
    """A sparse extent (KDMV), or a descriptor file (refused by the reader: its data is elsewhere)."""
    return head[:4] == MAGIC or head.startswith(DESCRIPTOR_MAGIC)


def capacity_sectors(disk_size: int) -> int:
    """The VMDK capacity: the disk size rounded up to a whole grain, as VirtualBox exports it."""
    return -(-disk_size // CLUSTER) * GRAIN_SECTORS


def header(capacity: int, gd_offset: int, *, sparse: bool = False, rgd_offset: int = 0, overhead: int = OVERHEAD) -> bytes:
    """A streamOptimized header (version 3, compressed grains, markers), or with sparse a
    monolithicSparse one (version 1, uncompressed grains, a redundant grain directory)."""
    return SparseExtentHeader.build(
        dict(
            version=1 if sparse else VERSION,
            flags=FLAG_NEWLINE_TEST | (FLAG_REDUNDANT_GT if sparse else FLAG_COMPRESSED | FLAG_MARKERS),
            capacity=capacity,
            grain_size=GRAIN_SECTORS,
            descriptor_offset=DESCRIPTOR_OFFSET,
            descriptor_size=DESCRIPTOR_SECTORS,
            num_gtes_per_gt=GTES_PER_GT,
            rgd_offset=rgd_offset,
            gd_offset=gd_offset,
            overhead=overhead,
            unclean_shutdown=0,
            newline_test=NEWLINE_TEST,
            compress_algorithm=0 if sparse else COMPRESS_DEFLATE,
            pad=bytes(433),
        )
    )


def descriptor(
    capacity: int,
    file_name: str,
    disk_id: bytes,
    sectors: int | None = None,
    create_type: str = "streamOptimized",
    hardware_version: str = "4",
) -> bytes:
    """The embedded descriptor, NUL-padded to 20 sectors. disk_id seeds CID and the image UUID.

    The extent line holds the disk's exact size in sectors while the header's
    capacity is rounded up to a grain, as VirtualBox's own export does; readers
    that honour it (boxpack's) get the disk back at its exact size. The adapter
    type is "ide" for IDE and SATA disks alike: the VMDK format knows no other
    name for them (VMware "Virtual Disk Format 5.0", ddb.adapterType).
    """
    cid = int.from_bytes(disk_id[:4], "little") or 1
    cylinders = min(16383, capacity // (16 * 63))
    uid = disk_id[4:20].hex()
    image_uuid = f"{uid[:8]}-{uid[8:12]}-{uid[12:16]}-{uid[16:20]}-{uid[20:32]}"
    text = (
        "# Disk DescriptorFile\n"
        "version=1\n"
        f"CID={cid:08x}\n"
        "parentCID=ffffffff\n"
        f'createType="{create_type}"\n'
        "\n"
        "# Extent description\n"
        f'RW {sectors or capacity} SPARSE "{file_name}"\n'
        "\n"
        "# The Disk Data Base\n"
        "#DDB\n"
        "\n"
        f'ddb.virtualHWVersion = "{hardware_version}"\n'
        'ddb.adapterType = "ide"\n'
        f'ddb.geometry.cylinders = "{cylinders}"\n'
        'ddb.geometry.heads = "16"\n'
        'ddb.geometry.sectors = "63"\n'
        f'ddb.uuid.image = "{image_uuid}"\n'
        f'ddb.toolsVersion = "{TOOLS_VERSION}"\n'
    ).encode()
    if len(text) > DESCRIPTOR_SECTORS * SECTOR:
        raise InternalError(f"internal error: the VMDK descriptor is {len(text)} bytes, more than {DESCRIPTOR_SECTORS} sectors")
    return text + bytes(DESCRIPTOR_SECTORS * SECTOR - len(text))


def marker(kind: int, sectors: int) -> bytes:
    return MetadataMarker.build(dict(val=sectors, type=kind, pad=bytes(496)))


def gd_entries(h) -> int:
    """How many grain tables (grain directory entries) the header's capacity needs; 0 for a header whose
    geometry has a zero in it."""
    per_table = h.num_gtes_per_gt * h.grain_size
    return -(-h.capacity // per_table) if per_table else 0


def metadata_sectors(h, kind: int) -> int | None:
    """Sectors of metadata after a marker of this kind, computed from the header as VirtualBox's
    sequential reader does (not from the marker's own count); None for an unknown kind."""
    gt = -(-h.num_gtes_per_gt * 4 // SECTOR)
    gd = -(-gd_entries(h) * 4 // SECTOR)
    return {MARKER_GT: gt, MARKER_GD: gd, MARKER_FOOTER: 1, MARKER_PROGRESS: 0}.get(kind)


def tables_grains(data: ByteSource, h) -> int | None:
    """How many grains the grain tables map, when they come before overHead (qemu's and open-vmdk's
    streamOptimized layouts: the tables first, preallocated); None otherwise.

    qemu-img writes no end-of-stream marker when the last grain ends the file, and qemu reads such a file
    through these tables; so a marker walk that ends at the end of the file is whole when it found as many
    grains as the tables map, and cut short when it found fewer.
    """
    gt_count = gd_entries(h)
    if h.gd_offset in (0, GD_AT_END) or not 0 < gt_count * 4 <= MAX_GD_BYTES:
        return None
    if (h.gd_offset * SECTOR + gt_count * 4 > h.overhead * SECTOR) or h.overhead * SECTOR > data.size:
        return None
    gd = read_table(data, h.gd_offset * SECTOR, gt_count, "I", big_endian=False, what="grain directory")
    grains = 0
    for gt in sorted(s for s in gd if s):
        if (gt + -(-h.num_gtes_per_gt * 4 // SECTOR)) > h.overhead:
            return None
        table = read_table(data, gt * SECTOR, h.num_gtes_per_gt, "I", big_endian=False, what="grain table")
        grains += sum(1 for sector in table if sector > 1)
    return grains


Inflated = tuple[bytes | bytearray | None, bool]  # libdeflate returns bytearrays


def inflate_grain(payload: bytes, grain: int) -> Inflated:
    """(data, more than a grain?) of a compressed grain, never inflating more than a grain plus one byte.
    libdeflate inflates into a grain-sized buffer, 1.6x as fast as zlib; when it fails, zlib says why."""
    try:
        return deflate.zlib_decompress(payload, grain), False
    except deflate.DeflateError:
        pass
    d = zlib.decompressobj()
    try:
        out = d.decompress(payload, grain + 1)
    except zlib.error:
        return None, False
    return out[:grain], len(out) > grain or bool(d.unconsumed_tail)


def sector_pad(n: int) -> int:
    return -n % SECTOR


def le32(values: array) -> bytes:
    """array('I') as little-endian bytes."""
    if sys.byteorder == "big":
        values = array("I", values)
        values.byteswap()
    return values.tobytes()
