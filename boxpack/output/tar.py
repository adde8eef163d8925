"""The box archive: a deterministic tar stream built from members of known size.

Headers are GNU format: sizes of 8 GiB and more use the base-256 size field,
which every bsdtar reads, where PAX size records of 8 GiB and more were read as
empty by libarchive before 3.3.2 (Packer switched to GNU headers for this).
Names carry no "./" prefix: Packer's registry tooling matches the bare name.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterable, Iterator

from ..errors import BadInput, BadOption
from ..member import Chunk, Member

BLOCK = 512
#: 1980-01-01, the mtime used when SOURCE_DATE_EPOCH is not set.
DEFAULT_MTIME = 315532800


def source_date_epoch() -> int:
    """The archive mtime: SOURCE_DATE_EPOCH when set, else a fixed date."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return DEFAULT_MTIME
    try:
        epoch = int(value)
    except ValueError:
        raise BadOption(f"SOURCE_DATE_EPOCH={value!r} is not an integer number of seconds") from None
    if epoch < 0:
        raise BadOption(f"SOURCE_DATE_EPOCH={value!r} is negative")
    return epoch


def tar_header(name: str, size: int, mtime: int) -> bytes:
    """A GNU tar header for a regular file owned by 0:0, mode 0644."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info.tobuf(format=tarfile.GNU_FORMAT, encoding="utf-8", errors="strict")


def tar_stream(members: Iterable[Member], mtime: int) -> Iterator[tuple[Chunk, bool]]:
    """The tar archive of members, in the order given, as (bytes, stored) pieces."""
    for m in members:
        yield tar_header(m.name, m.size, mtime), False
        written = 0
        for chunk in m.chunks():
            written += len(chunk)
            if written > m.size:
                break
            yield chunk, m.stored
        if written != m.size:  # an included file that changed while the box was written, or a bug
            raise BadInput(f"{m.name}: {written} bytes where {m.size} were expected; did it change while the box was written?")
        if m.size % BLOCK:
            yield bytes(BLOCK - m.size % BLOCK), False
    yield bytes(2 * BLOCK), False
