"""The one ordered thread pool: work runs on threads, results come back in submission order.

Compression (gzip pieces, VMDK grains) and decompression (qcow2 clusters,
VMDK grains) all need the same thing: many cores busy, output in input order,
and a bounded number of pieces in flight so memory stays flat.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
Tag = TypeVar("Tag")


class OrderedPool(Generic[Tag, T]):
    """Runs callables on `threads` threads; put() returns the results that had to leave the window, in order."""

    def __init__(self, threads: int, window: int, name: str) -> None:
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix=name)
        self.window = max(1, window)
        self.pending: deque[tuple[Tag, Future[T] | T]] = deque()

    def put(self, tag: Tag, work: Callable[[], T] | T, run: bool = True) -> list[tuple[Tag, T]]:
        """Queue work (run on the pool when run, else passed through as it is); return what is due."""
        due = [self._pop()] if len(self.pending) >= self.window else []
        self.pending.append((tag, self.pool.submit(work) if run else work))  # type: ignore[arg-type]
        return due

    def drain(self) -> Iterator[tuple[Tag, T]]:
        while self.pending:
            yield self._pop()

    def _pop(self) -> tuple[Tag, T]:
        tag, item = self.pending.popleft()
        return tag, item.result() if isinstance(item, Future) else item

    def close(self) -> None:
        """Stop: queued work is cancelled, running work is waited for."""
        self.pending.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> OrderedPool[Tag, T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def in_order(items: Iterable[tuple[Tag, "Callable[[], T] | T"]], threads: int) -> Iterator[tuple[Tag, T]]:
    """(tag, result) for each (tag, work): callables run on the pool, other values pass through; in order."""
    with OrderedPool[Tag, T](threads, 8 * threads, "inflate") as pool:
        for tag, work in items:
            yield from pool.put(tag, work, run=callable(work))
        yield from pool.drain()
