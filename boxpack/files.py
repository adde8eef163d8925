"""The one way boxpack writes a file: whole or not at all, never over another without being asked.

Boxes, checksum files, catalogs and published objects in a directory are written under a temporary name
in their own directory and placed at their path only when complete, with one policy: the file is
fsynced, given the mode the umask leaves of 0666, placed (a hard link that fails when a file is there
already, or with replace a rename over it), and the directory fsynced, so a power cut leaves the old
file or the new one.

SIGKILL (or a power cut) cannot be caught. So where the file system has it (ext4, xfs, btrfs, tmpfs), the
file is written unnamed (O_TMPFILE) and gets its name only when it is placed: a process killed while
writing leaves nothing. Elsewhere it has a .boxpack-* temporary name, held under an exclusive flock until
it is placed; the kernel drops the locks of a process that is gone, so a temporary file nobody holds is a
leftover, and the next run in that directory removes it and says so.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .errors import OutputFailed

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


def _mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def unnamed(directory: Path, what: str = "the file") -> int | None:
    """A new file in directory with no name yet (O_TMPFILE), open and locked; None where the file system cannot
    make one (the caller then names it, create())."""
    if not os.path.isdir("/proc/self/fd"):  # where it gets its name from, when placed
        return None
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_RDWR, 0o600)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):  # not this file system, or not this kernel
            return None
        raise OutputFailed(f"{directory}: cannot write {what} there: {e.strerror}") from None
    fcntl.flock(fd, fcntl.LOCK_EX)  # a name it is given while being placed is held, not swept
    return fd


class AtomicFile:
    """A file on its way to path: write to .file, then commit() places it; abort() (or a failed commit)
    leaves nothing. Unnamed until then where the file system allows, else under a temporary name that stays
    open, and so locked."""

    def __init__(self, path: Path, what: str = "the file", suffix: str = ".part") -> None:
        self.path, self.what = path, what
        self.tmp: Path | None = None
        fd = unnamed(path.parent, what)
        if fd is None:
            fd, self.tmp = create(path.parent, suffix, what)
        else:
            sweep(path.parent)
        self.file: BinaryIO = os.fdopen(fd, "wb")

    def _link(self, name: str) -> None:
        """Give the unnamed file a name in its directory: linkat(AT_SYMLINK_FOLLOW) of /proc/self/fd/N (open(2),
        O_TMPFILE). os.link makes that call only with a directory descriptor; plain link(2) would not follow."""
        directory = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.link(f"/proc/self/fd/{self.file.fileno()}", name, dst_dir_fd=directory, follow_symlinks=True)
        finally:
            os.close(directory)

    def _name(self) -> Path:
        """The temporary name the file has, or is given now."""
        if self.tmp is None:
            name = f"{PREFIX}{secrets.token_hex(6)}.tmp"
            self._link(name)
            self.tmp = self.path.parent / name
        return self.tmp

    def commit(self, replace: bool) -> bool:
        """Place the file; False (and nothing placed) when one is there and replace is not given."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            os.fchmod(self.file.fileno(), _mode())
            if replace:
                os.replace(self._name(), self.path)
            elif self.tmp is None:
                try:
                    self._link(self.path.name)
                except FileExistsError:
                    return False
            else:
                try:
                    os.link(self.tmp, self.path)
                except FileExistsError:
                    return False
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            return True
        except OSError as e:
            raise OutputFailed(f"{self.path}: cannot write {self.what}: {e.strerror}") from None
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop the temporary file (after a commit, what is left of it: its name)."""
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
        self.file.close()


def write_atomically(path: Path, data: bytes, what: str, replace: bool) -> bool:
    """A small file (a checksum, a catalog, an object in a directory store), whole or not at all; False when
    a file is there and replace is not given."""
    f = AtomicFile(path, what, ".tmp")
    try:
        f.file.write(data)
    except OSError as e:
        f.abort()
        raise OutputFailed(f"{path}: cannot write {what}: {e.strerror}") from None
    return f.commit(replace)


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on a directory, for a read, change and write of a file in it that must not be
    interleaved with another's (a catalog); no lock file is left beside it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError as e:
        raise OutputFailed(f"{directory}: cannot open the directory: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
