"""The disk's data compressed once per run (boxpack/disk/pieces.py): every box that holds the data as it is
gets the same pieces, is the bytes it is when packed alone, and reads back as the disk."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import extract, qemu_compare

import boxpack.output.gzip as gzip_engines
from boxpack.disk.pieces import PIECE, _Run
from boxpack.disk.source import CLUSTER, ImageSource
from boxpack.packing import PackOptions, pack

MIB = 1024 * 1024
# provider: (its disk's file name in the box, qemu-img's name for its format)
SHARED = {
    "libvirt": ("box.img", "qcow2"),
    "qemu": ("box.img", "qcow2"),
    "vmware_desktop": ("*.vmdk", "vmdk"),
    "hyperv": ("*.vhdx", "vhdx"),
    "parallels": ("*.hds", "parallels"),
    "utm": ("*.qcow2", "qcow2"),
}


def fragmented(path: Path) -> Path:
    """Data in runs that start and end anywhere: inside a MiB, across MiB boundaries, one cluster alone,
    every other cluster, two whole MiBs, and the disk's last (partial) sector."""
    size = 40 * MIB + 3 * 512
    runs = [(0, 3), (14, 5), (33, 1), (35, 1), (37, 1), (64, 32), (300, 20), (511, 2)]
    with open(path, "wb") as f:
        f.truncate(size)
        for first, count in runs:
            f.seek(first * CLUSTER)
            n = count * CLUSTER
            f.write((os.urandom(n // 2) + bytes(100) + b"text " * n)[:n])
        f.seek(size - 512)
        f.write(b"\xee" * 512)
    return path


def _disk_in(box: Path, provider: str, where: Path) -> Path:
    (image,) = extract(box, where).rglob(SHARED[provider][0])
    return image


def test_runs_are_cut_at_gaps_and_at_each_aligned_mib() -> None:
    run, pieces = _Run(), []
    for cluster in (0, 1, 2, 15, 16, 17, 40, 41, 47, 48):
        done = run.add(cluster, bytes([cluster % 256]) * CLUSTER)
        if done:
            pieces.append(done[:2])
    pieces.append(run.take()[:2])
    assert PIECE == 16
    assert pieces == [(0, 3), (15, 1), (16, 2), (40, 2), (47, 1), (48, 1)]
    assert run.take() is None


def test_every_box_of_a_run_shares_one_compression_and_is_what_it_is_alone(tmp_path: Path, monkeypatch) -> None:
    disk = fragmented(tmp_path / "frag.img")
    calls = []
    real = gzip_engines.member_compressor

    def counting(level: int, fast: bool):
        compress = real(level, fast)
        return lambda data: calls.append(len(data)) or compress(data)

    monkeypatch.setattr(gzip_engines, "member_compressor", counting)  # what Compression.member() makes
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    together = pack(disk, PackOptions(providers=list(SHARED), output=f"{tmp_path}/together/", threads=3, name="d",
                                      settings={"vhdx_block_size": 1}))
    data_clusters = 3 + 5 + 1 + 1 + 1 + 32 + 20 + 2 + 1
    assert sum(calls) == data_clusters * CLUSTER  # each data cluster compressed once, not once per box
    assert len(calls) == 13  # 14-18 is two pieces (14-15, 16-18), as are 64-95, 300-319 and 511-512
    for result in together:
        calls.clear()
        alone = pack(disk, PackOptions(providers=[result.provider], output=tmp_path / f"{result.provider}.box",
                                       threads=1, name="d", settings={"vhdx_block_size": 1}))
        assert alone[0].checksum == result.checksum, result.provider
        assert sum(calls) == data_clusters * CLUSTER
        image = _disk_in(result.path, result.provider, tmp_path / result.provider)
        qemu_compare(image, SHARED[result.provider][1], disk)
        subprocess.run(["gzip", "-t", str(result.path)], check=True)


@pytest.mark.parametrize("source_provider", ["libvirt", "virtualbox"])
def test_a_box_is_converted_from_one_read_of_its_source(tmp_path: Path, monkeypatch, source_provider: str) -> None:
    """The converted box's data is compressed as the source box is scanned, and spooled: the source is read
    (and decompressed) once, and the box is the bytes the raw disk gives."""
    disk = fragmented(tmp_path / "frag.img")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    source = pack(disk, PackOptions(providers=[source_provider], output=tmp_path / "source.box", name="d"))[0].path
    from_raw = pack(disk, PackOptions(providers=["libvirt", "hyperv"], output=f"{tmp_path}/raw/", name="d"))
    scans = []
    real = ImageSource.scan

    def counted(self, progress=None):
        scans.append(self.path)
        return real(self, progress)

    monkeypatch.setattr(ImageSource, "scan", counted)
    converted = pack(source, PackOptions(providers=["libvirt", "hyperv"], output=f"{tmp_path}/converted/", name="d"))
    assert scans == [source]
    assert [r.checksum for r in converted] == [r.checksum for r in from_raw]
    scans.clear()
    pack(source, PackOptions(providers=["libvirt"], output=tmp_path / "plain.box", name="d", compression="none"))
    assert scans == [source, source]  # uncompressed, the box takes its data from a second scan


def test_the_fast_engine_shares_its_pieces_too(tmp_path: Path, monkeypatch) -> None:
    disk = fragmented(tmp_path / "frag.img")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    together = pack(disk, PackOptions(providers=["libvirt", "parallels"], output=f"{tmp_path}/t/", fast=True, threads=2))
    for result in together:
        alone = pack(disk, PackOptions(providers=[result.provider], output=tmp_path / f"{result.provider}.box",
                                       fast=True, threads=1))
        assert alone[0].checksum == result.checksum
        qemu_compare(_disk_in(result.path, result.provider, tmp_path / result.provider), SHARED[result.provider][1], disk)
