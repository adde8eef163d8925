"""A local directory as a store, for a static web server (nginx, Apache, GitHub Pages) to serve.

Every file appears whole or not at all (files.py: a temporary name, fsynced, linked, or renamed into place
when asked to replace). A conditional write compares and writes under the directory lock that `boxpack
catalog` takes for a catalog file (files.locked), so both take turns; a file's version is its SHA-256.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ... import files
from ...errors import OutputFailed
from .base import LocalFile, Stat


class DirectoryStore:
    nested = False

    def __init__(self, root: Path) -> None:
        self.root = root
        self.where = str(root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str, limit: int) -> tuple[bytes, str] | None:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                data = f.read(limit + 1)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise OutputFailed(f"{path}: cannot read: {e.strerror}") from None
        if len(data) > limit:
            raise OutputFailed(f"{path}: more than the {limit} bytes expected here")
        return data, hashlib.sha256(data).hexdigest()

    def put(self, key: str, data: bytes, content_type: str, cache: str | None = None, *, if_absent: bool = False,
            if_version: str | None = None) -> bool:
        path = self._path(key)
        _mkdir(path.parent)
        if if_version is None and not if_absent:
            return files.write_atomically(path, data, "the file", replace=True)
        with files.locked(path.parent):
            there = _version(path)
            if (there is not None) if if_absent else there != if_version:
                return False
            return files.write_atomically(path, data, "the file", replace=not if_absent)

    def stat(self, key: str) -> Stat | None:
        try:
            st = os.stat(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return Stat(st.st_size, f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}", st.st_mtime)

    def deliver(self, key: str, seconds: int) -> LocalFile | None:
        """The file key is, sent as it is; only a regular file inside the directory, reached through no symlink
        (one planted in the store must not hand out a file from elsewhere)."""
        path = self._path(key)
        try:
            st = os.stat(path, follow_symlinks=False)
            real = Path(os.path.realpath(path))
        except OSError:
            return None
        if real != Path(os.path.abspath(path)) or not real.is_relative_to(os.path.realpath(self.root)):
            return None
        return LocalFile(path, st) if stat.S_ISREG(st.st_mode) else None

    def anyone_reads(self, key: str) -> str | None:
        return None

    def list(self, prefix: str) -> Iterator[str]:
        top = self._path(prefix)
        for directory, _, names in os.walk(top):
            for name in names:
                if not name.startswith(files.PREFIX):
                    yield str((Path(directory) / name).relative_to(self.root))

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            raise OutputFailed(f"{self._path(key)}: cannot delete: {e.strerror}") from None

    def upload(self, key: str, *, resume: bool = True) -> _FileUpload:
        return _FileUpload(self._path(key))


def _version(path: Path) -> str | None:
    """The SHA-256 of the file at path, what get() gives as its version; None when there is none."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise OutputFailed(f"{path}: cannot read: {e.strerror}") from None


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputFailed(f"{path}: cannot create the directory: {e.strerror}") from None


class _FileUpload:
    """A box written to a temporary file beside its final name (files.AtomicFile: locked, and swept if killed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self.resumed = 0  # a file has nothing to resume from
        _mkdir(path.parent)
        self._file = files.AtomicFile(path, "the box")

    def write(self, data: bytes | memoryview) -> None:
        try:
            self._file.file.write(data)
        except OSError as e:
            raise OutputFailed(f"{self.path}: cannot write: {e.strerror}") from None
        self.size += len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        """Every byte written; the file is placed by commit."""
        try:
            self._file.file.flush()
        except OSError as e:
            raise OutputFailed(f"{self.path}: cannot write: {e.strerror}") from None

    def commit(self, replace: bool) -> None:
        if not self._file.commit(replace):
            raise OutputFailed(f"{self.path}: appeared while publishing; use --force to replace it")
        if os.stat(self.path).st_size != self.size:
            raise OutputFailed(f"{self.path}: holds {os.stat(self.path).st_size} bytes after writing {self.size}")

    def abort(self) -> None:
        self._file.abort()
