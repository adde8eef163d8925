"""Providers: each module says which disk format, metadata, Vagrantfile and files a box holds.

A provider module has NAME and `members(job) -> list[Member]`; adding a provider
means adding a module here and naming it in PROVIDERS.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from ..archive import Member
from ..source import RawDisk


@dataclass
class Job:
    """What a provider needs to build its box members."""

    disk: RawDisk
    clusters: array  # the data map: guest clusters that hold data
    architecture: str | None = None
    vagrantfile: bytes | None = None  # the user's own, replacing the default
    include: list[Path] = field(default_factory=list)
    qcow2_compat: str = "1.1"
    progress: object = None  # callable(nbytes) or None


def include_members(job: Job) -> list[Member]:
    """The user's extra files, by their base name, read when the archive is written."""
    return [Member(p.name, p.stat().st_size, lambda p=p: (p.read_bytes(),)) for p in job.include]


def _load() -> dict[str, ModuleType]:
    from . import libvirt

    return {m.NAME: m for m in (libvirt,)}


PROVIDERS = _load()
