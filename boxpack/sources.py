"""open_source(): the right Source for any input, told by its bytes, not its name.

A box archive is read by box.py; a disk image through its format's reader
(formats/); a format boxpack recognises but cannot read is refused by name;
anything else is a raw disk.
"""

from __future__ import annotations

import os

from . import box
from .bytesource import FileBytes
from .disk import ImageSource, Source
from .errors import BoxpackError
from .formats import HEAD, RAW, TAIL, detect
from .formats.raw import RawDisk


def open_source(path: str | os.PathLike[str], threads: int = 2) -> Source:
    disk = RawDisk(path)
    try:
        head = disk.read(0, HEAD)
        if box.compression(head):
            disk.close()
            return box.box_source(disk.path, threads)
        if disk.path.suffix == ".box":  # a damaged box would otherwise be packed as a raw disk
            raise BoxpackError(f"{disk.path}: is named like a box but is not a tar, gzip, xz or bzip2 archive")
        fmt = detect(head, disk.read(max(0, disk.file_size - TAIL), min(TAIL, disk.file_size)))
        if fmt is RAW:
            return disk
        if fmt.reader is None:
            raise BoxpackError(f"{disk.path}: is a {fmt.name} image, which boxpack cannot read yet; {fmt.refusal}")
        fd, size, name = disk.fd, disk.file_size, str(disk.path)
        reader = fmt.reader(FileBytes(fd, size, name), name)
        return ImageSource(disk.path, reader, lambda: fmt.reader(FileBytes(fd, size, name), name), threads, close=disk.close)
    except BaseException:
        disk.close()
        raise
