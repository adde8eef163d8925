"""What every store offers: bytes in and out by key, one conditional write, and streamed uploads.

A store knows nothing of boxes or catalogs (layout.py has the keys, publish.py the order of writes);
it moves bytes, and tells a write that another writer got to first from one that went through.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, Protocol


class Stat(NamedTuple):
    size: int
    etag: str | None  # what names these bytes: the store's ETag (S3), a file's inode, mtime and size
    modified: float = 0.0  # when it was written, in seconds since the epoch


class Redirect(NamedTuple):
    """A key's bytes are fetched from url (presigned for a while): they never pass through the server."""

    url: str


class LocalFile(NamedTuple):
    """A key's bytes are this machine's file at path, sent as it is (Range, ETag)."""

    path: Path
    stat: os.stat_result


Delivery = Redirect | LocalFile


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

    def upload(self, key: str, *, resume: bool = True) -> Upload:
        """A stream into key; with resume, what an interrupted upload of the same key left may be reused (S3's
        parts), so two uploads of one key at once must not both resume."""

    def deliver(self, key: str, seconds: int) -> Delivery | None:
        """How a client gets key's bytes (a redirect valid for seconds, or a local file), or None when there is none."""

    def anyone_reads(self, key: str) -> str | None:
        """The URL where anyone, without credentials, reads key, when the store lets them; None when it does not, or
        when the store cannot tell (a directory does not know which web server serves it)."""

    def list(self, prefix: str) -> Iterator[str]:
        """The keys under prefix (which ends with a slash), in no particular order."""
