"""vagrant-libvirt's descriptor is metadata.json itself: its `disks` list (0.5.0 and later), else box.img
(lib/vagrant-libvirt/action/handle_box_image.rb). vagrant-qemu reads the same box format."""

from __future__ import annotations

from typing import Any

BOX_FORMAT = ("libvirt", "qemu")  # vagrant-qemu registers its provider with box_format "libvirt"


def disk_files(meta: dict[str, Any]) -> list[str] | None:
    """The disks vagrant-libvirt reads, in order; None when the box is not a libvirt one."""
    disks = meta.get("disks")
    if isinstance(disks, list) and disks:
        paths = [d.get("path") for d in disks if isinstance(d, dict)]
        return [p.removeprefix("./") for p in paths if isinstance(p, str)] or None
    if meta.get("provider") in BOX_FORMAT:
        return ["box.img"]
    return None
