"""Temporary files beside the file they become: locked while in use, swept when a killed run left them.

Boxes, checksum files and catalogs are written under a temporary name in their own directory and
renamed into place when complete. SIGKILL (or a power cut) cannot be caught, so the temporary file
stays. Each one is therefore held under an exclusive flock until it is renamed; the kernel drops the
locks of a process that is gone, so a .boxpack-* temporary file nobody holds is a leftover, and the
next run in that directory removes it and says so.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from pathlib import Path

from ..errors import OutputFailed

PREFIX = ".boxpack-"
SUFFIXES = (".part", ".tmp")
log = logging.getLogger("boxpack")


def create(directory: Path, suffix: str = ".part", what: str = "the file") -> tuple[int, Path]:
    """A new temporary file in directory, open and locked (the lock goes with the descriptor); the
    leftovers of killed runs there are removed first."""
    sweep(directory)
    while True:
        try:
            fd, name = tempfile.mkstemp(dir=directory, prefix=PREFIX, suffix=suffix)
        except OSError as e:
            raise OutputFailed(f"{directory}: cannot write {what} there: {e.strerror}") from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(name).st_ino == os.fstat(fd).st_ino:
                return fd, Path(name)
        except FileNotFoundError:
            pass
        os.close(fd)  # another run swept it between its creation and the lock: make another


def sweep(directory: Path) -> int:
    """Remove the temporary files of boxpack's that no running process holds; returns how many."""
    removed = 0
    try:
        names = [n for n in os.listdir(directory) if n.startswith(PREFIX) and n.endswith(SUFFIXES)]
    except OSError:
        return 0
    for name in names:
        path = directory / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(path)
            removed += 1
        except OSError:
            pass  # a running boxpack holds it
        finally:
            os.close(fd)
    if removed:
        log.warning("%s: removed %d temporary file(s) that a killed boxpack left there", directory, removed)
    return removed


def place(tmp: Path, path: Path, replace: bool) -> bool:
    """The finished temporary file at path: renamed over what is there, or (not replace) linked only if
    nothing is, so a file that appeared meanwhile is never overwritten. False when one had; tmp is gone."""
    if replace:
        os.replace(tmp, path)
        return True
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True
