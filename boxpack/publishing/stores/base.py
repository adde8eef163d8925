"""What every store offers: bytes in and out by key, one conditional write, and streamed uploads.

A store knows nothing of boxes or catalogs (layout.py has the keys, publish.py the order of writes);
it moves bytes, and tells a write that another writer got to first from one that went through.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple, Protocol


class Stat(NamedTuple):
    size: int
    etag: str | None  # what names these bytes: the store's ETag (S3), a file's inode, mtime and size
    modified: float = 0.0  # when it was written, in seconds since the epoch


class Upload(Protocol):
    """A box on its way to its key: written as a stream, visible only once committed."""

    size: int  # bytes written so far
    resumed: int  # bytes the store already held from an interrupted run, not sent again

    def write(self, data: bytes | memoryview, /) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None:
        """Every byte sent; the object is not visible yet."""

    def commit(self, replace: bool) -> None:
        """Make the object visible at its key, and check that the store holds what was sent."""

    def abort(self) -> None:
        """Drop what was sent."""


class Store(Protocol):
    where: str  # for messages: s3://bucket/prefix or the directory
    nested: bool  # a key may also be the prefix of others (ORG/NAME beside ORG/NAME/1.0/...): S3, not a directory

    def get(self, key: str, limit: int) -> tuple[bytes, str] | None:
        """(the object's bytes, its version) or None; an object of more than limit bytes is an error. The
        version is what put(if_version=) compares: the ETag, or a digest of a file."""

    def put(self, key: str, data: bytes, content_type: str, cache: str | None = None, *, if_absent: bool = False,
            if_version: str | None = None) -> bool:
        """Write a small object; with if_absent only where there is none, with if_version only if it is still
        that version. False when the condition failed (another writer was first), and nothing was written."""

    def stat(self, key: str) -> Stat | None: ...

    def delete(self, key: str) -> None: ...

    def upload(self, key: str) -> Upload: ...

    def list(self, prefix: str) -> Iterator[str]:
        """The keys under prefix (which ends with a slash), in no particular order."""
