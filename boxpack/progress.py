"""A progress bar on stderr, drawn only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


class Progress:
    """Counts bytes of a phase and redraws at most ten times a second."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.label, self.total, self.done, self.started, self.drawn = "", 1, 0, 0.0, 0.0

    def phase(self, label: str, total: int) -> None:
        self.finish()
        self.label, self.total, self.done = label, max(total, 1), 0
        self.started = time.monotonic()
        self._draw()

    def __call__(self, nbytes: int) -> None:
        self.done += nbytes
        now = time.monotonic()
        if now - self.drawn >= 0.1:
            self._draw(now)

    def _draw(self, now: float | None = None) -> None:
        now = now or time.monotonic()
        self.drawn = now
        frac = min(self.done / self.total, 1.0)
        bar = "#" * int(frac * 30)
        rate = self.done / max(now - self.started, 1e-6)
        self.stream.write(
            f"\r{self.label:<18} [{bar:<30}] {frac:4.0%} {human_size(self.done)}/{human_size(self.total)}"
            f" {human_size(rate)}/s \x1b[K"
        )
        self.stream.flush()

    def finish(self) -> None:
        if self.label:
            self.done = self.total
            self._draw()
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.label = ""


class Transfers:
    """Several transfers at once, on one line: how many are done, the bytes so far and their rate, and
    each running one's bytes. A finished transfer's line is printed above it. Thread-safe."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        import shutil
        import threading

        self.stream, self.count, self.finished, self.bytes = stream, 0, 0, 0
        self.running: dict[str, int] = {}
        self.started = self.drawn = time.monotonic()
        self.width = shutil.get_terminal_size().columns
        self._lock = threading.Lock()

    def expect(self, count: int) -> None:
        """How many transfers there will be."""
        self.count = count

    def __call__(self, label: str, nbytes: int) -> None:
        with self._lock:
            self.running[label] = self.running.get(label, 0) + nbytes
            self.bytes += nbytes
            now = time.monotonic()
            if now - self.drawn >= 0.1:
                self._draw(now)

    def done(self, label: str, line: str) -> None:
        with self._lock:
            self.running.pop(label, None)
            self.finished += 1
            self.stream.write(f"\r\x1b[K{line}\n")
            self._draw(time.monotonic())

    def _draw(self, now: float) -> None:
        self.drawn = now
        rate = self.bytes / max(now - self.started, 1e-6)
        text = f"{self.finished}/{self.count} done, {human_size(self.bytes)}, {human_size(rate)}/s"
        text += "".join(f" | {label} {human_size(n)}" for label, n in self.running.items())
        self.stream.write(f"\r{text[: self.width - 1]}\x1b[K")
        self.stream.flush()

    def finish(self) -> None:
        with self._lock:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
