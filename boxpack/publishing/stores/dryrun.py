"""A dry run: any store, read as it is and written to nowhere.

What a run would write is kept here, in memory (small objects) or counted (uploads), so the same code
that publishes answers what it would do: the boxes it would send, the catalog it would write.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from ..layout import CATALOG_LIMIT
from .base import Delivery, Stat, Store


class DryRunStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.where, self.nested = store.where, store.nested
        self._written: dict[str, bytes | None] = {}  # None: deleted
        self._uploaded: dict[str, int] = {}

    def get(self, key: str, limit: int) -> tuple[bytes, str] | None:
        if key not in self._written:
            return self.store.get(key, limit)
        data = self._written[key]
        return None if data is None else (data, "dry-" + hashlib.sha256(data).hexdigest())

    def put(self, key: str, data: bytes, content_type: str, cache: str | None = None, *, if_absent: bool = False,
            if_version: str | None = None) -> bool:
        if if_absent and self.stat(key) is not None:
            return False
        there = self.get(key, CATALOG_LIMIT) if if_version is not None else None  # only catalogs are versioned
        if if_version is not None and (there is None or there[1] != if_version):
            return False
        self._written[key] = data
        return True

    def stat(self, key: str) -> Stat | None:
        if key in self._uploaded:
            return Stat(self._uploaded[key], None)
        if key in self._written:
            data = self._written[key]
            return None if data is None else Stat(len(data), None)
        return self.store.stat(key)

    def delete(self, key: str) -> None:
        self._written[key] = None
        self._uploaded.pop(key, None)

    def list(self, prefix: str) -> Iterator[str]:
        there = {k for k in self.store.list(prefix) if self._written.get(k, b"") is not None}
        yield from there | {k for k, v in self._written.items() if k.startswith(prefix) and v is not None}

    def upload(self, key: str, *, resume: bool = True) -> _Counted:
        return _Counted(self, key)

    def deliver(self, key: str, seconds: int) -> Delivery | None:
        return self.store.deliver(key, seconds)

    def anyone_reads(self, key: str) -> str | None:
        return self.store.anyone_reads(key)


class _Counted:
    """An upload that counts what it is given and sends nothing."""

    resumed = 0

    def __init__(self, store: DryRunStore, key: str) -> None:
        self.store, self.key = store, key
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self.size += len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def commit(self, replace: bool) -> None:
        self.store._uploaded[self.key] = self.size

    def abort(self) -> None:
        pass
