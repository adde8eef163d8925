"""Providers: one module each, registered here by name.

A new provider is a module with a Provider subclass and one entry in PROVIDERS.
"""

from __future__ import annotations

from ..options import Setting
from .base import Disk, Job, Listener, Provider, TestVm
from .hyperv import HyperV
from .libvirt import Libvirt
from .parallels import Parallels
from .qemu import Qemu
from .utm import Utm
from .virtualbox import VirtualBox
from .vmware_desktop import VmwareDesktop

PROVIDERS: dict[str, type[Provider]] = {p.NAME: p for p in (Libvirt, VirtualBox, VmwareDesktop, HyperV, Qemu, Parallels, Utm)}
DEFAULT = Libvirt.NAME  # what a bare disk is packed for without --provider and booted as by boxpack test
V1_BOX = VirtualBox.NAME  # a box without metadata.json is Vagrant's V1 box, VirtualBox's (box_collection.rb, v1_box?)

__all__ = ["DEFAULT", "Disk", "Job", "Listener", "PROVIDERS", "Provider", "TestVm", "V1_BOX", "options"]


def options() -> list[Setting]:
    """Every provider's options, each flag once (providers may share one, such as --cpus)."""
    seen: dict[str, Setting] = {}
    for p in PROVIDERS.values():
        for o in p.OPTIONS:
            seen.setdefault(o.name, o)
    return list(seen.values())
