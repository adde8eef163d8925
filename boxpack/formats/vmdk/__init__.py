"""Sparse VMDK: the VirtualBox and vmware_desktop boxes' disk format, one module per job: common.py (the
format's encodings), stream.py (the streamOptimized writer), sparse.py (the monolithicSparse writer),
reader.py and check.py.

References: VMware "Virtual Disk Format 5.0" technical note (header, markers);
VirtualBox src/VBox/Storage/VMDK.cpp (vmdkStreamReadSequential: what
`vagrant up` imports with); qemu block/vmdk.c (footer at the end). Structures
are in formats/c_vmdk.py.

The writer's layout is VirtualBox's own export: header (version 3,
GD_AT_END) at sector 0, descriptor at sector 1, the first grain marker at
overHead (sector 128), grains in strictly ascending LBA order each inflating
to exactly one grain, a GT marker + GT after each 32 MiB range that holds
grains, then GD marker + GD, FOOTER marker + footer (the header with the real
GD offset), EOS marker. Grains are zlib-wrapped deflate, as every
implementation reads them (not raw deflate as the spec says).
"""

from __future__ import annotations

from .check import check
from .common import NAME, SUFFIXES, capacity_sectors, probe
from .reader import VmdkReader
from .sparse import SparseLayout
from .stream import VmdkSpool, read_chunks

__all__ = ["NAME", "SUFFIXES", "SparseLayout", "VmdkReader", "VmdkSpool", "capacity_sectors", "check", "probe", "read_chunks"]
