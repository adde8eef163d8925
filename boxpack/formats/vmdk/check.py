"""The checker: the rules VirtualBox's sequential import applies, and the grain tables' consistency."""

from __future__ import annotations

import functools
from array import array

from ...errors import BoxpackError
from ...findings import Findings
from ...ordered import OrderedPool
from ...disk.bytesource import ByteSource
from ..c_vmdk import (DESCRIPTOR_MAGIC, FLAG_COMPRESSED, FLAG_MARKERS, FLAG_NEWLINE_TEST, FLAG_REDUNDANT_GT, GD_AT_END,
                      MAGIC, MARKER_EOS, MARKER_FOOTER, NEWLINE_TEST, SECTOR, GrainMarker, SparseExtentHeader)
from .common import MAX_GD_BYTES, Inflated, gd_entries, inflate_grain, metadata_sectors, tables_grains
from .reader import VmdkReader, newline_problem, parse_descriptor


def check(data: ByteSource, name: str, threads: int = 2) -> tuple[dict, Findings]:
    """The rules VirtualBox's sequential import applies (what `vagrant up` uses): (facts, findings).

    Walks a streamOptimized file from overHead as VirtualBox does: grains in
    strictly increasing LBA order, each inflating to exactly one grain, known
    markers only, an end-of-stream marker; then qemu's rule for GD_AT_END (the
    last three sectors are footer marker, footer and EOS).
    """
    findings = Findings()
    raw = data.pread(0, SECTOR)
    if raw.startswith(DESCRIPTOR_MAGIC):
        findings.add("vmdk-descriptor-only", "error", f"{name}: a descriptor without data; its extents are separate files")
        return {"format": "vmdk descriptor"}, findings
    if len(raw) < SECTOR or raw[:4] != MAGIC:
        findings.add("vmdk-magic", "error", f"{name}: not a sparse VMDK")
        return {"format": "unknown"}, findings
    h = SparseExtentHeader.parse(raw)
    raw_text = data.pread(h.descriptor_offset * SECTOR, min(h.descriptor_size, 2048) * SECTOR) if 0 < h.descriptor_offset < data.size // SECTOR else b""
    text = raw_text.split(b"\0", 1)[0].decode("utf-8", "replace")
    create_type, extents = parse_descriptor(text)
    facts = {
        "format": f"vmdk {create_type}",
        "version": h.version,
        "virtual_size": h.capacity * SECTOR,
        "grain_size": h.grain_size * SECTOR,
        "file_size": data.size,
        "compressed": bool(h.flags & FLAG_COMPRESSED),
    }
    if h.version not in (1, 3):
        findings.add("vmdk-version", "error", f"{name}: header version {h.version}; VirtualBox takes only 1 and 3")
    if h.flags & FLAG_NEWLINE_TEST and h.newline_test != NEWLINE_TEST:
        findings.add("vmdk-newlines", "error", f"{name}: {newline_problem(h.newline_test)}")
    lines = text.splitlines()
    if not lines or lines[0].replace(" ", "").lower() != "#diskdescriptorfile":
        findings.add("vmdk-descriptor", "error", f"{name}: the descriptor does not start with '# Disk DescriptorFile'")
    if "version=1" not in [line.replace(" ", "") for line in lines]:
        findings.add("vmdk-descriptor", "error", f"{name}: the descriptor lacks version=1, which VirtualBox requires")
    if len(extents) != 1:
        findings.add("vmdk-extents", "error", f"{name}: {len(extents)} extents; a monolithic VMDK has exactly one")
    if h.grain_size < 8 or h.grain_size > 2048 or h.grain_size & (h.grain_size - 1) or h.num_gtes_per_gt < 128 or h.num_gtes_per_gt > 4096 or h.num_gtes_per_gt & (h.num_gtes_per_gt - 1):
        findings.add("vmdk-geometry", "error", f"{name}: grain size {h.grain_size} or {h.num_gtes_per_gt} GTEs per GT is not what VirtualBox accepts")
        return facts, findings
    if create_type == "monolithicSparse" and not h.flags & FLAG_MARKERS:
        _check_sparse(data, h, name, facts, findings)
        return facts, findings
    if create_type != "streamOptimized" or not h.flags & FLAG_MARKERS:
        return facts, findings
    grains = 0
    grain_bytes = h.grain_size * SECTOR
    try:
        expected = tables_grains(data, h)
    except BoxpackError:
        expected = None
    pos, last = h.overhead * SECTOR, -1
    stopped = ended = False

    def settle(lba: int, result: Inflated) -> None:
        out, excess = result
        if out is None:
            findings.add("vmdk-inflate", "error", f"{name}: grain at LBA {lba} does not inflate")
        elif excess or len(out) != grain_bytes:
            size = f"more than {grain_bytes}" if excess else f"{len(out)}"
            findings.add("vmdk-grain-size", "error", f"{name}: grain at LBA {lba} inflates to {size} bytes, not {grain_bytes}; VirtualBox's import refuses it")

    with OrderedPool[int, Inflated](threads, 8 * threads, "vmdk-check") as pool:
        while pos + SECTOR <= data.size:
            m = GrainMarker.parse(data.pread(pos, 12))
            if m.size:
                if m.lba % h.grain_size or m.lba >= h.capacity:
                    findings.add("vmdk-lba", "error", f"{name}: grain marker at byte {pos} has a bad LBA {m.lba}")
                elif m.size >= 2 * grain_bytes or pos + 12 + m.size > data.size:
                    findings.add("vmdk-truncated", "error", f"{name}: grain at LBA {m.lba} is cut off or too large ({m.size} bytes)")
                else:
                    if m.lba <= last:  # readable through the grain tables (qemu, libvmdk, boxpack from a file)
                        findings.add("vmdk-order", "error", f"{name}: grain at LBA {m.lba} comes after LBA {last}; "
                                     "VirtualBox's sequential import refuses grains out of order")
                    last = max(last, m.lba)
                    grains += 1
                    payload = data.pread(pos + 12, m.size)
                    for done in pool.put(m.lba, functools.partial(inflate_grain, payload, grain_bytes)):
                        settle(*done)
                    pos += -(-(12 + m.size) // SECTOR) * SECTOR
                    continue
                stopped = True
                break
            kind = int.from_bytes(data.pread(pos + 12, 4), "little")
            if kind == MARKER_EOS:
                ended = True
                break
            skip = metadata_sectors(h, kind)
            if skip is None:
                findings.add("vmdk-marker", "error", f"{name}: unknown marker type {kind} at byte {pos}")
                stopped = True
                break
            pos += (1 + skip) * SECTOR
        for done in pool.drain():
            settle(*done)
    if not ended and not stopped:
        if pos == data.size and grains == expected:  # what qemu-img writes when the last grain ends the file
            findings.add("vmdk-no-eos", "warning", f"{name}: no end-of-stream marker after the last grain (qemu-img "
                         "writes none when data reaches the disk's end); VirtualBox's sequential import expects one")
        else:
            findings.add("vmdk-truncated", "error", f"{name}: no end-of-stream marker; the file is cut short")
    if ended and h.gd_offset == GD_AT_END:
        tail = data.pread(data.size - 3 * SECTOR, 3 * SECTOR) if data.size >= 3 * SECTOR else b""
        if len(tail) != 3 * SECTOR or int.from_bytes(tail[12:16], "little") != MARKER_FOOTER or tail[SECTOR:SECTOR + 4] != MAGIC or any(tail[2 * SECTOR:]):
            findings.add("vmdk-footer", "error", f"{name}: the grain directory is at the end but the file does not end with footer marker, footer and EOS (qemu refuses it)")
    facts["grains"] = grains
    return facts, findings


def _check_sparse(data: ByteSource, h, name: str, facts: dict, findings: Findings) -> None:
    """A hosted sparse extent: every grain inside the file and after the metadata, and the redundant
    grain directory and tables equal to the primary ones (VMware repairs one from the other)."""
    reader = VmdkReader(data, name)
    sets = [("redundant", h.rgd_offset)] if h.flags & FLAG_REDUNDANT_GT and h.rgd_offset else []
    sets.append(("primary", h.gd_offset))
    tables: dict[str, dict[int, tuple[array, array]]] = {}
    for what, gd_offset in sorted(sets, key=lambda s: s[1]):
        if gd_offset == GD_AT_END:
            return
        count = gd_entries(h)
        if count * 4 > MAX_GD_BYTES:
            findings.add("vmdk-geometry", "error", f"{name}: the grain directory would have {count} entries")
            return
        gd = reader._u32s(gd_offset * SECTOR, count, f"{what} grain directory")
        tables[what] = {i: reader._used(gt) for i, gt in enumerate(gd) if gt}
    grains = 0
    for i, (slots, sectors) in tables["primary"].items():
        for sector in sectors:
            grains += 1
            if sector < h.overhead or (sector + h.grain_size) * SECTOR > data.size:
                findings.add("vmdk-grain", "error", f"{name}: a grain at sector {sector} is outside the file's data area")
    if "redundant" in tables:
        for i in set(tables["primary"]) | set(tables["redundant"]):
            a, b = tables["primary"].get(i), tables["redundant"].get(i)
            if a is None or b is None or a[0] != b[0] or a[1] != b[1]:
                findings.add("vmdk-redundant", "error", f"{name}: grain table {i} differs from its redundant copy")
    facts["grains"] = grains
