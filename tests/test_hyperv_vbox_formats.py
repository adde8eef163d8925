"""VHD, VHDX and VDI inputs: made by qemu-img from every disk case, into both providers, identical to the source."""

from __future__ import annotations

import bz2
import json
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import crc32c
import disks
import pytest
from conftest import MIB, extract, make_disk, qemu_compare, run_boxpack

VARIANTS = {
    "vhd-dynamic": ("vpc",),
    "vhd-fixed": ("vpc", "-o", "subformat=fixed"),
    "vhdx-dynamic": ("vhdx",),
    "vhdx-fixed": ("vhdx", "-o", "subformat=fixed"),
    "vhdx-1M-blocks": ("vhdx", "-o", "block_size=1M"),
    "vdi-dynamic": ("vdi",),
    "vdi-static": ("vdi", "-o", "static=on"),
}
# A fixed image of the 5 GiB case is a 5 GiB file: the dynamic variants cover that case.
SKIP = {("vhd-fixed", "larger_than_4gib"), ("vhdx-fixed", "larger_than_4gib"), ("vdi-static", "larger_than_4gib")}


def convert(raw: Path, out: Path, fmt: str, *opts: str) -> Path:
    subprocess.run(["qemu-img", "convert", "-O", fmt, *opts, str(raw), str(out)], check=True)
    return out


def _both_boxes_match(image: Path, raw: Path, tmp: Path) -> None:
    out = tmp / "out"
    run_boxpack(image, "--provider", "libvirt", "--provider", "virtualbox", "-o", f"{out}/")
    stem = image.stem
    qemu_compare(extract(out / f"{stem}-libvirt.box", tmp / "l") / "box.img", "qcow2", raw)
    qemu_compare(extract(out / f"{stem}-virtualbox.box", tmp / "v") / "box-disk001.vmdk", "vmdk", raw)


@pytest.mark.first_case_quick
@pytest.mark.parametrize("case", disks.CASES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_qemu_made_images_convert_exactly(tmp_path: Path, variant: str, case: str) -> None:
    if (variant, case) in SKIP:
        pytest.skip("a fixed image of 5 GiB")
    raw = disks.CASES[case](tmp_path / "src.img")
    fmt, *opts = VARIANTS[variant]
    _both_boxes_match(convert(raw, tmp_path / f"in.{fmt}", fmt, *opts), raw, tmp_path)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_disk.make(tmp_path_factory.mktemp("hv") / "src.img", size=256 * MIB, data=8 * MIB)


@pytest.mark.first_case_quick
@pytest.mark.parametrize("fmt", ["vhdx", "vpc", "vdi"])
def test_a_box_holding_the_disk_streams(tmp_path: Path, raw: Path, fmt: str) -> None:
    """A Hyper-V style box: the disk is read straight from the archive (metadata and tables first)."""
    d = tmp_path / "pkg"
    (d / "Virtual Hard Disks").mkdir(parents=True)
    convert(raw, d / "Virtual Hard Disks" / f"disk.{ {'vpc': 'vhd'}.get(fmt, fmt)}", fmt)
    (d / "metadata.json").write_text('{"provider": "hyperv"}')
    box = tmp_path / "hyperv.box"
    subprocess.run(["tar", "-czf", str(box), "-C", str(d), "metadata.json", "Virtual Hard Disks"], check=True)
    run_boxpack(box, "--provider", "libvirt", "-o", tmp_path / "out.box")
    qemu_compare(extract(tmp_path / "out.box", tmp_path / "x") / "box.img", "qcow2", raw)
    report = json.loads(run_boxpack("verify", box, "--json", check=False).stdout)
    assert {f["code"] for f in report["findings"]} == {"hyperv-layout"}  # the disk is fine; the box lacks Virtual Machines/
    assert report["disk"]["format"].startswith(("VHD", "VDI"))


def _fails(path: Path, text: str) -> None:
    proc = run_boxpack(path, "--provider", "libvirt", "-o", path.with_suffix(".box"), check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and err.count("\n") == 1 and text in err, err
    assert not path.with_suffix(".box").exists()


def test_vhd_with_a_bad_footer_checksum(tmp_path: Path, raw: Path) -> None:
    image = bytearray(convert(raw, tmp_path / "d.vpc", "vpc").read_bytes())
    image[48] ^= 1  # current size, in the copy at byte 0
    (tmp_path / "bad.vpc").write_bytes(image)
    _fails(tmp_path / "bad.vpc", "checksum is wrong")


def test_vhd_bat_entry_past_the_end(tmp_path: Path, raw: Path) -> None:
    image = bytearray(convert(raw, tmp_path / "d.vpc", "vpc").read_bytes())
    table = struct.unpack_from(">Q", image, 512 + 16)[0]
    struct.pack_into(">I", image, table, 0x7FFFFFFF)
    (tmp_path / "bad.vpc").write_bytes(image)
    _fails(tmp_path / "bad.vpc", "past the end of the file")
    report = json.loads(run_boxpack("inspect", tmp_path / "bad.vpc", "--json", check=False).stdout)
    assert "vhd-bat" in {f["code"] for f in report["findings"]}


def test_vhdx_with_both_headers_damaged(tmp_path: Path, raw: Path) -> None:
    image = bytearray(convert(raw, tmp_path / "d.vhdx", "vhdx").read_bytes())
    image[64 * 1024 + 8] ^= 1
    image[128 * 1024 + 8] ^= 1
    (tmp_path / "bad.vhdx").write_bytes(image)
    _fails(tmp_path / "bad.vhdx", "neither VHDX header is valid")


def test_vhdx_with_a_log_to_replay_is_refused_naming_the_log(tmp_path: Path, raw: Path) -> None:
    """The current header names a log GUID and the log holds a valid entry for it, as after a crash in Hyper-V."""
    image = bytearray(convert(raw, tmp_path / "d.vhdx", "vhdx").read_bytes())
    headers = [64 * 1024, 128 * 1024]
    current = max(headers, key=lambda o: struct.unpack_from("<Q", image, o + 8)[0])
    guid = uuid.uuid4().bytes_le
    image[current + 48 : current + 64] = guid
    struct.pack_into("<I", image, current + 4, 0)
    struct.pack_into("<I", image, current + 4, crc32c.crc32c(bytes(image[current : current + 4096])))
    log_length, log_offset = struct.unpack_from("<IQ", image, current + 68)
    entry = bytearray(4096)
    struct.pack_into("<4sIIIQII16sQQ", entry, 0, b"loge", 0, 4096, 0, 1, 0, 0, guid, len(image), len(image))
    struct.pack_into("<I", entry, 4, crc32c.crc32c(bytes(entry)))
    image[log_offset : log_offset + 4096] = entry
    (tmp_path / "dirty.vhdx").write_bytes(image)
    _fails(tmp_path / "dirty.vhdx", "VHDX log")
    probe = subprocess.run(["qemu-img", "info", str(tmp_path / "dirty.vhdx")], capture_output=True, text=True)
    assert probe.returncode != 0 and "log" in probe.stderr  # qemu refuses it read-only too


def test_vdi_block_map_out_of_range(tmp_path: Path, raw: Path) -> None:
    image = bytearray(convert(raw, tmp_path / "d.vdi", "vdi").read_bytes())
    offset_blocks = struct.unpack_from("<I", image, 340)[0]
    struct.pack_into("<I", image, offset_blocks, 0x00FFFFFF)
    (tmp_path / "bad.vdi").write_bytes(image)
    _fails(tmp_path / "bad.vdi", "out of range")


def test_vdi_differencing_image_is_refused(tmp_path: Path, raw: Path) -> None:
    image = bytearray(convert(raw, tmp_path / "d.vdi", "vdi").read_bytes())
    image[440:456] = uuid.uuid4().bytes  # uuid_parent
    (tmp_path / "diff.vdi").write_bytes(image)
    _fails(tmp_path / "diff.vdi", "differencing VDI")


@pytest.mark.slow
def test_memory_is_flat_for_a_2_tib_vhdx(tmp_path: Path) -> None:
    """The BAT is walked in pieces and only allocated blocks are kept: 2 TiB costs what 2 GiB costs."""

    def heap(size: int) -> int:
        raw = make_disk.make(tmp_path / f"r{size}.img", size=size, data=16 * MIB)
        image = convert(raw, tmp_path / f"d{size}.vhdx", "vhdx", "-o", "block_size=1M")
        code = (
            "import tracemalloc; tracemalloc.start(); from boxpack.cli import main; "
            f"main([{str(image)!r}, '--provider', 'libvirt', '-o', {str(tmp_path / f'o{size}.box')!r}, '-q']); "
            "print(tracemalloc.get_traced_memory()[1])"
        )
        return int(subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True).stdout.split()[-1])

    small, big = heap(2 * 1024**3), heap(2 * 1024**4)
    assert abs(big - small) < 4 * MIB, (small, big)


# --- images made by the native tools (fixtures/qemu-sample-images, from qemu's test data) ------------

SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "qemu-sample-images"
CONVERTED = ["hyperv2012r2-dynamic.vhd", "virtualpc-dynamic.vhd", "d2v-zerofilled.vhd", "test-disk2vhd.vhdx",
             "iotest-dynamic-1G.vhdx", "iotest-version3.vmdk", "parallels-v1", "parallels-v2"]
REFUSED = {"iotest-dirtylog-10G-4M.vhdx": "VHDX log",
           "empty.bochs": "bochs", "simple-pattern.cloop": "cloop", "simple-dmg.dmg": "DMG"}


def _sample(name: str, tmp: Path) -> Path:
    out = tmp / name
    out.write_bytes(bz2.decompress((SAMPLES / f"{name}.bz2").read_bytes()))
    return out


@pytest.mark.first_case_quick
@pytest.mark.parametrize("name", CONVERTED)
def test_native_tools_images_convert_as_qemu_reads_them(tmp_path: Path, name: str) -> None:
    image = _sample(name, tmp_path)
    reference = tmp_path / "reference.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(reference)], check=True)
    _both_boxes_match(image, reference, tmp_path)


@pytest.mark.parametrize("name", REFUSED)
def test_native_tools_images_boxpack_cannot_read_are_refused_by_name(tmp_path: Path, name: str) -> None:
    _fails(_sample(name, tmp_path), REFUSED[name])


@pytest.mark.first_case_quick
@pytest.mark.parametrize("name", [*CONVERTED, *REFUSED])
def test_inspect_agrees_with_conversion(tmp_path: Path, name: str) -> None:
    """inspect reads a disk (exit 0) exactly when boxpack converts it, and says why not (exit 2) when it refuses."""
    image = _sample(name, tmp_path)
    inspect = run_boxpack("inspect", image, "--json", check=False)
    convert = run_boxpack(image, "--provider", "libvirt", "-o", tmp_path / "out.box", check=False)
    report = json.loads(inspect.stdout)
    assert (inspect.returncode == 0) == (convert.returncode == 0) == (name in CONVERTED), (inspect.stdout, convert.stderr)
    if name in REFUSED:
        assert REFUSED[name] in report["unreadable"]
    else:
        assert report["disk"]["virtual_size"] == json.loads(run_boxpack("inspect", tmp_path / "out.box", "--json").stdout)["disk"]["virtual_size"]
