"""A box's archive onto an open stream: the members as a deterministic tar (tar.py), gzipped on every core
(gzip.py) or not, with its digest computed as it is written. Where the stream goes is destinations.py's.
"""

from __future__ import annotations

from ..errors import InternalError
from ..member import Deflated, Member
from .destinations import Stream
from .gzip import Compression, DigestWriter
from .tar import source_date_epoch, tar_stream

COMPRESSIONS = ("gzip", "none")


def write_archive(out: Stream, members: list[Member], compression: Compression, checksum: str,
                  progress=None) -> DigestWriter:
    """The box's bytes to out; the DigestWriter says how many and their digest."""
    digest = DigestWriter(out, checksum)
    if not compression.gzip:
        for chunk, _ in tar_stream(members, source_date_epoch()):
            if isinstance(chunk, Deflated):
                raise InternalError("internal error: a compressed piece in a box written without gzip")
            digest.write(chunk)
            if progress:
                progress(len(chunk))
        out.flush()
        return digest
    gz = compression.stream(digest)
    try:
        for chunk, stored in tar_stream(members, source_date_epoch()):
            gz.write(chunk, stored)
            if progress:
                progress(len(chunk))
        gz.close()
        out.flush()
    except BaseException:
        gz.abort()
        raise
    return digest
