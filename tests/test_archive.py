"""The tar and gzip framing, read by gzip, GNU tar, bsdtar and Python."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest
from conftest import extract, run_boxpack

from boxpack.member import Member
from boxpack.output.gzip import CHUNK, DigestWriter, ParallelGzip
from boxpack.output.tar import tar_header, tar_stream


def _gzip_bytes(data: bytes, threads: int, level: int = 6, fast: bool = False, stored: range = range(0)) -> bytes:
    """Write data in pieces that do not line up with members; the bytes in `stored` as already compressed."""
    out = io.BytesIO()
    gz = ParallelGzip(out, level, threads, fast)
    cuts = sorted({0, len(data), stored.start, stored.stop, *range(0, len(data), 300_000)})
    for a, b in zip(cuts, cuts[1:]):
        gz.write(data[a:b], stored=a in stored)
    gz.close()
    return out.getvalue()


DATA = os.urandom(CHUNK + 12345) + bytes(3 * CHUNK) + b"text " * 100_000 + os.urandom(2 * CHUNK + 7)


@pytest.mark.parametrize("fast", [False, True], ids=["libdeflate", "isal"])
def test_multi_member_gzip_reads_back_everywhere(tmp_path: Path, fast: bool) -> None:
    data = DATA
    blob = _gzip_bytes(data, threads=2, fast=fast, stored=range(CHUNK // 2, 2 * CHUNK))
    assert blob.count(b"\x1f\x8b\x08") >= 3  # really several members
    assert gzip.decompress(blob) == data
    f = tmp_path / "x.gz"
    f.write_bytes(blob)
    subprocess.run(["gzip", "-t", str(f)], check=True)
    assert subprocess.run(["gzip", "-dc", str(f)], capture_output=True, check=True).stdout == data
    assert subprocess.run(["bsdcat", str(f)], capture_output=True, check=True).stdout == data


@pytest.mark.parametrize("fast", [False, True], ids=["libdeflate", "isal"])
def test_gzip_output_does_not_depend_on_threads(fast: bool) -> None:
    one = _gzip_bytes(DATA, 1, fast=fast, stored=range(CHUNK, 3 * CHUNK))
    assert one == _gzip_bytes(DATA, 2, fast=fast, stored=range(CHUNK, 3 * CHUNK)) == _gzip_bytes(DATA, 5, fast=fast, stored=range(CHUNK, 3 * CHUNK))


def test_stored_data_is_not_deflated_again() -> None:
    """Already-compressed data costs next to nothing: stored blocks, a few bytes per 64 KiB."""
    noise = os.urandom(4 * CHUNK)
    stored = _gzip_bytes(noise, 2, stored=range(0, len(noise)))
    assert len(noise) < len(stored) < len(noise) * 1.001
    assert gzip.decompress(stored) == noise


def test_stored_data_keeps_its_zero_padding_small() -> None:
    """A VMDK's grains are followed by zero padding to the next sector: stored data, but for its zero runs,
    which cost a few bytes each, so a box pays for the grains and not for the padding (gzip -t reads it)."""
    records = [os.urandom(size) + bytes(-size % 512) for size in range(20_000, 40_000, 997)]
    data = b"".join(records)
    payload = sum(len(r.rstrip(b"\0")) for r in records)
    blob = _gzip_bytes(data, 2, stored=range(0, len(data)))
    assert len(blob) < payload + 20 * len(records)
    assert gzip.decompress(blob) == data
    assert subprocess.run(["gzip", "-dc"], input=blob, capture_output=True, check=True).stdout == data


def test_fast_engine_writes_one_member_per_run() -> None:
    """ISA-L pieces primed with the previous 32 KiB form a single gzip member."""
    text = b"".join(b"line %d of a log file\n" % i for i in range(400_000))
    blob = _gzip_bytes(text, 2, fast=True)
    assert blob.count(b"\x1f\x8b\x08\x00") == 1 and gzip.decompress(blob) == text


@pytest.mark.parametrize("fast", [False, True], ids=["libdeflate", "isal"])
def test_empty_gzip_stream_is_valid(fast: bool) -> None:
    assert gzip.decompress(_gzip_bytes(b"", 2, fast=fast)) == b""


def test_box_members_read_identically_by_bsdtar_gnu_tar_and_python(tmp_path: Path, sample_disk: Path) -> None:
    box = tmp_path / "s.box"
    run_boxpack(sample_disk, "--provider", "libvirt", "-o", box)
    with tarfile.open(box, "r:gz") as t:
        py = {m.name: (m.size, m.mtime, m.uid, m.gid, m.mode, t.extractfile(m).read()) for m in t.getmembers()}
    assert [k for k in py] == ["metadata.json", "Vagrantfile", "box.img"]
    assert {v[2:5] for v in py.values()} == {(0, 0, 0o644)}
    d = extract(box, tmp_path / "bsd")
    for name, v in py.items():
        assert (d / name).read_bytes() == v[5]
    gnu = subprocess.run(["tar", "-tvzf", str(box)], capture_output=True, check=True, text=True).stdout
    assert len(gnu.splitlines()) == 3 and "0/0" in gnu


def test_tar_header_for_members_of_8_gib_and_more() -> None:
    """GNU base-256 size: what Packer uses so that every bsdtar reads big members."""
    size = 9 * 1024**3 + 512
    head = tar_header("box.img", size, 0)
    assert len(head) == 512 and head[124] == 0x80  # base-256 marker
    assert tarfile.TarInfo.frombuf(head, "utf-8", "strict").size == size


@pytest.mark.slow
def test_bsdtar_lists_a_9_gib_member(tmp_path: Path) -> None:
    """Stream a tar with a 9 GiB member through bsdtar and check the size it reports."""
    size = 9 * 1024**3 + 512
    zero = bytes(CHUNK)

    def chunks():
        left = size
        while left:
            n = min(left, CHUNK)
            yield zero[:n]
            left -= n

    proc = subprocess.Popen(["bsdtar", "-tvf", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def feed() -> None:
        with proc.stdin:
            for piece, _ in tar_stream([Member("box.img", size, chunks), Member.from_bytes("after", b"x")], 0):
                proc.stdin.write(piece)

    t = threading.Thread(target=feed)
    t.start()
    out = proc.stdout.read().decode()
    t.join()
    assert proc.wait() == 0
    lines = out.splitlines()
    assert str(size) in lines[0] and lines[1].endswith("after")


def test_tar_stream_refuses_a_member_of_the_wrong_size() -> None:
    from boxpack.errors import BoxpackError

    with pytest.raises(BoxpackError, match="a: 5 bytes where 10 were expected"):
        list(tar_stream([Member("a", 10, lambda: (b"12345",))], 0))


def test_digest_writer_hashes_what_it_writes() -> None:
    out = io.BytesIO()
    w = DigestWriter(out, "sha256")
    w.write(b"abc")
    w.write(memoryview(b"def"))
    assert w.hexdigest() == hashlib.sha256(b"abcdef").hexdigest() and w.size == 6
