"""What every publish target offers, and the layout boxes and catalogs take under it.

The layout, relative to the target (an S3 prefix or a directory), is stable:

    <org>/<box>/<version>/<provider>/<arch>/vagrant.box           the box, never rewritten without --force
    <org>/<box>/<version>/<provider>/<arch>/vagrant.box.sha256    "<hex>  vagrant.box", as sha256sum writes it
    <org>/<box>                                                   the catalog (S3), and a copy at
    api/v2/vagrant/<org>/<box>                                    (Vagrant 2.4 asks here first)
    <org>/<box>/catalog.json                                      the catalog (a directory: a web server
                                                                  answers the two names above with it)

Vagrant expands `org/box` to `<server>/org/box` (2.3, lib/vagrant/action/builtin/box_add.rb
BoxAdd#call) and to `<server>/api/v2/vagrant/org/box` first (2.4, the same method), and takes a URL for
a catalog when a HEAD request answers Content-Type application/json (BoxAdd#metadata_url?).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple, Protocol
from urllib.parse import quote

from ...catalog import Catalog
from ...errors import BadInput

BOX_FILE = "vagrant.box"
API_PREFIX = "api/v2/vagrant"
BOX_CACHE = "public, max-age=31536000, immutable"  # a box key is never rewritten without --force
CATALOG_CACHE = "public, max-age=60"  # a new version or a yanked one shows within a minute
CATALOG_LIMIT = 20 * 1024 * 1024  # Vagrant's METADATA_SIZE_LIMIT (box_add.rb): larger is taken for a box


class Stat(NamedTuple):
    size: int
    etag: str | None  # the store's ETag (S3), None for a file


class Upload(Protocol):
    """A box on its way to its key: written as a stream, visible only once committed."""

    size: int  # bytes written so far
    resumed: int  # bytes the store already held from an interrupted run, not sent again

    def write(self, data: bytes | memoryview, /) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None:
        """Every byte sent; the object is not visible yet."""

    def commit(self, replace: bool) -> None:
        """Make the object visible at its key, and check that the store holds what was sent."""

    def abort(self) -> None:
        """Drop what was sent."""


class Store(Protocol):
    where: str  # for messages: s3://bucket/prefix or the directory

    def catalog_keys(self, name: str) -> list[str]: ...

    def read_catalog(self, name: str) -> Catalog | None: ...

    def prepare_catalog(self, name: str) -> None:
        """Called before the first box of a run is sent."""

    def update_catalog(self, name: str, change: Callable[[Catalog | None], Catalog]) -> Catalog:
        """Read, change and write the catalog so that no concurrent update is lost."""

    def read_small(self, key: str, limit: int) -> bytes | None: ...

    def stat(self, key: str) -> Stat | None: ...

    def create(self, key: str, data: bytes, content_type: str) -> bool:
        """Write a small object only if there is none at key; False when there was one."""

    def replace(self, key: str, data: bytes, content_type: str) -> None: ...

    def delete(self, key: str) -> None: ...

    def upload(self, key: str) -> Upload: ...


SAFE_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def box_key(name: str, version: str, provider: str, architecture: str) -> str:
    """Where a box goes. Every part is checked: a catalog being mirrored comes from someone else, and a
    name such as ../.. must not write outside the target."""
    parts = [*name.split("/"), version, provider, architecture]
    if len(parts) != 5:
        raise BadInput(f"{name}: a box name is ORG/NAME")
    for part in parts:
        if not SAFE_PART.fullmatch(part) or len(part) > 128:
            raise BadInput(f"{name} {version} {provider} {architecture}: {part!r} cannot be part of a key "
                               "(letters, digits, _ . - only)")
    return f"{name}/{version}/{provider}/{architecture}/{BOX_FILE}"


def url(base_url: str, key: str) -> str:
    """The public URL of key: base + the key, each segment percent-encoded."""
    return base_url.rstrip("/") + "/" + quote(key)
