"""One holder at a time, across every server replica and command over a store, of the steps that must not
interleave for one box: a release, a revoke, a deletion, an upload's commit, a prune.

Conditional writes keep each object true on its own, but a release and a deletion each write two (the
catalog, then the boxes or the record), and interleaved they leave a catalog naming a box that is gone. So
each takes the box's lease first: an object under .boxpack/leases/ written only where there is none. A
holder that dies leaves its lease behind; it is taken over once it has run out (LEASE_SECONDS), or at once
when the holder was a process of this machine that is no longer running (its pid gone, or reused by a
process started later), which is how a killed server's lease goes when it restarts.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import Conflict
from . import layout
from .stores.base import Store
from .versioned import Unchanged, json_record

_held = threading.local()  # the boxes whose lease this thread holds: a step may call another that takes it too
LEASE_SECONDS = 300.0  # longer than any step it guards (committing a 5 GB multipart upload included)
WAIT_SECONDS = 120.0  # how long a step waits for another's lease before it gives up


def _started(pid: int) -> str | None:
    """When process pid started (clock ticks after boot, /proc/PID/stat field 22), or None when there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def holder() -> dict[str, Any]:
    """This process, as a lease names its holder."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _started(os.getpid())}


def _stale(doc: dict[str, Any], now: float) -> bool:
    if not isinstance(doc.get("until"), (int, float)) or doc["until"] < now:
        return True
    here = doc.get("host") == socket.gethostname() and isinstance(doc.get("pid"), int)
    return here and _started(doc["pid"]) != doc.get("started")


@contextmanager
def held(store: Store, name: str, wait: float = WAIT_SECONDS) -> Iterator[None]:
    """The box ORG/NAME's lease, for the duration of the with block; Conflict when another keeps it for longer than wait.
    A thread that holds it already goes on (a release writes the catalog, which takes it too)."""
    mine: set[tuple[str, str]] = _held.__dict__.setdefault("boxes", set())
    if (store.where, name) in mine:
        yield
        return
    record = json_record(store, layout.lease_key(name), limit=4096)
    me = {**holder(), "token": os.urandom(8).hex()}
    deadline = time.monotonic() + wait

    def take(doc: dict[str, Any] | None) -> dict[str, Any]:
        if doc is not None and not _stale(doc, time.time()):
            raise Unchanged
        return {**me, "until": time.time() + LEASE_SECONDS}

    attempt = 0
    while (record.update(take) or {}).get("token") != me["token"]:
        if time.monotonic() > deadline:
            raise Conflict(f"{name}: another server or command has been changing this box for over {wait:.0f} s; "
                           "try again later")
        time.sleep(min(1.0, 0.02 * 2**attempt) * random.uniform(0.5, 1.5))
        attempt += 1
    mine.add((store.where, name))
    try:
        yield
    finally:
        mine.discard((store.where, name))

        def drop(doc: dict[str, Any] | None) -> dict[str, Any] | None:
            if doc is None or doc.get("token") != me["token"]:
                raise Unchanged  # taken over meanwhile (it ran out): the new holder's, not ours to drop
            return None

        record.update(drop)
