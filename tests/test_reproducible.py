"""Same disk + SOURCE_DATE_EPOCH = same bytes, to a file and to stdout."""

from __future__ import annotations

import hashlib
from pathlib import Path

from conftest import run_boxpack


def test_same_input_same_bytes(tmp_path: Path, sample_disk: Path) -> None:
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    a, b = tmp_path / "a.box", tmp_path / "b.box"
    run_boxpack(sample_disk, "--provider", "libvirt", "-o", a, "--threads", "1", env=env)
    run_boxpack(sample_disk, "--provider", "libvirt", "-o", b, "--threads", "2", env=env)
    streamed = run_boxpack(sample_disk, "--provider", "libvirt", "-o", "-", env=env).stdout
    assert a.read_bytes() == b.read_bytes() == streamed


def test_source_date_epoch_sets_the_mtime(tmp_path: Path, sample_disk: Path) -> None:
    one = run_boxpack(sample_disk, "--provider", "libvirt", "-o", "-", env={"SOURCE_DATE_EPOCH": "1"}).stdout
    two = run_boxpack(sample_disk, "--provider", "libvirt", "-o", "-", env={"SOURCE_DATE_EPOCH": "2"}).stdout
    assert one != two


def test_summary_digest_matches_the_file(tmp_path: Path, sample_disk: Path) -> None:
    box = tmp_path / "a.box"
    err = run_boxpack(sample_disk, "--provider", "libvirt", "-o", box).stderr.decode()
    assert hashlib.sha256(box.read_bytes()).hexdigest() in err


def test_fast_boxes_are_reproducible_and_read_back(tmp_path: Path, sample_disk: Path) -> None:
    import subprocess

    from conftest import extract, qemu_compare

    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    for provider, image, fmt in (("libvirt", "box.img", "qcow2"), ("virtualbox", "box-disk001.vmdk", "vmdk")):
        one = run_boxpack(sample_disk, "--provider", provider, "--fast", "--threads", "1", "-o", "-", env=env).stdout
        two = run_boxpack(sample_disk, "--provider", provider, "--fast", "--threads", "2", "-o", "-", env=env).stdout
        assert one == two
        box = tmp_path / f"{provider}.box"
        box.write_bytes(one)
        subprocess.run(["gzip", "-t", str(box)], check=True)
        qemu_compare(extract(box, tmp_path / provider) / image, fmt, sample_disk)


def test_the_readmes_sample_sizes_and_digests_are_what_boxpack_prints(tmp_path: Path) -> None:
    """The README's first line makes fixtures/sample.img and packs it: every size and digest the README
    quotes for it is what that prints today (a changed byte in any box makes this fail, so update both)."""
    import re
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    sample = tmp_path / "sample.img"
    subprocess.run([sys.executable, str(root / "fixtures" / "make_disk.py"), str(sample)], check=True, capture_output=True)
    err = run_boxpack(sample, "--provider", "libvirt", "--provider", "virtualbox", "-o", f"{tmp_path}/boxes/").stderr.decode()
    printed = {p: (size, digest) for p, size, digest in re.findall(r"sample-(\w+)\.box: \w+ box, ([\d.]+ MiB), .* sha256 ([0-9a-f]{64})", err)}
    assert set(printed) == {"libvirt", "virtualbox"}, err
    quoted = re.findall(r"boxpack: sample-(\w+)\.box: \w+ box, ([\d.]+ MiB), .* sha256 ([0-9a-f]{12,64})…?,", (root / "README.md").read_text())
    assert len(quoted) >= 3
    for provider, size, digest in quoted:
        assert (size, printed[provider][1][: len(digest)]) == (printed[provider][0], digest), provider
