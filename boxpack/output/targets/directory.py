"""A local directory as a publish target, for a static web server (nginx, Apache, GitHub Pages) to serve.

A catalog cannot be a file at <org>/<box> and the directory of its versions at once, so it is
<org>/<box>/catalog.json, and the web server answers <org>/<box> and api/v2/vagrant/<org>/<box> with
it as application/json (the README gives the nginx rule, and the tests run that rule).

Every file appears whole or not at all (files.py: a temporary name, fsynced, linked or with --force
renamed into place). The catalog is updated under the lock that `boxpack catalog` takes (catalog.update).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ... import catalog, files
from ...catalog import Catalog
from ...errors import OutputFailed
from .base import Stat

CATALOG_FILE = "catalog.json"


class DirectoryStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.where = str(root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def catalog_keys(self, name: str) -> list[str]:
        return [f"{name}/{CATALOG_FILE}"]

    def read_catalog(self, name: str) -> Catalog | None:
        return catalog.load(self._path(self.catalog_keys(name)[0]))

    def prepare_catalog(self, name: str) -> None:
        """Nothing to prepare: a file can be created whenever it is missing."""

    def update_catalog(self, name: str, change: Callable[[Catalog | None], Catalog]) -> Catalog:
        path = self._path(self.catalog_keys(name)[0])
        _mkdir(path.parent)
        return catalog.update(path, change)

    def read_small(self, key: str, limit: int) -> bytes | None:
        try:
            with open(self._path(key), "rb") as f:
                return f.read(limit)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise OutputFailed(f"{self._path(key)}: cannot read: {e.strerror}") from None

    def stat(self, key: str) -> Stat | None:
        try:
            return Stat(os.stat(self._path(key)).st_size, None)
        except FileNotFoundError:
            return None

    def create(self, key: str, data: bytes, content_type: str) -> bool:
        return _write(self._path(key), data, replace=False)

    def replace(self, key: str, data: bytes, content_type: str) -> None:
        _write(self._path(key), data, replace=True)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            raise OutputFailed(f"{self._path(key)}: cannot delete: {e.strerror}") from None

    def upload(self, key: str) -> _FileUpload:
        return _FileUpload(self._path(key))


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputFailed(f"{path}: cannot create the directory: {e.strerror}") from None


def _write(path: Path, data: bytes, replace: bool) -> bool:
    _mkdir(path.parent)
    return files.write_atomically(path, data, "the file", replace)


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
