"""Disk formats: one module each, and the one registry that tells them apart by their bytes.

Nothing else in boxpack matches a disk's magic: open_source, box reading,
inspect and verify all ask detect(). A new format is a module with a Format
and a line in FORMATS.
"""

from __future__ import annotations

from . import parallels, qcow2, vdi, vhd, vhdx, vmdk
from .base import HEAD, TAIL, Format
from .foreign import FORMATS as FOREIGN
from .raw import RawReader

QCOW2 = Format("qcow2", qcow2.probe, qcow2.Qcow2Reader, qcow2.check, qcow2.SUFFIXES)
VMDK = Format("vmdk", vmdk.probe, vmdk.VmdkReader, vmdk.check, vmdk.SUFFIXES)
VHD = Format("VHD", vhd.probe, vhd.VhdReader, vhd.check, vhd.SUFFIXES)
VHDX = Format("VHDX", vhdx.probe, vhdx.VhdxReader, vhdx.check, vhdx.SUFFIXES)
VDI = Format("VDI", vdi.probe, vdi.VdiReader, vdi.check, vdi.SUFFIXES)
PARALLELS = Format(parallels.NAME, parallels.probe, parallels.ParallelsReader, parallels.check, parallels.SUFFIXES)
RAW = Format("raw", lambda head, tail: True, RawReader, None, (".raw", ".img"))

FORMATS: tuple[Format, ...] = (QCOW2, VMDK, VHDX, VDI, VHD, PARALLELS, *FOREIGN)

__all__ = ["FORMATS", "HEAD", "PARALLELS", "QCOW2", "RAW", "TAIL", "VDI", "VHD", "VHDX", "VMDK", "Format", "detect"]


def detect(head: bytes, tail: bytes = b"") -> Format:
    """The format whose probe matches the first HEAD and last TAIL bytes; RAW when none does."""
    return next((f for f in FORMATS if f.probe(head, tail)), RAW)
