"""Findings: what a check found, one type for every format, provider and box rule.

A hostile file can break one rule millions of times (a qcow2 L1 table of 8M
bad entries); Findings counts each code and keeps the first few messages, so a
report stays small whatever the input.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    code: str  # stable, for scripts: "qcow2-leak", "ovf-rule", ...
    severity: str  # error, warning or info
    message: str  # one line, naming the member and what is wrong


class Findings:
    """An ordered collection of findings that keeps at most EXAMPLES messages per code."""

    EXAMPLES = 3

    def __init__(self) -> None:
        self._kept: list[Finding] = []
        self._counts: Counter[str] = Counter()
        self._severity: dict[str, str] = {}

    def add(self, code: str, severity: str, message: str) -> None:
        if severity not in SEVERITIES:
            raise ValueError(f"unknown severity {severity!r}")
        self._counts[code] += 1
        self._severity.setdefault(code, severity)
        if self._counts[code] <= self.EXAMPLES:
            self._kept.append(Finding(code, severity, message))

    def extend(self, other: Findings) -> None:
        for f in other._kept:
            self.add(f.code, f.severity, f.message)
        for code, n in other._counts.items():  # what the other one counted but did not keep
            extra = n - min(n, self.EXAMPLES)
            self._counts[code] += extra
            self._severity.setdefault(code, other._severity[code])

    def count(self, code: str) -> int:
        return self._counts[code]

    def has(self, *codes: str) -> bool:
        return any(self._counts[c] for c in codes)

    def __iter__(self) -> Iterator[Finding]:
        """The kept findings, then one line per code that had more than it kept."""
        yield from self._kept
        for code, n in self._counts.items():
            if n > self.EXAMPLES:
                yield Finding(code, self._severity[code], f"... and {n - self.EXAMPLES} more of {code}")

    def __len__(self) -> int:
        return sum(self._counts.values())

    def __bool__(self) -> bool:
        return bool(self._counts)
