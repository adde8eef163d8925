"""The hostile-input fuzz run, in a child process of its own so that its peak memory is its own.

    python3 tests/fuzz_boxes.py SEED_DIR EXAMPLES

Seeds are small boxes, disks (compressed raw ones too) and mkosi configurations
in SEED_DIR. Each example mutates one of them towards extreme values (header
sizes, counts and offsets of qcow2, VMDK, VHD, VHDX and VDI, their block maps,
tar size fields, PAX records, long names, VMDK markers, metadata.json's
provider and disks list, mkosi's settings) and runs verify, inspect and a
conversion on it (a configuration: boxpack --mkosi) in this process. It asserts that nothing but
BoxpackError escapes, that reports have exit codes 0, 1 or 2, and that no case
takes longer than CASE_SECONDS; at the end it prints its own peak RSS
(VmHWM) and slowest case for test_hostile.py to check.
"""

from __future__ import annotations

import io
import logging
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import boxpack
from boxpack import mkosi
from boxpack.inspect import render, verify

CASE_SECONDS = 60
EXTREMES = [0, 1, 0x7F, 0xFF, 0x7FFF_FFFF, 0xFFFF_FFFF, 1 << 32, 1 << 40, (1 << 63) - 1, (1 << 64) - 1]
# (offset, width, byte order) of the size, count and offset fields of each disk header.
QCOW2_FIELDS = [(8, 8, ">"), (16, 4, ">"), (20, 4, ">"), (24, 8, ">"), (32, 4, ">"), (36, 4, ">"), (40, 8, ">"),
                (48, 8, ">"), (56, 4, ">"), (60, 4, ">"), (64, 8, ">"), (72, 8, ">"), (96, 4, ">"), (100, 4, ">")]
VMDK_FIELDS = [(4, 4, "<"), (8, 4, "<"), (12, 8, "<"), (20, 8, "<"), (28, 8, "<"), (36, 8, "<"), (44, 4, "<"),
               (48, 8, "<"), (56, 8, "<"), (64, 8, "<"), (65536, 8, "<"), (65544, 4, "<")]  # + the first grain marker
# VHD: footer copy (data offset, sizes, type) and dynamic header (table offset, entries, block size).
VHD_FIELDS = [(16, 8, ">"), (40, 8, ">"), (48, 8, ">"), (60, 4, ">"), (512 + 16, 8, ">"), (512 + 28, 4, ">"), (512 + 32, 4, ">")]
VDI_FIELDS = [(68, 4, "<"), (76, 4, "<"), (340, 4, "<"), (344, 4, "<"), (368, 8, "<"), (376, 4, "<"), (384, 4, "<")]
# VHDX: header sequence and log fields, region table entries (behind CRC-32C: mostly refused as damaged).
VHDX_FIELDS = [(65536 + 8, 8, "<"), (65536 + 68, 4, "<"), (65536 + 72, 8, "<"), (196608 + 8, 4, "<"), (196608 + 32, 8, "<")]
slowest = 0.0


def _pack(value: int, width: int, order: str) -> bytes:
    return (value & ((1 << (8 * width)) - 1)).to_bytes(width, "big" if order == ">" else "little")


def _disk_member(box: bytes) -> tuple[int, int]:
    """(data offset, size) of the disk member in a plain tar box."""
    with tarfile.open(fileobj=io.BytesIO(box)) as t:
        for m in t:
            if m.name.endswith((".img", ".vmdk", ".vhdx")):
                return m.offset_data, m.size
    return 0, len(box)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    name, seed = draw(st.sampled_from(seeds))
    data = bytearray(seed)
    start, _ = _disk_member(data) if name.endswith(".box") else (0, len(data))
    if name.endswith(".json"):  # an mkosi configuration, or a metadata.json: values of the wrong kind
        return name, _json_mutation(draw, seed)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["field", "table", "tar-size", "pax", "longname", "bytes", "cut", "metadata"]))
        if kind == "field":
            fields = {b"QFI\xfb": QCOW2_FIELDS, b"KDMV": VMDK_FIELDS, b"cone": VHD_FIELDS, b"<<< ": VDI_FIELDS}.get(bytes(data[start : start + 4]), VHDX_FIELDS)
            off, width, order = draw(st.sampled_from(fields))
            value = draw(st.sampled_from(EXTREMES) | st.integers(0, (1 << (8 * width)) - 1))
            if start + off + width <= len(data):
                data[start + off : start + off + width] = _pack(value, width, order)
        elif kind == "table":  # an L1/L2/GD/GT entry, or a refcount, somewhere after the header
            off = start + 512 * draw(st.integers(1, 200)) + 8 * draw(st.integers(0, 63))
            if off + 8 <= len(data):
                data[off : off + 8] = _pack(draw(st.sampled_from(EXTREMES)), 8, draw(st.sampled_from("<>")))
        elif kind == "tar-size" and name.endswith(".box"):
            header = draw(st.sampled_from([0, 512, 1024, 1536, 2048, max(0, start - 512)]))
            field = draw(st.sampled_from([b"\x80" + (1 << 40).to_bytes(11, "big"), b"77777777777\0", b"-1\0", b"\xff" * 12, b"00000000000\0"]))
            data[header + 124 : header + 136] = field
        elif kind == "pax" and name.endswith(".box"):
            record = draw(st.sampled_from([b"30 size=100000000000000000000000\n", b"99999 path=x\n", b"12 size=-1\n", b"0 \n"]))
            info = tarfile.TarInfo("././@PaxHeader")
            info.type, info.size = tarfile.XHDTYPE, len(record)
            data[0:0] = info.tobuf(tarfile.USTAR_FORMAT) + record.ljust(-(-len(record) // 512) * 512, b"\0")
        elif kind == "longname" and name.endswith(".box"):
            info = tarfile.TarInfo("././@LongLink")
            info.type, info.size = tarfile.GNUTYPE_LONGNAME, draw(st.sampled_from([2 << 30, 1 << 20, 600]))
            data[0:0] = info.tobuf(tarfile.GNU_FORMAT)[-512:] + b"x" * 512
        elif kind == "bytes" and data:
            pos = draw(st.integers(0, len(data) - 1))
            data[pos : pos + 4] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "cut":
            data = data[: draw(st.integers(0, len(data)))]
        elif kind == "metadata" and name.endswith(".box"):  # metadata.json replaced: disks lists, providers
            try:
                data = bytearray(_with_metadata(bytes(data), _json_mutation(draw, _metadata(bytes(data)))))
            except Exception:  # noqa: BLE001 - an earlier mutation broke the tar (any way): it stays broken
                pass
    return name, bytes(data)


ODD_VALUES = st.sampled_from([None, 5, 1.5, -1, [], {}, ["x"], {"a": 1}, "", "../x", "a/b", "x" * 5000, True,
                              [{"path": "box.img"}] * 1000, [{"path": "metadata.json"}], [{"path": "/etc/passwd"}],
                              [{"path": f"d{i}.img"} for i in range(40)]])


def _json_mutation(draw: st.DrawFn, seed: bytes) -> bytes:
    """The JSON object with one to three of its values (or new keys) replaced by values of the wrong kind."""
    import json

    doc = json.loads(seed)
    keys = [*doc, "disks", "provider", "architecture", "Output", "Architecture", "ImageVersion", "CompressOutput"]
    for _ in range(draw(st.integers(1, 3))):
        doc[draw(st.sampled_from(keys))] = draw(ODD_VALUES)
    return json.dumps(doc).encode()


def _metadata(box: bytes) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(box)) as t:
        for m in t:
            if m.name == "metadata.json":
                return t.extractfile(m).read()
    return b"{}"


def _with_metadata(box: bytes, meta: bytes) -> bytes:
    """The box (a plain tar) with its metadata.json's content replaced, the rest as it was."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(box)) as src, tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as dst:
        for m in src:
            data = meta if m.name == "metadata.json" else (src.extractfile(m).read() if m.isfile() else None)
            if data is not None:
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _timed(name: str, started: float) -> None:
    global slowest
    elapsed = time.monotonic() - started
    slowest = max(slowest, elapsed)
    assert elapsed < CASE_SECONDS, f"{name}: {elapsed:.1f} s"


def _mkosi_case(config: Path, work: Path) -> None:
    """boxpack --mkosi as mkosi's hook would run it, with this $MKOSI_CONFIG; the disk is there."""
    out = work / "mkosi-out"
    out.mkdir(exist_ok=True)
    disk = out / "img.raw"
    if not disk.exists():
        disk.write_bytes(b"\1" * 4096 + bytes((1 << 20) - 4096))
    try:
        image = mkosi.from_environment({"OUTPUTDIR": str(out), "MKOSI_CONFIG": str(config)})
        boxpack.pack(image.disk, boxpack.PackOptions(["libvirt"], f"{work}/mkosi-boxes/", force=True, threads=1,
                                                      architecture=image.architecture, name=image.name))
    except boxpack.BoxpackError:
        pass


def run(seed_dir: Path, examples: int) -> None:
    logging.getLogger("boxpack").setLevel(logging.ERROR)  # padding warnings, by the thousand
    seeds = [(p.name, p.read_bytes()) for p in sorted(seed_dir.iterdir())]
    work = Path(tempfile.mkdtemp(prefix="boxpack-fuzz-"))

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=mutated(seeds))
    def case(case: tuple[str, bytes]) -> None:
        name, data = case
        path = work / name
        path.write_bytes(data)
        started = time.monotonic()
        if name.endswith(".json"):
            _mkosi_case(path, work)
            return _timed(name, started)
        for disks in (False, True):
            report = verify.examine(str(path), disks=disks)
            assert report.exit_code in (0, 1, 2)
            render.render_inspect(report)
            report.to_json()
        try:
            boxpack.pack(path, boxpack.PackOptions(["libvirt", "virtualbox", "vmware_desktop", "hyperv"], f"{work}/out/", force=True, threads=1))
        except boxpack.BoxpackError:
            pass
        _timed(name, started)

    case()
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(f"examples {examples} peak_mib {hwm // 1024} slowest_s {slowest:.2f}")


if __name__ == "__main__":
    run(Path(sys.argv[1]), int(sys.argv[2]))
