"""An independent streamOptimized reader that follows VirtualBox's sequential import rules.

Written from VirtualBox's VMDK.cpp behaviour (vmdkStreamReadSequential) as
described in shared/reference/disk-formats.md 2.5, with `struct` only, not
boxpack's code. It raises SequentialError on anything VirtualBox would refuse.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

SECTOR = 512


class SequentialError(Exception):
    pass


def read_grains(vmdk: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield (byte offset, grain data) in file order, as VirtualBox's importer reads them."""
    if vmdk[:4] != b"KDMV":
        raise SequentialError("bad magic")
    (version, flags, capacity, grain, desc_off, desc_size, gtes, _rgd, gd_off, overhead, _unclean) = struct.unpack_from(
        "<IIQQQQIQQQB", vmdk, 4
    )
    if version not in (1, 3):
        raise SequentialError(f"version {version} (VirtualBox takes 1 or 3)")
    if flags & 1 and vmdk[73:77] != b"\n \r\n":
        raise SequentialError("newline check characters corrupted")
    if not (flags & (1 << 16) and flags & (1 << 17)):
        raise SequentialError("not compressed with markers")
    if grain < 8 or grain & (grain - 1) or gtes < 128 or gtes & (gtes - 1):
        raise SequentialError("grain size or GTEs per GT not a power of two large enough")
    text = vmdk[desc_off * SECTOR : (desc_off + desc_size) * SECTOR].split(b"\0", 1)[0].decode()
    lines = text.splitlines()
    if not lines or lines[0].replace(" ", "") != "#DiskDescriptorFile":
        raise SequentialError("descriptor does not start with '# Disk DescriptorFile'")
    if "version=1" not in lines or 'createType="streamOptimized"' not in lines:
        raise SequentialError("descriptor lacks version=1 or createType=streamOptimized")
    if "\r" in text.replace("\r\n", ""):
        raise SequentialError("lone CR in descriptor")
    gd_entries = -(-capacity // (gtes * grain))
    gt_sectors = -(-gtes * 4 // SECTOR)
    gd_sectors = -(-gd_entries * 4 // SECTOR)
    pos = overhead * SECTOR
    last_lba = -1
    while True:
        if pos + 12 > len(vmdk):
            raise SequentialError(f"stream ends at {pos} without an end-of-stream marker")
        lba, size = struct.unpack_from("<QI", vmdk, pos)
        if size:
            if lba <= last_lba and last_lba >= 0:
                raise SequentialError(f"grain at LBA {lba} after LBA {last_lba}: not strictly increasing")
            if lba % grain or lba >= capacity:
                raise SequentialError(f"grain LBA {lba} not grain-aligned or past the capacity")
            if size >= 2 * grain * SECTOR:
                raise SequentialError(f"compressed grain of {size} bytes is too large")
            payload = vmdk[pos + 12 : pos + 12 + size]
            if len(payload) != size:
                raise SequentialError("grain truncated")
            try:
                data = zlib.decompress(payload)
            except zlib.error as e:
                raise SequentialError(f"grain at LBA {lba} does not inflate: {e}") from None
            if len(data) != grain * SECTOR:
                raise SequentialError(f"grain at LBA {lba} inflates to {len(data)} bytes, not {grain * SECTOR}")
            last_lba = lba
            yield lba * SECTOR, data
            pos += -(-(12 + size) // SECTOR) * SECTOR
            continue
        (kind,) = struct.unpack_from("<I", vmdk, pos + 12)
        if kind == 0:
            return
        skip = {1: 1 + gt_sectors, 2: 1 + gd_sectors, 3: 2, 4: 1}.get(kind)
        if skip is None:
            raise SequentialError(f"unknown marker type {kind}")
        pos += skip * SECTOR


def check_footer(vmdk: bytes) -> None:
    """qemu's rule for GD_AT_END: the last three sectors are FOOTER marker, footer, EOS."""
    tail = vmdk[-3 * SECTOR :]
    if struct.unpack_from("<QII", tail, 0)[1:] != (0, 3):
        raise SequentialError("no FOOTER marker three sectors from the end")
    if tail[SECTOR : SECTOR + 4] != b"KDMV":
        raise SequentialError("no footer header")
    if any(tail[2 * SECTOR :]):
        raise SequentialError("the last sector is not an EOS marker")
