"""Disk formats boxpack recognises but cannot read yet: refused by name, never packed as raw.

Packing a VHD as if it were a raw disk makes a box whose disk is the
container's bytes: a wrong box, made silently. Each probe is the magic the
format's own reader checks (qemu block/vpc.c vpc_probe, vhdx.c vhdx_probe,
vdi.c vdi_probe, parallels.c parallels_probe, qed.c bdrv_qed_probe,
crypto.c (LUKS), dmg.c dmg_probe, vmdk.c (COWD, seSparse), bochs.c
bochs_probe, cloop.c cloop_probe), plus VHD's footer at the end of a
fixed-size image, which qemu does not probe for.
"""

from __future__ import annotations

from .base import Format

CONVERT = "convert it to raw or qcow2 first (qemu-img convert -O qcow2 IN OUT)"


def _vhd(head: bytes, tail: bytes) -> bool:
    # Dynamic disks carry a copy of the footer at byte 0; fixed ones only the footer
    # in the last 512 bytes (511 in images made by Virtual PC before 2004).
    return head[:8] == b"conectix" or tail[-512:-504] == b"conectix" or tail[-511:-503] == b"conectix"


FORMATS = (
    Format("VHD (Hyper-V, Virtual PC, Azure)", _vhd, suffixes=(".vhd",), refusal=CONVERT),
    Format("VHDX (Hyper-V)", lambda h, t: h[:8] == b"vhdxfile", suffixes=(".vhdx",), refusal=CONVERT),
    Format("VDI (VirtualBox)", lambda h, t: h[64:68] == b"\x7f\x10\xda\xbe", suffixes=(".vdi",), refusal=CONVERT),
    Format(
        "Parallels",
        lambda h, t: h[:16] in (b"WithoutFreeSpace", b"WithouFreSpacExt"),
        suffixes=(".hdd", ".hds"),
        refusal=CONVERT,
    ),
    Format("QED", lambda h, t: h[:4] == b"QED\0", suffixes=(".qed",), refusal=CONVERT),
    Format("LUKS (encrypted)", lambda h, t: h[:6] == b"LUKS\xba\xbe", refusal="a box cannot carry an encrypted disk; decrypt it first"),
    Format("DMG (Apple disk image)", lambda h, t: t[-512:-508] == b"koly", suffixes=(".dmg",), refusal=CONVERT),
    Format("VMware COWD (ESX 2 sparse)", lambda h, t: h[:4] == b"COWD", refusal=CONVERT),
    Format("VMware seSparse", lambda h, t: h[:8] == (0xCAFEBABE).to_bytes(8, "little"), refusal=CONVERT),
    Format("bochs", lambda h, t: h.startswith(b"Bochs Virtual HD Image"), refusal=CONVERT),
    Format("cloop (compressed loop)", lambda h, t: h.startswith(b"#!/bin/sh\n#V2.0 Format\n"), refusal=CONVERT),
)
