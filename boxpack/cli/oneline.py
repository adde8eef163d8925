"""Warnings from the library (the "boxpack" logger) printed as one line each on stderr, as errors are."""

from __future__ import annotations

import logging
import sys


class _OneLine(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"boxpack: {record.levelname.lower()}: {record.getMessage()}\n")


def show_warnings() -> None:
    """Once per process: the command's warnings go to stderr, and not to an embedding program's handlers."""
    logger = logging.getLogger("boxpack")
    if not any(isinstance(h, _OneLine) for h in logger.handlers):
        logger.addHandler(_OneLine())
        logger.propagate = False
