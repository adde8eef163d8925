"""The invalid tokens each client tried in the last minute, counted across all of a server's worker processes.

uvicorn's workers are separate processes: a count kept in each let a client try `failures_per_minute` tokens
per worker (20 with 2 workers, 40 with 4). The table is a file every worker maps (run.py makes it, named
in the configuration): a fixed number of buckets, each the times of the last few failures of the clients that
hash there (a keyed hash, so no client can choose a victim's bucket). Reads take no lock (a torn read only
miscounts one failure); writes take the file's lock. Memory and work stay fixed whatever a client sends.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import tempfile
import time

BUCKETS = 4096
SLOT = struct.Struct("<Qd")  # a client's hash, when it failed (time.monotonic(): one clock for the machine)
WINDOW = 60.0


class Failures:
    """Invalid tokens per client in the last WINDOW seconds, shared by every process that maps path."""

    def __init__(self, limit: int, path: str | None = None, key: bytes = b"") -> None:
        self.limit, self.slots = limit, max(limit, 1)
        size = BUCKETS * self.slots * SLOT.size
        if path is None:  # one process (in-process tests, a single worker): an anonymous table
            self.fd = -1
            self.table = mmap.mmap(-1, size)
        else:
            self.fd = os.open(path, os.O_RDWR)
            self.table = mmap.mmap(self.fd, size)
        self.key = key or os.urandom(16)

    def _bucket(self, client: str) -> tuple[int, int]:
        digest = hashlib.blake2b(client.encode(errors="replace"), key=self.key, digest_size=8).digest()
        h = int.from_bytes(digest, "little") | 1  # never 0, which marks an empty slot
        return h, (h % BUCKETS) * self.slots * SLOT.size

    def _times(self, h: int, base: int, now: float) -> list[float]:
        found = []
        for i in range(self.slots):
            who, when = SLOT.unpack_from(self.table, base + i * SLOT.size)
            if who == h and now - when < WINDOW:
                found.append(when)
        return sorted(found)

    def wait(self, client: str) -> int:
        """Seconds the client must wait before it may try another token; 0 when it may now."""
        h, base = self._bucket(client)
        now = time.monotonic()
        times = self._times(h, base, now)
        return int(WINDOW + 1 - (now - times[0])) if len(times) >= self.limit else 0

    def add(self, client: str) -> None:
        h, base = self._bucket(client)
        now = time.monotonic()
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            slots = [SLOT.unpack_from(self.table, base + i * SLOT.size) for i in range(self.slots)]
            # the oldest slot: an empty or expired one first, then this client's oldest, then anyone's
            oldest = min(range(self.slots), key=lambda i: (now - slots[i][1] < WINDOW, slots[i][0] != h, slots[i][1]))
            SLOT.pack_into(self.table, base + oldest * SLOT.size, h, now)
        finally:
            if self.fd >= 0:
                fcntl.flock(self.fd, fcntl.LOCK_UN)


def shared_table(limit: int) -> tuple[str, str]:
    """A new table file for the workers to map, and the hash key they share (hex); the caller removes the file."""
    with tempfile.NamedTemporaryFile(prefix="boxpack-serve-failures-", delete=False) as f:
        f.truncate(BUCKETS * max(limit, 1) * SLOT.size)
    return f.name, os.urandom(16).hex()
