"""Any input to any provider: qcow2, VMDK and boxes as sources, checked against the raw original."""

from __future__ import annotations

import io
import json
import struct
import subprocess
from pathlib import Path

import pytest
from conftest import MIB, extract, make_disk, qemu_compare, run_boxpack

from boxpack.errors import BoxpackError
from boxpack.disk.bytesource import StreamBytes

DISK_IN_BOX = {"libvirt": ("box.img", "qcow2"), "virtualbox": ("box-disk001.vmdk", "vmdk")}


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GPT disk whose size is a multiple of 64 KiB, with data scattered over it."""
    return make_disk.make(tmp_path_factory.mktemp("src") / "src.img", size=320 * MIB, data=12 * MIB)


def qemu_convert(raw: Path, out: Path, fmt: str, *opts: str) -> Path:
    subprocess.run(["qemu-img", "convert", "-O", fmt, *opts, str(raw), str(out)], check=True)
    return out


INPUTS = {
    "qcow2": ("qcow2",),
    "qcow2-compressed": ("qcow2", "-c"),
    "qcow2-v2": ("qcow2", "-o", "compat=0.10"),
    "vmdk-monolithicSparse": ("vmdk",),
    "vmdk-streamOptimized": ("vmdk", "-o", "subformat=streamOptimized"),
}


@pytest.mark.first_case_quick
@pytest.mark.parametrize("kind", INPUTS)
@pytest.mark.parametrize("provider", ["libvirt", "virtualbox"])
def test_qemu_made_images_convert_exactly(tmp_path: Path, raw: Path, kind: str, provider: str) -> None:
    fmt, *opts = INPUTS[kind]
    image = qemu_convert(raw, tmp_path / f"in.{fmt}", fmt, *opts)
    box = tmp_path / "out.box"
    run_boxpack(image, "--provider", provider, "-o", box)
    name, out_fmt = DISK_IN_BOX[provider]
    qemu_compare(extract(box, tmp_path / "x") / name, out_fmt, raw)


@pytest.mark.first_case_quick
@pytest.mark.parametrize("source_provider", ["libvirt", "virtualbox"])
@pytest.mark.parametrize("provider", ["libvirt", "virtualbox"])
def test_boxes_as_sources(tmp_path: Path, raw: Path, source_provider: str, provider: str) -> None:
    src_box = tmp_path / f"src-{source_provider}.box"
    run_boxpack(raw, "--provider", source_provider, "-o", src_box, "--arch", "arm64")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = run_boxpack(src_box, "--provider", provider, "-o", out_dir)
    out = out_dir / f"src-{provider}.box"  # the source box's provider suffix is dropped
    assert out.exists(), proc.stderr
    d = extract(out, tmp_path / "x")
    name, fmt = DISK_IN_BOX[provider]
    qemu_compare(d / name, fmt, raw)
    assert json.loads((d / "metadata.json").read_text())["architecture"] == "arm64"  # carried over
    assert "boxpack" in (d / "Vagrantfile").read_text()  # the target provider's default, not the source's


@pytest.mark.first_case_quick
@pytest.mark.parametrize("unaligned", [False, True], ids=["64k-aligned", "sector-aligned"])
def test_libvirt_to_virtualbox_and_back_is_identical(tmp_path: Path, raw: Path, unaligned: bool) -> None:
    """The same qcow2 comes back, even for a disk whose size is not a whole number of 64 KiB grains."""
    if unaligned:
        odd = tmp_path / "odd.img"
        odd.write_bytes(raw.read_bytes()[: 300 * MIB + 7 * 512])
        raw = odd
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    first = tmp_path / "a-libvirt.box"
    run_boxpack(raw, "--provider", "libvirt", "-o", first, env=env)
    vbox = tmp_path / "b-virtualbox.box"
    run_boxpack(first, "--provider", "virtualbox", "-o", vbox, env=env)
    back = tmp_path / "c-libvirt.box"
    run_boxpack(vbox, "--provider", "libvirt", "-o", back, env=env)
    a, c = extract(first, tmp_path / "a") / "box.img", extract(back, tmp_path / "c") / "box.img"
    assert a.read_bytes() == c.read_bytes()  # the same qcow2, byte for byte
    qemu_compare(c, "qcow2", raw)


def test_output_cannot_be_the_source(tmp_path: Path, raw: Path) -> None:
    box = tmp_path / "x-libvirt.box"
    run_boxpack(raw, "--provider", "libvirt", "-o", box)
    proc = run_boxpack(box, "--provider", "libvirt", "-o", tmp_path, "--force", check=False)
    assert proc.returncode == 2 and "is the source itself" in proc.stderr.decode()


def test_plain_tar_box_with_dot_slash_names(tmp_path: Path, raw: Path) -> None:
    """A box the way `vagrant package` and create_box.sh make it: ./ names, other member order."""
    d = tmp_path / "pkg"
    d.mkdir()
    qemu_convert(raw, d / "box.img", "qcow2", "-c")
    (d / "metadata.json").write_text('{"provider": "libvirt", "format": "qcow2", "virtual_size": 1}')
    (d / "Vagrantfile").write_text("")
    box = tmp_path / "pkg.box"
    subprocess.run(["tar", "-cf", str(box), "-C", str(d), "./Vagrantfile", "./box.img", "./metadata.json"], check=True)
    run_boxpack(box, "--provider", "virtualbox", "-o", tmp_path / "out.box")
    qemu_compare(extract(tmp_path / "out.box", tmp_path / "x") / "box-disk001.vmdk", "vmdk", raw)


# --- corrupt and unsupported inputs: one line, exit 1 -----------------------------------------


def _fails(path: Path, text: str) -> None:
    proc = run_boxpack(path, "--provider", "libvirt", "-o", path.with_suffix(".box"), check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and err.count("\n") == 1 and text in err, err
    assert not path.with_suffix(".box").exists()


def _be64(data: bytes, offset: int) -> int:
    return struct.unpack_from(">Q", data, offset)[0]


def test_l2_table_past_end_of_file(tmp_path: Path, raw: Path) -> None:
    image = bytearray(qemu_convert(raw, tmp_path / "q.qcow2", "qcow2").read_bytes())
    l1 = _be64(image, 40)
    struct.pack_into(">Q", image, l1, (1 << 63) | (len(image) // 65536 + 10) * 65536)
    bad = tmp_path / "bad.qcow2"
    bad.write_bytes(image)
    _fails(bad, "past the end of the file")


def test_compressed_cluster_that_does_not_inflate(tmp_path: Path, raw: Path) -> None:
    image = bytearray(qemu_convert(raw, tmp_path / "q.qcow2", "qcow2", "-c").read_bytes())
    l2 = _be64(image, _be64(image, 40)) & 0x00FFFFFFFFFFFE00
    for i in range(8192):
        e = _be64(image, l2 + 8 * i)
        if e & (1 << 62):
            host = e & ((1 << 54) - 1)
            image[host : host + 16] = b"\xff" * 16  # deflate block type 3: invalid
            break
    else:
        pytest.fail("no compressed cluster found")
    bad = tmp_path / "bad.qcow2"
    bad.write_bytes(image)
    _fails(bad, "does not inflate")


def test_grain_marker_with_a_bad_lba(tmp_path: Path, raw: Path) -> None:
    image = bytearray(qemu_convert(raw, tmp_path / "s.vmdk", "vmdk", "-o", "subformat=streamOptimized").read_bytes())
    overhead = struct.unpack_from("<Q", image, 64)[0]
    struct.pack_into("<Q", image, overhead * 512, 1 << 40)
    bad = tmp_path / "bad.vmdk"
    bad.write_bytes(image)
    _fails(bad, "bad LBA")


def test_backing_file_is_refused(tmp_path: Path, raw: Path) -> None:
    base = qemu_convert(raw, tmp_path / "base.qcow2", "qcow2")
    top = tmp_path / "top.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(top)], check=True)
    _fails(top, "backing file")


def test_encrypted_and_zstd_flags_are_refused(tmp_path: Path, raw: Path) -> None:
    image = bytearray(qemu_convert(raw, tmp_path / "q.qcow2", "qcow2").read_bytes())
    crypt = bytearray(image)
    struct.pack_into(">I", crypt, 32, 2)
    (tmp_path / "crypt.qcow2").write_bytes(crypt)
    _fails(tmp_path / "crypt.qcow2", "encrypted")
    zstd = bytearray(image)
    struct.pack_into(">Q", zstd, 72, 1 << 3)
    zstd[104] = 1
    (tmp_path / "zstd.qcow2").write_bytes(zstd)
    _fails(tmp_path / "zstd.qcow2", "zstd")


def test_multi_extent_vmdk_is_refused(tmp_path: Path, raw: Path) -> None:
    image = qemu_convert(raw, tmp_path / "split.vmdk", "vmdk", "-o", "subformat=twoGbMaxExtentSparse")
    _fails(image, "not supported")


# --- containers boxpack cannot read yet: refused by name, never packed as raw ---------------------

QEMU_CONTAINERS = {
    "qed": (("qed",), "QED"),
}


@pytest.mark.parametrize("kind", QEMU_CONTAINERS)
def test_qemu_made_containers_are_refused_by_name(tmp_path: Path, raw: Path, kind: str) -> None:
    (fmt, *opts), name = QEMU_CONTAINERS[kind]
    _fails(qemu_convert(raw, tmp_path / f"in.{fmt}", fmt, *opts), f"is a {name}")


# Headers qemu-img cannot write here (LUKS needs a key derivation qemu-img times with getrusage,
# which this sandbox refuses), made from the format's own reader's probe (qemu block/<fmt>.c).
HAND_MADE = {
    "luks": (lambda: b"LUKS\xba\xbe\x00\x01".ljust(MIB, b"\0"), "LUKS"),
    "bochs": (lambda: b"Bochs Virtual HD Image\0".ljust(512, b"\0") + bytes(MIB), "bochs"),
    "cloop": (lambda: b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n".ljust(MIB, b"\0"), "cloop"),
    "dmg": (lambda: bytes(MIB) + b"koly".ljust(512, b"\0"), "DMG"),
    "cowd": (lambda: b"COWD".ljust(MIB, b"\0"), "COWD"),
    "sesparse": (lambda: (0xCAFEBABE).to_bytes(8, "little").ljust(MIB, b"\0"), "through the VM's .vmdk descriptor"),
    # ASIF's header as huven/asif-format describes it: 'shdw', version 1, a 512-byte header (big-endian)
    "asif": (lambda: (b"shdw" + (1).to_bytes(4, "big") + (512).to_bytes(4, "big")).ljust(MIB, b"\0"), "ASIF"),
}


@pytest.mark.parametrize("kind", HAND_MADE)
def test_other_containers_are_refused_by_name(tmp_path: Path, kind: str) -> None:
    make, name = HAND_MADE[kind]
    image = tmp_path / f"in.{kind}"
    image.write_bytes(make())
    _fails(image, name)


# --- boxpack's own layout streams from a box ------------------------------------------------------


@pytest.fixture(scope="module")
def spread(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data in three 512 MiB ranges (three L2 tables), more than the stream's look-back window in the first."""
    path = tmp_path_factory.mktemp("spread") / "spread.img"
    with open(path, "wb") as f:
        f.truncate(1536 * MIB)
        for offset in (0, 600 * MIB, 1300 * MIB):
            f.seek(offset)
            f.write(bytes(range(256)) * (24 * MIB // 256))
    return path


def test_own_boxes_with_several_l2_tables_convert_both_ways(tmp_path: Path, spread: Path) -> None:
    libvirt = tmp_path / "a-libvirt.box"
    run_boxpack(spread, "--provider", "libvirt", "-o", libvirt)
    vbox = tmp_path / "b-virtualbox.box"
    run_boxpack(libvirt, "--provider", "virtualbox", "-o", vbox)
    qemu_compare(extract(vbox, tmp_path / "b") / "box-disk001.vmdk", "vmdk", spread)
    back = tmp_path / "c-libvirt.box"
    run_boxpack(vbox, "--provider", "libvirt", "-o", back)
    assert (extract(back, tmp_path / "c") / "box.img").read_bytes() == (extract(libvirt, tmp_path / "a") / "box.img").read_bytes()


def test_output_directory_ending_in_a_slash_is_created(tmp_path: Path, raw: Path) -> None:
    run_boxpack(raw, "--provider", "libvirt", "-o", f"{tmp_path}/new/boxes/")
    assert (tmp_path / "new" / "boxes" / "src-libvirt.box").is_file()
    run_boxpack(raw, "--provider", "libvirt", "--provider", "virtualbox", "-o", f"{tmp_path}/two/")
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["src-libvirt.box", "src-virtualbox.box"]


def test_a_box_source_is_decompressed_once(tmp_path: Path, raw: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once to find, open and scan the disk (and read what follows it): the qcow2 writer's data is the pieces
    compressed during that scan (disk/pieces.py). Only a box written without gzip reads it again."""
    import boxpack
    from boxpack.sources import box as boxfile

    src = tmp_path / "src-virtualbox.box"
    run_boxpack(raw, "--provider", "virtualbox", "-o", src)
    opened = []
    real = boxfile.open_tar
    monkeypatch.setattr(boxfile, "open_tar", lambda path: opened.append(path) or real(path))
    boxpack.pack(src, boxpack.PackOptions(["libvirt", "virtualbox"], f"{tmp_path}/out/"))
    assert len(opened) == 1
    opened.clear()
    boxpack.pack(src, boxpack.PackOptions(["virtualbox"], tmp_path / "vb.box"))
    assert len(opened) == 1
    opened.clear()
    boxpack.pack(src, boxpack.PackOptions(["libvirt"], tmp_path / "plain.box", compression="none"))
    assert len(opened) == 2


def test_a_stream_read_again_takes_at_most_three_passes() -> None:
    """A layout whose tables come after its data takes a second pass over the box; one that jumps back and
    forth cannot make the box be read again and again: a third jump back is refused by name."""
    data = bytes(range(256)) * (64 * 1024)  # 16 MiB, more than the look-back window
    opened: list[io.BytesIO] = []

    def reopen() -> tuple[io.BytesIO, io.BytesIO]:
        opened.append(io.BytesIO(data))
        return opened[-1], opened[-1]

    s = StreamBytes(io.BytesIO(data), len(data), "box:box.img", reopen=reopen)
    end = len(data) - 512
    for passes in (1, 2, 3):
        assert s.pread(end, 512) == data[end:]
        assert s.passes == passes
        if passes < 3:
            assert s.pread(1000, 16) == data[1000:1016]
    with pytest.raises(BoxpackError, match="needs random access .* after 3 passes over the box"):
        s.pread(0, 16)
    assert len(opened) == 2
    assert StreamBytes(io.BytesIO(data), len(data), "x").pread(0, 4) == data[:4]
