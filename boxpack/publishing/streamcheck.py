"""A box checked as it streams past (mirror's downloads, the API's uploads): `boxpack verify` reads a copy of
the bytes in another thread, in bounded memory, while they go on to the store."""

from __future__ import annotations

import queue
import threading
from typing import Any


class StreamCheck:
    """The box bytes, also handed to `boxpack verify` running in another thread, in bounded memory.
    If verify stops reading early (an unreadable box), the copy goes on without it."""

    def __init__(self, label: str) -> None:
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=8)
        self._stopped = threading.Event()
        self.report: Any = None
        self.failure: str | None = None
        self._thread = threading.Thread(target=self._run, args=(label,), daemon=True)
        self._thread.start()

    def _run(self, label: str) -> None:
        from ..inspect.verify import examine

        try:
            self.report = examine(label, stream=_QueueReader(self._queue))  # type: ignore[arg-type]
        except Exception as e:  # a bug in verify must not stop the copy; it is reported with the box
            self.failure = f"{type(e).__name__}: {e}"
        finally:
            self._stopped.set()

    def write(self, data: bytes) -> None:
        while not self._stopped.is_set():
            try:
                self._queue.put(data, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> Any:
        """The end of the box; the report once verify has read it."""
        self.write(b"")
        self._thread.join()
        return self.report


class _QueueReader:
    """A file-like reader of the chunks put in a queue (b"" ends them): read(n) returns n bytes until the end."""

    def __init__(self, chunks: queue.Queue[bytes]) -> None:
        self._chunks = chunks
        self._chunk = b""
        self._pos = 0
        self._eof = False

    def read(self, n: int = -1) -> bytes:
        parts = []
        want = n if n >= 0 else float("inf")
        while want > 0:
            if self._pos == len(self._chunk):
                if self._eof:
                    break
                self._chunk, self._pos = self._chunks.get(), 0
                if not self._chunk:
                    self._eof = True
                    break
            take = int(min(want, len(self._chunk) - self._pos))
            parts.append(self._chunk[self._pos:self._pos + take])
            self._pos += take
            want -= take
        return b"".join(parts)

    def close(self) -> None:
        pass
