"""Disk formats boxpack recognises but cannot read yet: refused by name, never packed as raw.

Packing a Parallels image as if it were a raw disk makes a box whose disk
is the container's bytes: a wrong box, made silently. Each probe is the magic
the format's own reader checks (qemu block/parallels.c parallels_probe,
qed.c bdrv_qed_probe, crypto.c (LUKS), dmg.c dmg_probe, vmdk.c (COWD,
seSparse), bochs.c bochs_probe, cloop.c cloop_probe).
"""

from __future__ import annotations

from .base import Format

CONVERT = "convert it to raw or qcow2 first (qemu-img convert -O qcow2 IN OUT)"


FORMATS = (
    Format(
        "Parallels",
        lambda h, t: h[:16] in (b"WithoutFreeSpace", b"WithouFreSpacExt"),
        suffixes=(".hdd", ".hds"),
        refusal=CONVERT,
    ),
    Format("QED", lambda h, t: h[:4] == b"QED\0", suffixes=(".qed",), refusal=CONVERT),
    Format("LUKS (encrypted)", lambda h, t: h[:6] == b"LUKS\xba\xbe", refusal="a box cannot carry an encrypted disk; decrypt it first"),
    Format("DMG (Apple)", lambda h, t: t[-512:-508] == b"koly", suffixes=(".dmg",), refusal=CONVERT),
    Format("VMware COWD (ESX 2 sparse)", lambda h, t: h[:4] == b"COWD", refusal=CONVERT),
    Format("VMware seSparse", lambda h, t: h[:8] == (0xCAFEBABE).to_bytes(8, "little"), refusal=CONVERT),
    Format("bochs", lambda h, t: h.startswith(b"Bochs Virtual HD Image"), refusal=CONVERT),
    Format("cloop (compressed loop)", lambda h, t: h.startswith(b"#!/bin/sh\n#V2.0 Format\n"), refusal=CONVERT),
)
