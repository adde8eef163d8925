"""Download counts, kept in the store beside the boxes, counted by any number of `boxpack serve` replicas at once.

No download reads, changes and writes one shared object (every replica would then contend for it, and lose
counts on a race). Each worker keeps its counts in memory and writes them, every FLUSH_SECONDS and when it
stops, to an object of its own for the current hour: .boxpack/counts/ORG/NAME/<worker>-<hour>.json (layout.py),
which only it writes. A box's count is the sum of its objects. An hour's objects no longer change once the hour
is over, so whoever reads a box's counts later folds them into the box's base object (a conditional write that
names each object it took, so a fold that is interrupted and done again counts nothing twice) and deletes them:
a box has at most a base and an object a worker an hour.

A worker stopped with SIGTERM writes what it counted before it goes; SIGKILL loses at most its last
FLUSH_SECONDS.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable

from typing import Any

from . import layout
from .stores.base import Store
from .versioned import Unchanged, Versioned, json_record

FLUSH_SECONDS = 5.0
HOUR = 3600
LIMIT = 1024 * 1024  # bytes of one counts object

Key = tuple[str, str, str]  # version, provider, architecture


def _label(key: Key) -> str:
    return " ".join(key)


def _key(label: str) -> Key | None:
    parts = label.split(" ")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None


class Counter:
    """One worker's counts, for the hour they are in, until they are written."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.worker = os.urandom(6).hex()
        self.hour = int(time.time() // HOUR)
        self.counts: dict[str, dict[str, int]] = {}  # box -> label -> downloads this hour
        self.dirty: set[str] = set()
        self.lock = threading.Lock()

    def add(self, name: str, key: Key) -> None:
        hour = int(time.time() // HOUR)
        with self.lock:
            if hour != self.hour:  # the last hour's counts are written whole before the new hour's begin
                self._write(self.counts, self.dirty, self.hour)
                self.counts, self.dirty, self.hour = {}, set(), hour
            box = self.counts.setdefault(name, {})
            box[_label(key)] = box.get(_label(key), 0) + 1
            self.dirty.add(name)

    def flush(self) -> None:
        """Write what was counted since the last flush (the store's clients block: run it off the event loop)."""
        with self.lock:
            counts = {name: dict(self.counts[name]) for name in self.dirty}
            dirty, self.dirty = self.dirty, set()
            hour = self.hour
        self._write(counts, dirty, hour)

    def _write(self, counts: dict[str, dict[str, int]], names: Iterable[str], hour: int) -> None:
        for name in names:
            data = json.dumps({"counts": counts[name]}, sort_keys=True).encode()
            self.store.put(layout.counts_key(name, f"{self.worker}-{hour}"), data, "application/json", "private, no-store")


def totals(store: Store, name: str, fold: bool = True) -> dict[Key, int]:
    """A box's downloads by version, provider and architecture, every replica's; with fold, past hours folded on the
    way (a reader that may not write, `boxpack catalog show`, does not)."""
    prefix = layout.counts_key(name, "x").removesuffix("x.json")
    base = json_record(store, prefix + "base.json", LIMIT)
    now = int(time.time() // HOUR)
    found: dict[str, dict[str, int]] = {}
    for key in store.list(prefix):
        part = key.removeprefix(prefix).removesuffix(".json")
        got = store.get(key, LIMIT) if part != "base" else None
        if got is not None:
            found[part] = _counts(_object(got[0]))
    past = {part: c for part, c in found.items() if _hour(part) < now - 1}  # an hour over, and one more for late writes
    if past and fold:
        _fold(base, past)
        for part in past:
            store.delete(prefix + part + ".json")
        found = {part: c for part, c in found.items() if part not in past}
    summed: dict[Key, int] = {}
    for counts in [_counts(base.read() or {}), *found.values()]:
        for label, n in counts.items():
            k = _key(label)
            if k is not None:
                summed[k] = summed.get(k, 0) + n
    return summed


def _fold(base: Versioned[dict[str, Any]], past: dict[str, dict[str, int]]) -> None:
    def change(doc: dict | None) -> dict:
        doc = doc or {"counts": {}, "folded": []}
        new = [part for part in past if part not in doc["folded"]]
        if not new:
            raise Unchanged
        for part in new:
            for label, n in past[part].items():
                doc["counts"][label] = doc["counts"].get(label, 0) + n
        doc["folded"] = sorted(set(doc["folded"][-1000:]) | set(new))  # the last ones: what a retried fold may meet again
        return doc

    base.update(change)


def _hour(part: str) -> int:
    tail = part.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _object(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _counts(doc: dict[str, Any]) -> dict[str, int]:
    """An object's counts, what is a count of them (another writer's object is read as far as it makes sense)."""
    counts = doc.get("counts")
    return {k: v for k, v in counts.items() if isinstance(k, str) and isinstance(v, int) and v > 0} if isinstance(counts, dict) else {}
