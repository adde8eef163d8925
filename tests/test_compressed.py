"""Compressed raw disks (mkosi's CompressOutput=, distributions' .raw.xz) and raw disks in a tar (GCE's disk.raw)
as sources: each box's disk identical to the uncompressed disk, made by the real compressors."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import MIB, extract, make_disk, qemu_compare, run_boxpack

COMPRESSORS = {
    "zst": ["zstd", "-q", "-T0", "--rm"],  # as mkosi's maybe_compress runs it
    "xz": ["xz", "-T0"],
    "gz": ["gzip"],
}
DISK_IN_BOX = {
    "libvirt": ("box.img", "qcow2"),
    "virtualbox": ("box-disk001.vmdk", "vmdk"),
    "vmware_desktop": ("disk.vmdk", "vmdk"),
    "hyperv": ("Virtual Hard Disks/disk.vhdx", "vhdx"),
}


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GPT disk whose size is not a multiple of the 4 MiB read piece, with data scattered over it."""
    return make_disk.make(tmp_path_factory.mktemp("src") / "disk.raw", size=200 * MIB + 64 * 1024, data=12 * MIB)


def compress(raw: Path, into: Path, suffix: str) -> Path:
    copy = into / raw.name
    shutil.copy(raw, copy)
    subprocess.run([*COMPRESSORS[suffix], str(copy)], check=True)
    out = copy.with_name(f"{copy.name}.{suffix}")
    copy.unlink(missing_ok=True)
    return out


@pytest.mark.first_case_quick
@pytest.mark.parametrize("suffix", COMPRESSORS)
def test_compressed_raw_converts_to_every_provider_exactly(tmp_path: Path, raw: Path, suffix: str) -> None:
    image = compress(raw, tmp_path, suffix)
    proc = run_boxpack(image, *(a for p in DISK_IN_BOX for a in ("--provider", p)), "-o", f"{tmp_path}/out/", "--json")
    boxes = {b["provider"]: b for b in json.loads(proc.stdout)["boxes"]}
    for provider, (member, fmt) in DISK_IN_BOX.items():
        box = Path(boxes[provider]["path"])
        assert box.name == f"disk-{provider}.box"  # named after the disk, not disk.raw
        assert boxes[provider]["disks"][0]["virtual_size"] == raw.stat().st_size
        qemu_compare(extract(box, tmp_path / provider) / member, fmt, raw)


def test_compressed_raw_gives_the_same_box_as_the_raw(tmp_path: Path, raw: Path) -> None:
    image = compress(raw, tmp_path, "zst")
    for src, out in ((raw, "a.box"), (image, "b.box")):
        run_boxpack(src, "--provider", "libvirt", "--provider", "virtualbox", "-o", f"{tmp_path}/{out.removesuffix('.box')}/",
                    env={"SOURCE_DATE_EPOCH": "1700000000"})
    for provider in ("libvirt", "virtualbox"):
        a = (tmp_path / "a" / f"disk-{provider}.box").read_bytes()
        assert a == (tmp_path / "b" / f"disk-{provider}.box").read_bytes(), provider


@pytest.mark.parametrize("mode", ["w:gz", "w:"])
def test_raw_disk_in_a_tar_as_gce_ships_it(tmp_path: Path, raw: Path, mode: str) -> None:
    archive = tmp_path / ("image.tar.gz" if mode == "w:gz" else "image.tar")
    with tarfile.open(archive, mode, format=tarfile.GNU_FORMAT) as t:
        t.add(raw, "disk.raw")
    run_boxpack(archive, "--provider", "libvirt", "-o", tmp_path)
    qemu_compare(extract(tmp_path / "image-libvirt.box", tmp_path / "x") / "box.img", "qcow2", raw)


@pytest.mark.slow
def test_cut_short_or_corrupt_streams_are_refused(tmp_path: Path, raw: Path) -> None:
    for suffix in COMPRESSORS:
        whole = compress(raw, tmp_path, suffix).read_bytes()
        cut = tmp_path / f"cut.raw.{suffix}"
        cut.write_bytes(whole[: len(whole) * 2 // 3])
        proc = run_boxpack(cut, "--provider", "libvirt", "-o", tmp_path / f"cut-{suffix}.box", check=False)
        assert proc.returncode == 1, proc.stderr
        assert f"the {'gzip' if suffix == 'gz' else 'zstd' if suffix == 'zst' else suffix} stream is corrupt or cut short" in proc.stderr.decode()
        assert len(proc.stderr.splitlines()) == 1 and not (tmp_path / f"cut-{suffix}.box").exists()


def test_compressed_image_of_another_format_is_refused_by_name(tmp_path: Path, raw: Path) -> None:
    qcow2 = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(qcow2)], check=True)
    subprocess.run(["xz", "-0", str(qcow2)], check=True)
    proc = run_boxpack(tmp_path / "disk.qcow2.xz", "--provider", "libvirt", "-o", tmp_path / "o.box", check=False)
    assert proc.returncode == 1
    assert "xz-compressed qcow2 image" in proc.stderr.decode() and "decompress it first" in proc.stderr.decode()


@pytest.mark.slow
def test_memory_stays_flat_for_a_large_sparse_compressed_disk(tmp_path: Path) -> None:
    """16 GiB of zeros with data at the start and a cluster in every 64 MiB, as concatenated zstd frames
    (valid zstd, as `cat` makes them), packed for every provider: the Python heap's peak as for 64 MiB (a
    cluster map would add 1 MiB per 16 GiB, a buffered disk far more, and writers that held the scan's
    views of scattered clusters 256 MiB), and the process's own RSS peak (VmHWM) under 150 MiB."""
    from boxpack.sources.zstd import zstd

    # Each 64 MiB frame holds 64 KiB of data: the image inflates about 1000 times, as a mostly empty real disk
    # does (more is refused as a bomb).
    zero_frame = zstd.compress(random.Random(1).randbytes(64 * 1024) + bytes(64 * MIB - 64 * 1024))

    def peaks(frames: int) -> tuple[int, int]:
        image = tmp_path / f"big{frames}.raw.zst"
        with open(image, "wb") as f:
            f.write(zstd.compress(b"\x01" * 16 * MIB + bytes(48 * MIB)))  # enough to fill the pipeline in both
            for _ in range(frames - 1):
                f.write(zero_frame)
        args = [str(image), "-o", f"{tmp_path}/out{frames}/", "-q", *(a for p in DISK_IN_BOX for a in ("--provider", p))]
        code = (
            "import sys, tracemalloc; tracemalloc.start(); from boxpack.cli import main; rc = main(sys.argv[1:]); "
            "hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')); "
            "print(rc, tracemalloc.get_traced_memory()[1], hwm * 1024)"
        )
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, check=True, text=True).stdout.split()
        assert out[-3] == "0", out
        return int(out[-2]), int(out[-1])

    (heap_small, rss_small), (heap_big, rss_big) = peaks(1), peaks(256)
    assert heap_big < heap_small + 8 * MIB, (heap_small, heap_big)  # pieces in flight vary by a few MiB (4.7 seen)
    assert max(rss_small, rss_big) < 150 * MIB, (rss_small, rss_big)
