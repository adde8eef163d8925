"""Publish targets: where boxes and their catalogs are put for `vagrant box add ORG/NAME` to find.

One module per kind of storage (s3.py, directory.py), each offering the interface in base.py, and
dryrun.py, which wraps any of them; publish.py holds the order of writes that keeps every catalog
true, whatever the store.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import BadOption, OutputFailed
from .base import Store


def open_target(target: str, endpoint_url: str | None = None) -> Store:
    """s3://bucket/prefix, or a directory that exists."""
    if target.startswith("s3://"):
        from .s3 import S3Store

        return S3Store(target, endpoint_url)
    if "://" in target:
        raise BadOption(f"--to {target!r}: give s3://BUCKET/PREFIX or a directory")
    if endpoint_url:
        raise BadOption("--endpoint-url is for s3:// targets")
    from .directory import DirectoryStore

    path = Path(target)
    if not path.is_dir():
        raise OutputFailed(f"{target}: no such directory (create it first: it is what the web server serves)")
    return DirectoryStore(path)
