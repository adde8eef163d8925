"""Hostile and unlucky input: bounded time and memory, truthful errors, nothing lost or clobbered."""

from __future__ import annotations

import gzip
import json
import lzma
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
from conftest import MIB, ROOT, extract, make_disk, run_boxpack, write_box, writing

RUBY = subprocess.run(["which", "ruby"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_disk.make(tmp_path_factory.mktemp("h") / "disk.img", size=96 * MIB, data=4 * MIB)


def _header(name: str, size_field: bytes, kind: bytes = b"0") -> bytes:
    """A ustar header with a raw size field (any bytes), its checksum made right."""
    h = bytearray(512)
    h[0 : len(name)] = name.encode()
    h[100:108] = b"0000644\0"
    h[108:116] = h[116:124] = b"0000000\0"
    h[124:136] = size_field.ljust(12, b"\0")[:12]
    h[136:148] = b"00000000000\0"
    h[156:157] = kind
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[148:156] = b" " * 8
    h[148:156] = f"{sum(h):06o}\0 ".encode()
    return bytes(h)


def _convert(src: Path, tmp: Path, **kw) -> subprocess.CompletedProcess:
    return run_boxpack(src, "--provider", "virtualbox", "-o", tmp / "out.box", check=False, timeout=60, **kw)


def _one_line_error(proc: subprocess.CompletedProcess, text: str, code: int = 1) -> None:
    err = proc.stderr.decode()
    assert proc.returncode == code and err.count("\n") == 1 and text in err, (proc.returncode, err)


def _verify(path: Path, *args: str) -> tuple[int, dict]:
    proc = run_boxpack("verify", path, "--json", *args, check=False, timeout=60)
    assert b"Traceback" not in proc.stderr
    return proc.returncode, json.loads(proc.stdout) if proc.stdout else {}


# --- silent data loss -------------------------------------------------------------------------


def _stream_vmdk(raw: Path, tmp: Path) -> bytes:
    out = tmp / "s.vmdk"
    subprocess.run(["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", str(raw), str(out)], check=True)
    return out.read_bytes()


def test_vmdk_cut_after_a_grain_is_refused(tmp_path: Path, raw: Path) -> None:
    image = _stream_vmdk(raw, tmp_path)
    lba, size = struct.unpack_from("<QI", image, 128 * 512)
    cut = tmp_path / "cut.vmdk"
    cut.write_bytes(image[: -(-(128 * 512 + 12 + size) // 512) * 512])  # header, descriptor, one grain
    _one_line_error(_convert(cut, tmp_path), "cut short")
    box = write_box(tmp_path / "cut-virtualbox.box", [("metadata.json", b'{"provider": "virtualbox"}'), ("box-disk001.vmdk", cut.read_bytes())])
    code, report = _verify(box)
    assert code == 1 and "vmdk-truncated" in {f["code"] for f in report["findings"]}
    _one_line_error(_convert(box, tmp_path), "cut short")


def test_vmdk_with_a_bogus_overhead_does_not_read_as_zeros(tmp_path: Path, raw: Path) -> None:
    image = bytearray(_stream_vmdk(raw, tmp_path))
    struct.pack_into("<Q", image, 64, len(image) // 512 + 100)
    bad = tmp_path / "bad.vmdk"
    bad.write_bytes(image)
    _one_line_error(_convert(bad, tmp_path), "no end-of-stream marker")


@pytest.mark.parametrize("size_field", [b"00000000000\0", b"-0000000001\0", b"0000000zz0\0"], ids=["empty", "negative", "not-a-number"])
def test_box_with_an_empty_or_broken_disk_member_is_refused(tmp_path: Path, size_field: bytes) -> None:
    meta = b'{"provider": "libvirt", "format": "qcow2", "virtual_size": 1}'
    data = _header("metadata.json", f"{len(meta):011o}\0".encode()) + meta.ljust(512, b"\0")
    data += _header("box.img", size_field) + bytes(1024)
    src = tmp_path / "src.box"
    src.write_bytes(gzip.compress(data))
    proc = _convert(src, tmp_path)
    assert proc.returncode == 1 and proc.stderr.count(b"\n") == 1, proc.stderr
    assert not (tmp_path / "out.box").exists()


# --- unbounded memory or time on tiny inputs ----------------------------------------------------


@pytest.mark.parametrize("claim", ["tib", "pax"])
def test_member_claiming_a_terabyte_ends_quickly(tmp_path: Path, claim: str) -> None:
    if claim == "tib":
        data = _header("box.img", b"\x80" + (1 << 40).to_bytes(11, "big"))
    else:
        record = b"30 size=100000000000000000000000\n"
        data = _header("././@PaxHeader", f"{len(record):011o}\0".encode(), b"x") + record.ljust(512, b"\0") + _header("box.img", b"00000000000\0")
    box = tmp_path / "tiny.box"
    box.write_bytes(gzip.compress(data))
    started = time.monotonic()
    code, _ = _verify(box)
    assert code == 1
    proc = run_boxpack("inspect", box, check=False, timeout=60)
    assert proc.returncode == 1 and b"Traceback" not in proc.stderr
    assert _convert(box, tmp_path).returncode == 1
    assert time.monotonic() - started < 30


def test_many_empty_members_are_stopped(tmp_path: Path) -> None:
    data = b"".join(_header(f"f{i}", b"00000000000\0") for i in range(10_050))
    box = tmp_path / "many.box"
    box.write_bytes(gzip.compress(data + bytes(1024)))
    code, report = _verify(box)
    assert code == 1 and "more than 10000 files" in report["unreadable"]
    _one_line_error(_convert(box, tmp_path), "more than 10000 files")


def test_huge_long_name_is_not_read_into_memory(tmp_path: Path) -> None:
    box = tmp_path / "longname.box"
    box.write_bytes(gzip.compress(_header("././@LongLink", b"\x80" + (2 << 30).to_bytes(11, "big"), b"L") + bytes(4096)))
    code, report = _verify(box)
    assert code == 1 and "extended header" in report["unreadable"]


def _qcow2(raw: Path, tmp: Path) -> bytearray:
    out = tmp / "q.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(out)], check=True)
    return bytearray(out.read_bytes())


def _peak_mib(*args: str | Path) -> tuple[int, float, str]:
    """Run boxpack in a child; (exit code, its own peak RSS in MiB, stdout)."""
    code = (
        "import sys; from boxpack.cli import main; rc = main(sys.argv[1:]); sys.stdout.flush(); "
        "hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')); "
        "print(f'HWM {hwm // 1024} {rc}')"
    )
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stdout.strip().splitlines()[-1].split()
    return int(last[2]), int(last[1]), proc.stdout


def test_qcow2_l1_table_of_bad_entries_is_bounded(tmp_path: Path, raw: Path) -> None:
    """8M L1 entries of 0xff in a 64 KiB box: a few findings, little memory."""
    image = _qcow2(raw, tmp_path)
    head = bytearray(image[:65536])
    struct.pack_into(">I", head, 36, 8 * 1024 * 1024)  # l1_size
    struct.pack_into(">Q", head, 40, 65536)  # l1_table_offset
    bad = bytes(head) + b"\xff" * (64 * MIB)
    box = write_box(tmp_path / "l1.box", [("metadata.json", b'{"provider": "libvirt", "format": "qcow2", "virtual_size": 1}'), ("box.img", bad)])
    assert box.stat().st_size < 200_000
    rc, peak, out = _peak_mib("verify", box, "--json")
    assert rc == 1 and peak < 400, peak
    report = json.loads(out[: out.rindex("HWM")])
    assert len(report["findings"]) < 50


def test_qcow2_l1_entries_naming_one_l2_table_are_bounded(tmp_path: Path, raw: Path) -> None:
    image = _qcow2(raw, tmp_path)
    l1 = struct.unpack_from(">Q", image, 40)[0]
    first = struct.unpack_from(">Q", image, l1)[0]
    struct.pack_into(">I", image, 36, 2048)
    image[l1 : l1 + 2048 * 8] = struct.pack(">Q", first) * 2048
    bad = tmp_path / "shared.qcow2"
    bad.write_bytes(image)
    started = time.monotonic()
    rc, peak, _ = _peak_mib("inspect", bad, "--json")
    assert rc in (0, 1) and peak < 400 and time.monotonic() - started < 60


def test_vmdk_grain_that_inflates_to_gigabytes_is_bounded(tmp_path: Path, raw: Path) -> None:
    """The first grain replaced by 100 KiB that inflate to 100 MiB, then the end-of-stream marker."""
    image = _stream_vmdk(raw, tmp_path)
    bomb = zlib.compress(bytes(100 * MIB), 9)
    assert len(bomb) < 128 * 1024
    record = struct.pack("<QI", 0, len(bomb)) + bomb
    image = image[: 128 * 512] + record + bytes(-len(record) % 512) + bytes(512)
    bad = tmp_path / "bomb.vmdk"
    bad.write_bytes(image)
    rc, peak, _ = _peak_mib(bad, "--provider", "libvirt", "-o", tmp_path / "x.box", "-q")
    assert rc == 1 and peak < 200, peak


def test_monolithic_sparse_with_a_terabyte_grain_directory_is_refused(tmp_path: Path, raw: Path) -> None:
    out = tmp_path / "m.vmdk"
    subprocess.run(["qemu-img", "convert", "-O", "vmdk", str(raw), str(out)], check=True)
    image = bytearray(out.read_bytes())
    struct.pack_into("<Q", image, 12, 1 << 62)  # capacity in sectors
    out.write_bytes(image)
    _one_line_error(_convert(out, tmp_path), "not a real disk")


@pytest.mark.parametrize("field,value", [(84, 256 * MIB), (72, 1 << 60)], ids=["entry-size-256MiB", "entries-lba-2^60"])
def test_hostile_gpt_is_ignored_not_allocated(tmp_path: Path, raw: Path, field: int, value: int) -> None:
    disk = tmp_path / "gpt.img"
    image = bytearray(raw.read_bytes())
    fmt = "<I" if field == 84 else "<Q"
    struct.pack_into(fmt, image, 512 + field, value)
    crc_area = bytearray(image[512 : 512 + 92])
    crc_area[16:20] = bytes(4)
    struct.pack_into("<I", image, 512 + 16, zlib.crc32(crc_area))
    disk.write_bytes(image)
    rc, peak, _ = _peak_mib(disk, "--provider", "libvirt", "-o", tmp_path / "x.box", "-q")
    assert rc == 0 and peak < 200, peak


# --- clobbering and leftovers -------------------------------------------------------------------


def test_fifo_output_is_written_as_a_pipe_not_replaced(tmp_path: Path, raw: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = bytearray()
    reader = threading.Thread(target=lambda: got.extend(open(fifo, "rb").read()))
    reader.start()
    run_boxpack(raw, "--provider", "libvirt", "-o", fifo, "--force", timeout=60)
    reader.join(60)
    assert fifo.is_fifo() and gzip.decompress(bytes(got))[257:262] == b"ustar"


def test_planted_symlinks_are_not_followed(tmp_path: Path, raw: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    for name in (".a.box.sha256.tmp", ".a.box.tmp", ".boxpack-vmdk-"):
        (out / name).symlink_to(victim)
    run_boxpack(raw, "--provider", "libvirt", "-o", out / "a.box", "--checksum-file")
    assert victim.read_text() == "keep"
    assert (out / "a.box.sha256").read_text().endswith("  a.box\n")


def test_catalog_symlink_stays_a_symlink(tmp_path: Path, raw: Path) -> None:
    real = tmp_path / "real" / "catalog.json"
    real.parent.mkdir()
    link = tmp_path / "catalog.json"
    link.symlink_to(real)
    run_boxpack(raw, "--provider", "libvirt", "-o", tmp_path / "b.box", "--catalog", link, "--name", "o/b",
                "--box-version", "1.0.0", "--url-base", "https://x.org/")
    assert link.is_symlink() and json.loads(real.read_text())["name"] == "o/b"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_termination_leaves_nothing_behind(tmp_path: Path, sig: int) -> None:
    disk = make_disk.make(tmp_path / "big.img", data=160 * MIB)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "boxpack", str(disk), "--provider", "libvirt", "-o", str(out / "a.box"),
                             "--level", "12", "--threads", "1"], stderr=subprocess.PIPE, cwd=ROOT)
    while proc.poll() is None and not writing(proc.pid, out):  # the box being written (unnamed until placed)
        pass
    proc.send_signal(sig)
    err = proc.communicate(timeout=60)[1].decode()
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    "args,text",
    [
        (("--name", "org/my box"), "box name"),
        (("--name", "org/box\n"), "box name"),
        (("--box-version", "v1"), "RubyGems version"),
        (("--url-base", "boxes/"), "not absolute"),
    ],
    ids=["space", "newline", "version", "relative"],
)
def test_catalog_arguments_are_checked_before_any_box_is_written(tmp_path: Path, raw: Path, args: tuple, text: str) -> None:
    base = {"--name": "org/box", "--box-version": "1.0.0", "--url-base": "https://x.org/"}
    base.update(dict(zip(args[::2], args[1::2])))
    out = tmp_path / "out"
    proc = run_boxpack(raw, "--provider", "libvirt", "--provider", "virtualbox", "-o", f"{out}/",
                       "--catalog", tmp_path / "c.json", *[x for kv in base.items() for x in kv], check=False)
    _one_line_error(proc, text, code=2)
    assert not out.exists() or list(out.iterdir()) == []


def test_catalog_urls_are_percent_encoded(tmp_path: Path, raw: Path) -> None:
    disk = tmp_path / "my disk#1.img"
    disk.symlink_to(raw)
    cat = tmp_path / "c.json"
    run_boxpack(disk, "--provider", "libvirt", "-o", f"{tmp_path}/", "--catalog", cat, "--name", "o/b",
                "--box-version", "1.0.0", "--url-base", "https://x.org/boxes")
    url = json.loads(cat.read_text())["versions"][0]["providers"][0]["url"]
    assert url == "https://x.org/boxes/my%20disk%231-libvirt.box"


# --- user errors get exit 1, not an internal error ------------------------------------------------


def test_long_output_name_works(tmp_path: Path, raw: Path) -> None:
    name = "b" * 250 + ".box"
    run_boxpack(raw, "--provider", "virtualbox", "-o", tmp_path / name)
    assert (tmp_path / name).is_file()


def test_non_utf8_include_name_is_refused_before_the_scan(tmp_path: Path, raw: Path) -> None:
    extra = Path(os.fsdecode(bytes(tmp_path) + b"/extra-\xff.txt"))
    extra.write_text("x")
    _one_line_error(run_boxpack(raw, "--provider", "libvirt", "-o", tmp_path / "a.box", "--include", extra, check=False), "UTF-8", code=2)


@pytest.mark.parametrize("meta", [b"[" * 100_000, b'"a string"'], ids=["deep", "not-an-object"])
def test_bad_metadata_in_a_source_box_is_a_user_error(tmp_path: Path, raw: Path, meta: bytes) -> None:
    src = tmp_path / "src.box"
    run_boxpack(raw, "--provider", "libvirt", "-o", src)
    d = extract(src, tmp_path / "x")
    box = write_box(tmp_path / "bad.box", [("metadata.json", meta), ("box.img", (d / "box.img").read_bytes())])
    _one_line_error(_convert(box, tmp_path), "metadata.json")
    code, report = _verify(box)
    assert code == 1 and "metadata-invalid" in {f["code"] for f in report["findings"]}


def test_ovf_with_words_for_numbers_is_a_finding(tmp_path: Path, raw: Path) -> None:
    src = tmp_path / "src.box"
    run_boxpack(raw, "--provider", "virtualbox", "-o", src)
    d = extract(src, tmp_path / "x")
    ovf = (d / "box.ovf").read_text().replace("<rasd:VirtualQuantity>2</rasd:VirtualQuantity>", "<rasd:VirtualQuantity>two</rasd:VirtualQuantity>")
    box = write_box(tmp_path / "bad.box", [(p.name, (d / p.name).read_bytes()) for p in d.iterdir() if p.name != "box.ovf"] + [("box.ovf", ovf.encode())])
    code, report = _verify(box)
    assert code == 1 and "ovf-rule" in {f["code"] for f in report["findings"]}
    garbage = write_box(tmp_path / "garbage.box", [(p.name, (d / p.name).read_bytes()) for p in d.iterdir() if p.name != "box.ovf"] + [("box.ovf", b"<not xml")])
    code, report = _verify(garbage)
    assert code == 1 and "ovf-xml" in {f["code"] for f in report["findings"]}


@pytest.mark.parametrize("text", ["[" * 100_000, "{\"name\": \"\xe9\"}"], ids=["deep", "latin-1"])
def test_hand_edited_catalog_is_a_user_error(tmp_path: Path, raw: Path, text: str) -> None:
    cat = tmp_path / "c.json"
    cat.write_bytes(text.encode("latin-1"))
    proc = run_boxpack("catalog", "show", cat, check=False)
    _one_line_error(proc, "left as it is")


def test_verify_to_a_full_stdout_is_not_an_internal_error(tmp_path: Path, raw: Path) -> None:
    box = tmp_path / "b.box"
    run_boxpack(raw, "--provider", "libvirt", "-o", box)
    with open("/dev/full", "wb") as full:
        proc = run_boxpack("inspect", box, stdout=full, check=False)
    _one_line_error(proc, "cannot write the report", code=3)


# --- verify's security ---------------------------------------------------------------------------


def test_libvirt_disk_paths_outside_the_box_are_flagged(tmp_path: Path, raw: Path) -> None:
    src = tmp_path / "src.box"
    run_boxpack(raw, "--provider", "libvirt", "-o", src)
    d = extract(src, tmp_path / "x")
    meta = b'{"provider": "libvirt", "disks": [{"path": "../../etc/passwd"}]}'
    box = write_box(tmp_path / "bad.box", [("metadata.json", meta), ("box.img", (d / "box.img").read_bytes())])
    code, report = _verify(box)
    assert code == 1 and "unsafe-path" in {f["code"] for f in report["findings"]}


def test_escape_sequences_in_member_names_are_not_printed_raw(tmp_path: Path) -> None:
    box = write_box(tmp_path / "esc.box", [("\x1b]0;owned\x07evil", b"x"), ("metadata.json", b'{"provider": "x"}')])
    out = run_boxpack("inspect", box, check=False).stdout + run_boxpack("verify", box, check=False).stdout
    assert b"\x1b" not in out and b"\\x1b" in out


@pytest.mark.skipif(not RUBY, reason="needs ruby")
def test_vagrantfile_that_is_not_ruby_is_refused_and_flagged(tmp_path: Path, raw: Path) -> None:
    bad = tmp_path / "Vagrantfile"
    bad.write_text('Vagrant.configure("2") do |config|\n  config.vm.box = \n')
    _one_line_error(run_boxpack(raw, "--provider", "libvirt", "-o", tmp_path / "a.box", "--vagrantfile", bad, check=False), "not valid Ruby", code=2)
    src = tmp_path / "src.box"
    run_boxpack(raw, "--provider", "libvirt", "-o", src)
    d = extract(src, tmp_path / "x")
    box = write_box(tmp_path / "v.box", [(p.name, (d / p.name).read_bytes()) for p in d.iterdir() if p.name != "Vagrantfile"] + [("Vagrantfile", b"\x00\xff binary")])
    code, report = _verify(box)
    assert code == 1 and "vagrantfile-syntax" in {f["code"] for f in report["findings"]}


# --- fuzzing ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_fuzzed_inputs_stay_bounded(tmp_path: Path) -> None:
    """Thousands of mutated boxes and disks: no exception but BoxpackError, exits 0/1/2, under 60 s and 400 MiB each."""
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    disk = make_disk.make(tmp_path / "s.img", size=8 * MIB, data=256 * 1024)
    for provider in ("libvirt", "virtualbox", "vmware_desktop", "hyperv"):  # .vmx and box.xml members too
        run_boxpack(disk, "--provider", provider, "--compression", "none", "-o", seeds / f"{provider}.box")
    run_boxpack(disk, disk, "--provider", "libvirt", "--compression", "none", "-o", seeds / "two-disks.box")  # a disks list
    for fmt, opts in (("qcow2", ()), ("vmdk", ("-o", "subformat=streamOptimized")), ("vmdk", ()), ("vpc", ()), ("vhdx", ()), ("vdi", ())):
        name = f"disk-{len(list(seeds.iterdir()))}.{fmt}"
        subprocess.run(["qemu-img", "convert", "-O", fmt, *opts, str(disk), str(seeds / name)], check=True)
    from boxpack.sources.zstd import zstd

    (seeds / "disk.raw.zst").write_bytes(zstd.compress(disk.read_bytes()))
    (seeds / "disk.raw.xz").write_bytes(lzma.compress(disk.read_bytes(), preset=0) + bytes(4))
    (seeds / "disk.raw.gz").write_bytes(gzip.compress(disk.read_bytes(), 1))
    (seeds / "mkosi-config.json").write_text(json.dumps({"Format": "disk", "Output": "img", "OutputExtension": "raw",
                                                         "CompressOutput": "none", "Architecture": "x86-64", "ImageVersion": "1.0"}))
    examples = int(os.environ.get("BOXPACK_FUZZ_EXAMPLES", "3000"))
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "fuzz_boxes.py"), str(seeds), str(examples)],
                          capture_output=True, text=True, timeout=3000, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    words = proc.stdout.split()
    peak, slowest = int(words[words.index("peak_mib") + 1]), float(words[words.index("slowest_s") + 1])
    assert peak < 400 and slowest < 60, proc.stdout


@pytest.mark.slow
def test_verify_of_a_qemu_layout_box_keeps_memory_flat(tmp_path: Path) -> None:
    """qemu-img puts each L2 table after the data before it: the checker skips that data without keeping it."""
    disk = tmp_path / "d.img"
    with open(disk, "wb") as f:
        f.truncate(1536 * MIB)
        for offset in (0, 600 * MIB, 1200 * MIB):
            f.seek(offset)
            f.write(bytes(range(1, 256)) * (200 * MIB // 255))
    d = tmp_path / "box"
    d.mkdir()
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(disk), str(d / "box.img")], check=True)
    (d / "metadata.json").write_text('{"provider": "libvirt", "format": "qcow2", "virtual_size": 2}')
    box = tmp_path / "q.box"
    subprocess.run(["tar", "-cf", str(box), "-C", str(d), "metadata.json", "box.img"], check=True)
    rc, peak, _ = _peak_mib("verify", box)
    assert rc == 0 and peak < 150, peak
