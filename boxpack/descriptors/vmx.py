"""VMware's .vmx: `key = "value"` lines, keys case-insensitive, quotes optional; which files are the VM's disks.
Read as VMware and Packer read it, written as VMware writes it (every value quoted).

A disk is a device with a fileName whose deviceType is not a CD-ROM; devices
are named <bus><controller>:<unit> (sata0:0, scsi0:1, nvme0:0, ide0:0).
"""

from __future__ import annotations

import re

DEVICE = re.compile(r"(ide|sata|scsi|nvme)(\d+):(\d+)\.filename")
# Quotes are optional: Packer's EncodeVMX writes `scsi0:0.virtualSSD = 1` unquoted on purpose, and its
# ParseVMX reads `^(.+?)\s*=\s*"?(.*?)"?\s*$` (packer-plugin-vmware builder/vmware/common/vmx.go).
LINE = re.compile(r'([A-Za-z0-9_.:]+)\s*=\s*(?:"([^"]*)"|([^"\s]+))')


def parse_vmx(text: str) -> tuple[dict[str, str], list[str]]:
    """(settings by lower-case key, lines that are not `key = "value"` or `key = value`): VMware's keys are
    case-insensitive."""
    settings, bad = {}, []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = LINE.fullmatch(line)
        if m:
            settings[m.group(1).lower()] = m.group(2) if m.group(2) is not None else m.group(3)
        else:
            bad.append(line)
    return settings, bad


def disk_files(settings: dict[str, str]) -> list[str]:
    """The disks' file names, by bus, controller and unit (the boot disk first as boxpack writes it: sata0:0)."""
    found = []
    for key, path in settings.items():
        m = DEVICE.fullmatch(key)
        if m and "cdrom" not in settings.get(key.removesuffix("filename") + "devicetype", "disk"):
            found.append(((m.group(1), int(m.group(2)), int(m.group(3))), path))
    return [path for _, path in sorted(found)]


def dumps(settings: list[tuple[str, str]]) -> bytes:
    """The .vmx of settings, in their order: `key = "value"`, as VMware writes a new VM's."""
    return "".join(f'{key} = "{value}"\n' for key, value in settings).encode()


def member_disk_files(data: bytes) -> list[str]:
    """The disks a box's .vmx attaches, as paths in the box."""
    return [p.removeprefix("./") for p in disk_files(parse_vmx(data.decode("utf-8", "replace"))[0])]
