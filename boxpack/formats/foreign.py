"""Disk formats boxpack recognises but cannot read yet: refused by name, never packed as raw.

Packing a QED image as if it were a raw disk makes a box whose disk
is the container's bytes: a wrong box, made silently. Each probe is the magic
the format's own reader checks (qemu block/qed.c bdrv_qed_probe, crypto.c (LUKS), dmg.c dmg_probe, vmdk.c (COWD,
seSparse), bochs.c bochs_probe, cloop.c cloop_probe); ASIF's from its reverse-engineered header
(huven/asif-format README: 'shdw', then version 1, big-endian).
"""

from __future__ import annotations

from .base import Format

CONVERT = "convert it to raw or qcow2 first (qemu-img convert -O qcow2 IN OUT)"
# qemu reads seSparse only as the extent of a descriptor (block/vmdk.c vmdk_open_se_sparse, from
# vmdk_parse_extents); a bare seSparse file it opens as raw (qemu-img 7.2 here), so CONVERT would copy garbage.
SESPARSE = ("qemu-img reads it only through the VM's .vmdk descriptor that names it: convert that "
            "(qemu-img convert -f vmdk VM.vmdk -O qcow2 OUT), or export the VM from VMware")


FORMATS = (
    Format("QED", lambda h, t: h[:4] == b"QED\0", suffixes=(".qed",), refusal=CONVERT),
    Format("LUKS (encrypted)", lambda h, t: h[:6] == b"LUKS\xba\xbe", refusal="a box cannot carry an encrypted disk; decrypt it first"),
    Format("DMG (Apple)", lambda h, t: t[-512:-508] == b"koly", suffixes=(".dmg",), refusal=CONVERT),
    Format("VMware COWD (ESX 2 sparse)", lambda h, t: h[:4] == b"COWD", refusal=CONVERT),
    Format("VMware seSparse", lambda h, t: h[:8] == (0xCAFEBABE).to_bytes(8, "little"), refusal=SESPARSE),
    Format("ASIF (Apple Sparse Image, macOS 26)", lambda h, t: h[:8] == b"shdw\0\0\0\x01", suffixes=(".asif",),
           refusal="qemu-img cannot read it either: convert it to a raw image on the Mac that made it first"),
    Format("bochs", lambda h, t: h.startswith(b"Bochs Virtual HD Image"), refusal=CONVERT),
    Format("cloop (compressed loop)", lambda h, t: h.startswith(b"#!/bin/sh\n#V2.0 Format\n"), refusal=CONVERT),
)
