"""open_source(): the right Source for any input, told by its bytes, not its name.

A box archive is read by box.py; a disk image through its format's reader
(formats/), a Parallels disk directory through the image its descriptor names (or, split, its pieces); a format boxpack recognises but cannot read is refused by name;
a compressed file holds either a tar (a box, or a raw disk in a tar as GCE
ships it) or a raw disk; anything else is a raw disk.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..disk.bytesource import FileBytes
from ..disk.source import ImageSource, Source
from ..errors import BadInput
from ..formats import HEAD, RAW, TAIL, detect, parallels_hdd
from ..formats.raw import RawDisk
from . import archive, box
from .compressed_disk import CompressedRawDisk, peek


def open_source(path: str | os.PathLike[str], threads: int = 2) -> Source:
    if parallels_hdd.is_disk_directory(path):  # a Parallels disk directory: the image it runs from, or its pieces
        parts = parallels_hdd.parts_in(Path(path))
        if len(parts) > 1:
            return parallels_hdd.open_split(Path(path), parts, threads)
        path = parts[0][3]
    disk = RawDisk(path)
    try:
        head = disk.read(0, HEAD)
        kind = archive.compression(head)
        if kind is not None:
            disk.close()
            return _compressed(disk.path, kind, threads)
        if disk.path.suffix == ".box":  # a damaged box would otherwise be packed as a raw disk
            raise BadInput(f"{disk.path}: is named like a box but is not a tar, gzip, xz, bzip2 or zstd archive")
        fmt = detect(head, disk.read(max(0, disk.file_size - TAIL), min(TAIL, disk.file_size)))
        if fmt is RAW:
            return disk
        if fmt.reader is None:
            raise BadInput(f"{disk.path}: is a {fmt.name} image, which boxpack cannot read yet; {fmt.refusal}")
        fd, size, name, reader_of = disk.fd, disk.file_size, str(disk.path), fmt.reader
        reader = reader_of(FileBytes(fd, size, name), name)
        return ImageSource(disk.path, reader, lambda: reader_of(FileBytes(fd, size, name), name), threads, close=disk.close)
    except BaseException:
        disk.close()
        raise


def _compressed(path: Path, kind: str, threads: int) -> Source:
    """A tar (read as a box) or a compressed raw disk; a compressed image of another format is refused."""
    if kind == "none":
        return box.box_source(path, threads)
    head = peek(path, kind, HEAD)
    if archive.is_tar(head) or path.suffix == ".box":
        return box.box_source(path, threads)
    fmt = detect(head, b"")
    if fmt is not RAW:
        raise BadInput(f"{path}: is a {kind}-compressed {fmt.name} image; boxpack reads compressed raw disks only, "
                           f"so decompress it first")
    return CompressedRawDisk(path, kind)
