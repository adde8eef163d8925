"""Providers: each says which disk format, metadata, Vagrantfile and files its box holds.

A provider is a class with a NAME, built once per run before the disk is
scanned; feed() sees every data cluster during the scan (so a writer that can
work in that one read does), members() lists the box's files after it. Adding a
provider means adding a module here and naming its class in PROVIDERS.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..archive import Member
from ..ovf import Hardware
from ..source import ImageSource, RawDisk


@dataclass
class Job:
    """What providers need: the disk, its data map, and the user's choices."""

    disk: RawDisk | ImageSource
    firmware: str  # "bios" or "efi"
    architecture: str | None = None
    vagrantfile: bytes | None = None  # the user's own, replacing the default
    include: list[Path] = field(default_factory=list)
    qcow2_compat: str = "1.1"
    level: int = 6
    fast: bool = False  # ISA-L instead of libdeflate
    threads: int = 1
    spool_dir: Path | None = None  # where a provider may put a temporary file
    hardware: Hardware | None = None
    base_mac: str | None = None  # "auto", 12 hex digits, or None
    clusters: array = field(default_factory=lambda: array("Q"))  # filled by the scan
    disk_id: bytes = b""  # 32 bytes derived from the disk's content, set after the scan


class Provider:
    NAME: ClassVar[str]

    def __init__(self, job: Job) -> None:
        self.job = job

    def feed(self, cluster: int, data: bytes) -> None:
        """One non-zero 64 KiB cluster of the disk, in ascending order, during the scan."""

    def members(self) -> list[Member]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what members() needed once the box is written (or on failure)."""

    def vagrantfile(self, provider_block: str) -> bytes:
        """The user's Vagrantfile, or the default with this provider's settings."""
        if self.job.vagrantfile is not None:
            return self.job.vagrantfile
        return (
            f"# Vagrantfile of a {self.NAME} box made by boxpack. Settings in your own\n"
            "# Vagrantfile override these.\n"
            'Vagrant.configure("2") do |config|\n' + provider_block + "end\n"
        ).encode()

    def include_members(self) -> list[Member]:
        """The user's extra files, by their base name, read when the archive is written."""
        return [Member(p.name, p.stat().st_size, lambda p=p: (p.read_bytes(),)) for p in self.job.include]


def _load() -> dict[str, type[Provider]]:
    from .libvirt import Libvirt
    from .virtualbox import VirtualBox

    return {p.NAME: p for p in (Libvirt, VirtualBox)}


PROVIDERS = _load()
