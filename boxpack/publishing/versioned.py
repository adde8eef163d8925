"""A small object in a store that several writers change at once (a catalog, a box's record, a lease): read,
changed, and written back only if it is still what was read, redone on what another writer left.

The one read-change-write loop of the publishing wing: PublishedCatalog (publish.py), the API's box records
(boxes.py), the leases that order a box's releases and deletions (lease.py) and the token and visibility
records (access.py) all go through it. The store's conditional write (If-Match and If-None-Match on S3, a
compare under the directory's lock in a directory) is what makes a lost update impossible.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ..errors import BadInput, OutputFailed
from .stores.base import Store

T = TypeVar("T")
RETRIES = 20
RECORD_LIMIT = 4 * 1024 * 1024  # a record's bytes, at most: every version of a box, described


class Unchanged(Exception):
    """Raised by a change function: nothing to write."""


def json_object(data: bytes, where: str) -> dict[str, Any]:
    """A record's bytes as a JSON object; BadInput (left as it is) when they are not one."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise BadInput(f"{where}: not JSON; it was left as it is") from None
    if not isinstance(doc, dict):
        raise BadInput(f"{where}: not a JSON object; it was left as it is")
    return doc


def json_bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False).encode() + b"\n"


class Versioned(Generic[T]):
    """The object at key, decoded to T. update() is the only way it is written."""

    def __init__(self, store: Store, key: str, decode: Callable[[bytes, str], T], encode: Callable[[T], bytes], *,
                 limit: int = RECORD_LIMIT, content_type: str = "application/json", cache: str = "private, no-store") -> None:
        self.store, self.key = store, key
        self.decode, self.encode = decode, encode
        self.limit, self.content_type, self.cache = limit, content_type, cache

    @property
    def where(self) -> str:
        return f"{self.store.where}/{self.key}"

    def read(self) -> T | None:
        got = self.store.get(self.key, self.limit)
        return self.decode(got[0], self.where) if got else None

    def update(self, change: Callable[[T | None], T | None]) -> T | None:
        """change(what is there, or None) gives what is to be there (None: nothing, so it is deleted). Raise
        Unchanged in change to leave it as it is; then what is there is returned."""
        vanished = 0  # refused as present, then absent: made and deleted between (a lease), or SeaweedFS's refusal
        for attempt in range(RETRIES):
            got = self.store.get(self.key, self.limit)
            current = self.decode(got[0], self.where) if got else None
            try:
                doc = change(current)
            except Unchanged:
                return current
            if doc is None:
                if got is not None:
                    self.store.delete(self.key)
                return None
            data = self.encode(doc)
            if self.store.put(self.key, data, self.content_type, self.cache, if_absent=got is None,
                              if_version=got[1] if got else None):
                self.written(data)
                return doc
            vanished = vanished + 1 if got is None and self.store.get(self.key, self.limit) is None else 0
            if vanished == 3:  # a lease made and released three times over in a row is not what happened
                raise OutputFailed(f"{self.where}: the store refuses to create it but serves none (SeaweedFS does this "
                                   f"once other keys start with it){self.refused_hint()}")
            time.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.5))
        raise OutputFailed(f"{self.where}: changed {RETRIES} times while this update was retried; run again")

    def written(self, data: bytes) -> None:
        """After each write that went through (PublishedCatalog brings the catalog's copies up here)."""

    def refused_hint(self) -> str:
        """What a user can do when the store refuses to create the object."""
        return ""


def json_record(store: Store, key: str, limit: int = RECORD_LIMIT) -> Versioned[dict[str, Any]]:
    """A JSON object at key (a record under .boxpack/)."""
    return Versioned(store, key, json_object, json_bytes, limit=limit)
