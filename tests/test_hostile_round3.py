"""Hostile and unlucky input, round 3: the cases found on what round 2 added (VHD/VHDX/VDI, compressed raw
disks, mkosi mode, several disks, the Hyper-V and VMware writers, boxpack test). One test per case; the
inputs are made here."""

from __future__ import annotations

import json
import lzma
import os
import signal
import struct
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from conftest import MIB, make_disk, qemu_compare, run_boxpack, write_box, writing
from test_hostile import _one_line_error, _peak_mib, _verify

from boxpack.sources.zstd import zstd


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_disk.make(tmp_path_factory.mktemp("r3") / "disk.img", size=64 * MIB, data=2 * MIB)


def _box_img(box: Path) -> bytes:
    with tarfile.open(box) as t:
        return t.extractfile("box.img").read()


def _libvirt_box(disk: Path, tmp: Path) -> Path:
    box = tmp / "src-libvirt.box"
    run_boxpack(disk, "--provider", "libvirt", "-o", box)
    return box


def _same_disk(box: Path, disk: Path, tmp: Path) -> None:
    image = tmp / "box.img"
    image.write_bytes(_box_img(box))
    qemu_compare(image, "qcow2", disk)


# --- 1-4: a wrong box or lost data --------------------------------------------------------------

def test_1_zstd_image_starting_with_a_skippable_frame_is_the_disk(tmp_path: Path, disk: Path) -> None:
    """pzstd writes a skippable frame first (magic 0x184D2A50..5F, RFC 8878 3.1.2): the stream is zstd."""
    image = tmp_path / "disk.raw.zst"
    image.write_bytes(struct.pack("<II", 0x184D2A50, 8) + b"pzstd!\0\0" + zstd.compress(disk.read_bytes()))
    run_boxpack(image, "--provider", "libvirt", "-o", tmp_path / "z.box")
    _same_disk(tmp_path / "z.box", disk, tmp_path)


def test_2_checksum_file_never_replaces_a_source_a_box_or_a_file_without_force(tmp_path: Path, disk: Path) -> None:
    source = tmp_path / "d.img"
    source.write_bytes(disk.read_bytes())
    box = tmp_path / "c.box"
    for target in (source, box):
        _one_line_error(run_boxpack(source, "-o", box, "--provider", "libvirt", "--checksum-file", target, check=False),
                        "is a source or a box of this run", code=2)
    assert source.read_bytes() == disk.read_bytes() and not box.exists()
    (tmp_path / "c.box.sha256").write_text("mine\n")
    _one_line_error(run_boxpack(source, "-o", box, "--provider", "libvirt", "--checksum-file", check=False),
                    "c.box.sha256: already exists; use --force", code=3)
    assert (tmp_path / "c.box.sha256").read_text() == "mine\n" and not box.exists()  # refused before the box
    run_boxpack(source, "-o", box, "--provider", "libvirt", "--checksum-file", "--force")
    assert (tmp_path / "c.box.sha256").read_text().endswith("  c.box\n")
    assert not list(tmp_path.glob(".boxpack-*"))


def test_3_verify_checks_what_each_disks_entry_names(tmp_path: Path, disk: Path) -> None:
    image = _box_img(_libvirt_box(disk, tmp_path))
    meta = {"provider": "libvirt", "format": "qcow2", "virtual_size": 1, "disks": [{"path": "metadata.json"}]}
    box = write_box(tmp_path / "m.box", [("metadata.json", json.dumps(meta).encode()), ("box.img", image)])
    code, report = _verify(box)
    assert code == 1 and any(f["code"] == "libvirt-disks" and "metadata.json" in f["message"] for f in report["findings"])
    # A disk named by `disks` whose name does not look like one is read as a disk all the same.
    meta["disks"] = [{"path": "root.disk"}]
    box = write_box(tmp_path / "n.box", [("metadata.json", json.dumps(meta).encode()), ("root.disk", image)])
    code, report = _verify(box)
    assert report["disk"]["member"] == "root.disk" and report["disk"]["format"].startswith("qcow2"), report


def test_4_xz_with_stream_padding_is_read(tmp_path: Path, disk: Path) -> None:
    """The xz format allows null bytes after a stream, a multiple of four (section 2.2); `xz -t` passes it."""
    image = tmp_path / "disk.raw.xz"
    image.write_bytes(lzma.compress(disk.read_bytes(), preset=0) + bytes(8))
    subprocess.run(["xz", "-t", str(image)], check=True)
    run_boxpack(image, "--provider", "libvirt", "-o", tmp_path / "x.box")
    _same_disk(tmp_path / "x.box", disk, tmp_path)
    padded_badly = tmp_path / "bad.raw.xz"
    padded_badly.write_bytes(lzma.compress(disk.read_bytes(), preset=0) + bytes(3))
    _one_line_error(run_boxpack(padded_badly, "--provider", "libvirt", "-o", tmp_path / "y.box", check=False), "corrupt")


# --- 5-8, 20: bounds ---------------------------------------------------------------------------

def test_5_a_disks_list_naming_one_disk_a_thousand_times_is_refused_at_once(tmp_path: Path, disk: Path) -> None:
    image = _box_img(_libvirt_box(disk, tmp_path))
    meta = {"provider": "libvirt", "format": "qcow2", "virtual_size": 1, "disks": [{"path": "box.img"}] * 1000}
    box = write_box(tmp_path / "dup.box", [("metadata.json", json.dumps(meta).encode()), ("box.img", image)])
    started = time.monotonic()
    rc, peak, _ = _peak_mib(box, "--provider", "virtualbox", "-o", tmp_path / "o.box")
    assert rc == 1 and peak < 150 and time.monotonic() - started < 15
    _one_line_error(run_boxpack(box, "--provider", "libvirt", "-o", tmp_path / "o.box", check=False), "twice")
    many = {**meta, "disks": [{"path": f"d{i}.img"} for i in range(40)]}
    box = write_box(tmp_path / "many.box", [("metadata.json", json.dumps(many).encode()),
                                            *((f"d{i}.img", image) for i in range(40))])
    _one_line_error(run_boxpack(box, "--provider", "libvirt", "-o", tmp_path / "o.box", check=False), "at most 32")
    # 40,000 distinct names in under 1 MiB of metadata.json: the duplicate check is one pass (a pairwise one
    # took 16 s, once for every member read before the disk)
    huge = {**meta, "disks": [{"path": f"d{i}.img"} for i in range(40_000)]}
    box = write_box(tmp_path / "huge.box", [("metadata.json", json.dumps(huge).encode()), ("box.img", image)])
    started = time.monotonic()
    _one_line_error(run_boxpack(box, "--provider", "virtualbox", "-o", tmp_path / "o.box", check=False), "at most 32")
    assert time.monotonic() - started < 10


def _vdi(disk: Path, tmp: Path) -> Path:
    image = tmp / "d.vdi"
    subprocess.run(["qemu-img", "convert", "-O", "vdi", str(disk), str(image)], check=True)
    return image


def test_6_block_maps_naming_one_block_many_times_are_refused(tmp_path: Path, disk: Path) -> None:
    """A VDI's map entries all naming block 0 (qemu-img check: 'block index also used by'): refused at the
    second, not read a million times."""
    image = _vdi(disk, tmp_path)
    data = bytearray(image.read_bytes())
    offset_blocks, = struct.unpack_from("<I", data, 340)
    blocks, = struct.unpack_from("<I", data, 384)
    struct.pack_into(f"<{blocks}I", data, offset_blocks, *([0] * blocks))
    image.write_bytes(data)
    _one_line_error(run_boxpack(image, "--provider", "libvirt", "-o", tmp_path / "o.box", check=False),
                    "where another block is")
    code, report = _verify_disk(image)
    assert code == 1 and any("where another block is" in f["message"] for f in report["findings"])


def _verify_disk(path: Path) -> tuple[int, dict]:
    proc = run_boxpack("inspect", path, "--json", check=False, timeout=60)
    doc = json.loads(proc.stdout)
    return (1 if any(f["severity"] == "error" for f in doc["findings"]) else 0), doc


@pytest.mark.slow
def test_6_a_zstd_bomb_is_refused_within_seconds(tmp_path: Path) -> None:
    """100 KB of zstd that would inflate to 32 GiB of zeros."""
    image = tmp_path / "bomb.raw.zst"
    c = zstd.ZstdCompressor()
    with open(image, "wb") as f:
        for _ in range(256):
            f.write(c.compress(bytes(128 * MIB)))
        f.write(c.flush())
    assert image.stat().st_size < 2 * MIB
    started = time.monotonic()
    _one_line_error(run_boxpack(image, "--provider", "libvirt", "-o", tmp_path / "o.box", check=False, timeout=60),
                    "decompression bomb")
    assert time.monotonic() - started < 20


@pytest.mark.slow
def test_7_an_empty_64_tib_vmware_box_takes_seconds(tmp_path: Path) -> None:
    image = tmp_path / "e.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64T"], check=True)
    for fast in ((), ("--fast",)):
        started = time.monotonic()
        run_boxpack(image, "--provider", "vmware_desktop", "-o", tmp_path / "e.box", "--force", *fast, timeout=120)
        assert time.monotonic() - started < 30, fast
    assert (tmp_path / "e.box").stat().st_size < 64 * MIB


def test_8_a_disk_over_64_tib_is_refused_before_any_box_is_written(tmp_path: Path) -> None:
    image = tmp_path / "big.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "65T"], check=True)
    out = tmp_path / "out"
    _one_line_error(run_boxpack(image, "--provider", "libvirt", "--provider", "hyperv", "-o", f"{out}/", check=False),
                    "does not fit a hyperv box")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("fmt", ["qcow2", "vdi", "vpc", "vmdk"])
def test_20_an_image_of_virtual_size_zero_is_refused(tmp_path: Path, fmt: str) -> None:
    image = tmp_path / f"z.{fmt}"
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(image), "0"], check=True)
    _one_line_error(run_boxpack(image, "--provider", "libvirt", "--provider", "hyperv", "-o", f"{tmp_path}/o/", check=False),
                    "virtual size is 0")


# --- 9-14: one line, not an internal error --------------------------------------------------------

@pytest.mark.parametrize("provider", [[], {}, 5])
def test_9_metadata_with_a_provider_that_is_no_string(tmp_path: Path, disk: Path, provider: object) -> None:
    image = _box_img(_libvirt_box(disk, tmp_path))
    box = write_box(tmp_path / "p.box", [("metadata.json", json.dumps({"provider": provider}).encode()), ("box.img", image)])
    for action in ("inspect", "verify"):
        proc = run_boxpack(action, box, check=False)
        assert proc.returncode in (0, 1) and b"internal error" not in proc.stderr, proc.stderr


def _mkosi(tmp: Path, disk: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    out = tmp / "out"
    out.mkdir(exist_ok=True)
    (out / "img.raw").write_bytes(disk.read_bytes())
    (tmp / "config.json").write_text(json.dumps(config))
    return run_boxpack("--mkosi", "--provider", "libvirt", *args, env={"OUTPUTDIR": str(out), "MKOSI_CONFIG": str(tmp / "config.json")},
                       check=False)


@pytest.mark.parametrize("field, value", [("Architecture", 5), ("Architecture", ["x86-64"]), ("Architecture", {}),
                                          ("ImageVersion", 1.5), ("ImageVersion", ["1"])])
def test_10_11_mkosi_settings_that_are_no_strings(tmp_path: Path, disk: Path, field: str, value: object) -> None:
    proc = _mkosi(tmp_path, disk, {"Output": "img", "Format": "disk", field: value}, "--catalog", str(tmp_path / "c.json"),
                  "--name", "org/img", "--base-url", "https://x.org/")
    _one_line_error(proc, f"$MKOSI_CONFIG's {field} is")


def test_12_a_full_file_system_under_the_vmdk_spool_is_one_line(tmp_path: Path, disk: Path) -> None:
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(tiny)]).returncode:
        pytest.skip("needs root to mount a 64 KiB tmpfs")
    try:
        proc = run_boxpack(disk, "--provider", "virtualbox", "-o", "-", env={"TMPDIR": str(tiny)}, check=False,
                           stdout=subprocess.DEVNULL)
        _one_line_error(proc, "No space left on device")
    finally:
        subprocess.run(["umount", str(tiny)], check=True)


def test_13_boxpack_test_of_a_disk_too_large_for_a_file_says_so(tmp_path: Path) -> None:
    try:
        with open(tmp_path / "probe", "wb") as f:
            f.truncate(17 * 2**40)
        pytest.skip("this file system holds a 17 TiB sparse file")
    except OSError:
        pass
    image = tmp_path / "big.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "17T"], check=True)
    proc = run_boxpack("test", image, env={"TMPDIR": str(tmp_path)}, check=False, timeout=60)
    _one_line_error(proc, "does not fit a file", code=3)


def test_14_an_include_whose_size_lies_is_one_line(tmp_path: Path, disk: Path) -> None:
    _one_line_error(run_boxpack(disk, "--provider", "libvirt", "-o", tmp_path / "i.box", "--include", "/proc/self/status",
                                check=False), "/proc/self/status: says it is empty but is not", code=2)


# --- 15-19: escapes, hangs and leftovers ------------------------------------------------------------

def test_15_mkosi_output_with_a_slash_is_refused(tmp_path: Path, disk: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "v.raw").write_bytes(disk.read_bytes())
    _one_line_error(_mkosi(tmp_path, disk, {"Output": "../victim/v", "Format": "disk"}), "not a file name")
    assert sorted(p.name for p in victim.iterdir()) == ["v.raw"]


def test_16_mkosi_config_naming_a_fifo_does_not_block(tmp_path: Path, disk: Path) -> None:
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    out.mkdir()
    proc = run_boxpack("--mkosi", "--provider", "libvirt", env={"OUTPUTDIR": str(out), "MKOSI_CONFIG": str(fifo)},
                       check=False, timeout=20)
    _one_line_error(proc, "not a regular file")


@pytest.mark.slow
def test_17_a_killed_run_leaves_nothing_and_a_leftover_is_swept_by_the_next(tmp_path: Path) -> None:
    """Killed while writing: the box is unnamed until placed (O_TMPFILE), so nothing stays. Where a file system
    cannot do that, a named temporary file stays, unlocked: the next run removes it."""
    big = make_disk.make(tmp_path / "big.img", size=512 * MIB, data=200 * MIB)
    box = tmp_path / "b.box"
    box.write_bytes(b"the box from before")
    proc = subprocess.Popen([sys.executable, "-m", "boxpack", big, "--provider", "libvirt", "-o", box, "--force"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and not writing(proc.pid, tmp_path):
        pass
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not list(tmp_path.glob(".boxpack-*")) and box.read_bytes() == b"the box from before"
    (tmp_path / ".boxpack-k1lled.part").write_bytes(b"what a killed run on such a file system left")
    small = make_disk.make(tmp_path / "small.img", data=MIB)
    again = run_boxpack(small, "--provider", "libvirt", "-o", tmp_path / "s.box")
    assert "removed 1 temporary file(s) that a killed boxpack left there" in again.stderr.decode()
    assert not list(tmp_path.glob(".boxpack-*")) and box.read_bytes() == b"the box from before"


def _catches(pid: int, signum: int) -> bool:
    """Whether process pid has its own handler for signum now (/proc/PID/status, SigCgt)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(status.split("SigCgt:")[1].split()[0], 16)
    return bool(caught & (1 << (signum - 1)))


def test_18_sigterm_while_the_modules_load_is_130(tmp_path: Path, disk: Path) -> None:
    """SIGTERM as soon as boxpack answers it (its handler is in place before the imports, which take most of the
    first second): held by that event, not by a delay a loaded machine may outrun."""
    proc = subprocess.Popen([sys.executable, "-m", "boxpack", disk, "--provider", "libvirt", "-o", tmp_path / "t.box"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while proc.poll() is None and not _catches(proc.pid, signal.SIGTERM):
        pass
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (proc.returncode, err)
    assert b"Traceback" not in err and not list(tmp_path.glob(".boxpack-*")) and not (tmp_path / "t.box").exists()


def test_19_a_box_with_two_disk_members_of_one_name_is_refused(tmp_path: Path, disk: Path) -> None:
    image = _box_img(_libvirt_box(disk, tmp_path))
    meta = json.dumps({"provider": "libvirt", "format": "qcow2", "virtual_size": 1}).encode()
    box = write_box(tmp_path / "two.box", [("metadata.json", meta), ("box.img", image), ("box.img", image[: 256 * 1024])])
    _one_line_error(run_boxpack(box, "--provider", "virtualbox", "-o", tmp_path / "o.box", check=False),
                    "holds two members named 'box.img'")
    assert not (tmp_path / "o.box").exists()
