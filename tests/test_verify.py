"""inspect and verify: boxes made by other tools, a corpus of broken boxes, hostile archives, fuzzing."""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import subprocess
import tarfile
import zlib
from pathlib import Path

import pytest
from conftest import MIB, extract, make_disk, run_boxpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boxpack.inspect import verify
from boxpack.descriptors import ovf

VMDK = "box-disk001.vmdk"


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_disk.make(tmp_path_factory.mktemp("v") / "disk.img", size=192 * MIB, data=6 * MIB)


def _codes(box: Path, *args: str) -> tuple[int, set[str]]:
    proc = run_boxpack("verify", box, "--json", *args, check=False)
    report = json.loads(proc.stdout)
    assert proc.returncode == report["exit_code"]
    return proc.returncode, {f["code"] for f in report["findings"]}


def _tar(path: Path, files: dict[str, bytes | Path], gz: bool = True, prefix: str = "") -> Path:
    """A box the way shell pipelines write one."""
    with tarfile.open(path, "w:gz" if gz else "w") as t:
        for name, content in files.items():
            data = content.read_bytes() if isinstance(content, Path) else content
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def _qemu(raw: Path, out: Path, fmt: str, *opts: str) -> Path:
    subprocess.run(["qemu-img", "convert", "-O", fmt, *opts, str(raw), str(out)], check=True)
    return out


def _libvirt_meta(size: int) -> bytes:
    return json.dumps({"provider": "libvirt", "format": "qcow2", "virtual_size": -(-size // 1024**3)}).encode()


def _ovf_for(vmdk_path: Path, capacity: int, href: str = VMDK) -> bytes:
    return ovf.build(ovf.Hardware("vm"), [ovf.DiskFile(href, vmdk_path.stat().st_size, capacity, "01234567-89ab-cdef-0123-456789abcdef")])


# --- boxes as other tools make them --------------------------------------------------------


@pytest.mark.parametrize("compressed", [False, True])
def test_shell_made_libvirt_box_inspects_and_verifies(tmp_path: Path, raw: Path, compressed: bool) -> None:
    img = _qemu(raw, tmp_path / "box.img", "qcow2", *(["-c"] if compressed else []))
    box = _tar(tmp_path / "x.box", {"metadata.json": _libvirt_meta(raw.stat().st_size), "Vagrantfile": b"", "box.img": img}, prefix="./")
    code, codes = _codes(box)
    assert code == 0, codes
    report = json.loads(run_boxpack("inspect", box, "--json").stdout)
    assert report["compression"] == "gzip" and report["disk"]["format"] == "qcow2 v3"
    assert report["disk"]["virtual_size"] == raw.stat().st_size and report["disk"]["cluster_size"] == 65536
    assert (report["disk"]["compressed_clusters"] > 0) is compressed
    assert "qcow2 v3" in run_boxpack("inspect", box).stdout.decode()


@pytest.mark.parametrize("subformat", ["monolithicSparse", "streamOptimized"])
def test_shell_made_virtualbox_box_inspects_and_verifies(tmp_path: Path, raw: Path, subformat: str) -> None:
    vmdk = _qemu(raw, tmp_path / VMDK, "vmdk", "-o", f"subformat={subformat}")
    files = {"metadata.json": b'{"provider": "virtualbox"}', "Vagrantfile": b"", "box.ovf": _ovf_for(vmdk, raw.stat().st_size), VMDK: vmdk}
    code, codes = _codes(_tar(tmp_path / "x.box", files))
    assert code == 0, codes
    report = json.loads(run_boxpack("inspect", tmp_path / "x.box", "--json").stdout)
    assert report["disk"]["format"] == f"vmdk {subformat}"
    assert report["ovf"]["cpus"] == "2" and report["ovf"]["controllers"] == ["AHCI"] and report["ovf"]["os_type"] == "Linux_64"


@pytest.mark.first_case_quick
@pytest.mark.parametrize("provider", ["libvirt", "virtualbox"])
@pytest.mark.parametrize("extra", [[], ["--fast"], ["--compression", "none"]])
def test_every_boxpack_box_verifies_clean(tmp_path: Path, raw: Path, provider: str, extra: list[str]) -> None:
    box = tmp_path / "b.box"
    proc = run_boxpack(raw, "--provider", provider, "-o", box, "--verify", *extra)
    assert proc.returncode == 0, proc.stderr
    assert _codes(box) == (0, set())


def test_inspect_a_bare_disk(tmp_path: Path, raw: Path) -> None:
    report = json.loads(run_boxpack("inspect", raw, "--json").stdout)
    assert report["kind"] == "disk" and report["disk"]["format"] == "raw"
    p = report["partitions"]
    assert (p["table"], p["architecture"], p["firmware"]) == ("gpt", "amd64", "efi")
    q = json.loads(run_boxpack("inspect", _qemu(raw, tmp_path / "d.qcow2", "qcow2"), "--json").stdout)
    assert q["disk"]["format"] == "qcow2 v3" and q["partitions"]["firmware"] == "efi"


def test_verify_reads_stdin(tmp_path: Path, raw: Path) -> None:
    box = tmp_path / "b.box"
    run_boxpack(raw, "--provider", "libvirt", "-o", box)
    with open(box, "rb") as f:
        proc = run_boxpack("verify", "-", stdin=f, check=False)
    assert proc.returncode == 0 and b"OK" in proc.stdout


# --- the corpus of broken boxes --------------------------------------------------------------


@pytest.fixture(scope="module")
def parts(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("parts")
    run_boxpack(raw, "--provider", "libvirt", "--provider", "virtualbox", "-o", d)
    out = {}
    for p in ("libvirt", "virtualbox"):
        out[p] = extract(d / f"disk-{p}.box", d / p)
    return out


def _libvirt_files(parts: dict[str, Path], **change: bytes | None) -> dict:
    d = parts["libvirt"]
    files = {n: d / n for n in ("metadata.json", "Vagrantfile", "box.img")}
    files.update(change)
    return {k: v for k, v in files.items() if v is not None}


def _vbox_files(parts: dict[str, Path], **change: bytes | None) -> dict:
    d = parts["virtualbox"]
    files = {n: d / n for n in ("metadata.json", "Vagrantfile", "box.ovf", VMDK)}
    files.update({k.replace("_", "-").replace("box-disk001-vmdk", VMDK): v for k, v in change.items()})
    return {k: v for k, v in files.items() if v is not None}


def _qcow2_with(parts: dict[str, Path], tmp_path: Path, mutate) -> Path:
    image = bytearray((parts["libvirt"] / "box.img").read_bytes())
    mutate(image)
    out = tmp_path / "box.img"
    out.write_bytes(image)
    return out


def test_rounded_down_virtual_size(tmp_path: Path, parts: dict[str, Path], raw: Path) -> None:
    big = tmp_path / "big.img"
    with open(big, "wb") as f:
        f.truncate(1024**3 + 512 * 1024 * 1024)  # 1.5 GiB: ceil is 2, a rounded-down script writes 1
    img = _qemu(big, tmp_path / "box.img", "qcow2")
    box = _tar(tmp_path / "x.box", {"metadata.json": b'{"provider": "libvirt", "format": "qcow2", "virtual_size": 1}', "Vagrantfile": b"", "box.img": img})
    assert _codes(box) == (1, {"virtual-size-too-small"})


@pytest.mark.parametrize(
    "case, files, code",
    [
        ("missing metadata", lambda p: _libvirt_files(p, **{"metadata.json": None}), "metadata-missing"),
        ("wrong provider", lambda p: _libvirt_files(p, **{"metadata.json": b'{"provider": "virtualbox"}'}), "ovf-missing"),
        ("libvirt without box.img", lambda p: {**_vbox_files(p), "metadata.json": _libvirt_meta(200 * MIB)}, "provider-mismatch"),
    ],
)
def test_metadata_findings(tmp_path: Path, parts: dict[str, Path], case: str, files, code: str) -> None:
    assert code in _codes(_tar(tmp_path / "x.box", files(parts)))[1]


def test_ovf_capacity_mismatch_and_missing_file(tmp_path: Path, parts: dict[str, Path]) -> None:
    text = (parts["virtualbox"] / "box.ovf").read_text()
    cap = text.split('ovf:capacity="')[1].split('"')[0]
    wrong = text.replace(f'ovf:capacity="{cap}"', f'ovf:capacity="{int(cap) - 65536}"').encode()
    assert _codes(_tar(tmp_path / "a.box", _vbox_files(parts, **{"box.ovf": wrong})))[1] == {"ovf-capacity-mismatch"}
    missing = text.replace(f'ovf:href="{VMDK}"', 'ovf:href="disk2.vmdk"').encode()
    assert "ovf-missing-file" in _codes(_tar(tmp_path / "b.box", _vbox_files(parts, **{"box.ovf": missing})))[1]


def _first_grains(vmdk: bytes) -> tuple[int, int]:
    first = 128 * 512
    size0 = struct.unpack_from("<I", vmdk, first + 8)[0]
    return first, first + -(-(12 + size0) // 512) * 512


def test_vmdk_grains_out_of_order(tmp_path: Path, parts: dict[str, Path]) -> None:
    vmdk = bytearray((parts["virtualbox"] / VMDK).read_bytes())
    first, second = _first_grains(vmdk)
    struct.pack_into("<Q", vmdk, second, struct.unpack_from("<Q", vmdk, first)[0])
    assert "vmdk-order" in _codes(_tar(tmp_path / "x.box", _vbox_files(parts, **{VMDK: bytes(vmdk)})))[1]


def test_truncated_vmdk(tmp_path: Path, parts: dict[str, Path]) -> None:
    vmdk = (parts["virtualbox"] / VMDK).read_bytes()
    cut = vmdk[: len(vmdk) // 2]
    proc = subprocess.run(["qemu-img", "check", "-f", "vmdk", "/dev/stdin"], input=cut, capture_output=True)
    assert proc.returncode != 0  # the real tool refuses it too
    assert "vmdk-truncated" in _codes(_tar(tmp_path / "x.box", _vbox_files(parts, **{VMDK: cut})))[1]


def test_vmdk_short_last_grain(tmp_path: Path, parts: dict[str, Path]) -> None:
    """qemu-img's streamOptimized output for an unaligned disk ends with a short grain: VirtualBox refuses it."""
    odd = tmp_path / "odd.img"
    odd.write_bytes(os.urandom(200 * 1024))
    vmdk = _qemu(odd, tmp_path / VMDK, "vmdk", "-o", "subformat=streamOptimized")
    files = {"metadata.json": b'{"provider": "virtualbox"}', "box.ovf": _ovf_for(vmdk, 200 * 1024), VMDK: vmdk}
    assert "vmdk-grain-size" in _codes(_tar(tmp_path / "x.box", files))[1]


def test_qcow2_leaked_cluster(tmp_path: Path, parts: dict[str, Path]) -> None:
    def leak(image: bytearray) -> None:
        refblock = struct.unpack_from(">Q", image, 65536)[0]
        used = len(image) // 65536
        image += bytes(65536)  # one more cluster, referenced by nothing, yet counted
        struct.pack_into(">H", image, refblock + 2 * used, 1)
    img = _qcow2_with(parts, tmp_path, leak)
    assert subprocess.run(["qemu-img", "check", str(img)], capture_output=True).returncode == 3  # qemu: leaks only
    box = _tar(tmp_path / "x.box", _libvirt_files(parts, **{"box.img": img}))
    # A leak wastes space, and qemu and vagrant-libvirt run the image: a warning, exit 1 only when strict.
    assert _codes(box) == (0, {"qcow2-leak"}) and _codes(box, "--strict") == (1, {"qcow2-leak"})
    out = run_boxpack("verify", box, check=False).stdout.decode().splitlines()
    assert out[0].startswith("WARNING qcow2-leak: ") and out[-1] == f"{box}: OK, 1 warning(s)"


def test_qcow2_overlapping_cluster(tmp_path: Path, parts: dict[str, Path]) -> None:
    def overlap(image: bytearray) -> None:
        l1 = struct.unpack_from(">Q", image, 40)[0]
        l2 = struct.unpack_from(">Q", image, l1)[0] & 0x00FFFFFFFFFFFE00
        entries = [i for i in range(8192) if struct.unpack_from(">Q", image, l2 + 8 * i)[0]]
        first = struct.unpack_from(">Q", image, l2 + 8 * entries[0])[0]
        struct.pack_into(">Q", image, l2 + 8 * entries[1], first)  # two guest clusters, one host cluster
    img = _qcow2_with(parts, tmp_path, overlap)
    assert subprocess.run(["qemu-img", "check", str(img)], capture_output=True).returncode == 2  # qemu: corrupt
    codes = _codes(_tar(tmp_path / "x.box", _libvirt_files(parts, **{"box.img": img})))[1]
    assert "qcow2-overlap" in codes


def test_unsafe_members(tmp_path: Path, parts: dict[str, Path]) -> None:
    box = tmp_path / "x.box"
    with tarfile.open(box, "w:gz") as t:
        for name in ("metadata.json", "Vagrantfile", "box.img"):
            t.add(parts["libvirt"] / name, name)
        evil = tarfile.TarInfo("../evil")
        evil.size = 3
        t.addfile(evil, io.BytesIO(b"bad"))
        link = tarfile.TarInfo("etc-passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(link)
        dup = tarfile.TarInfo("./Vagrantfile")
        dup.size = 1
        t.addfile(dup, io.BytesIO(b"x"))
    code, codes = _codes(box)
    assert code == 1 and {"unsafe-path", "link-member", "duplicate-member"} <= codes


def test_wrong_checksum(tmp_path: Path, raw: Path) -> None:
    box = tmp_path / "b.box"
    run_boxpack(raw, "--provider", "libvirt", "-o", box)
    import hashlib

    good = hashlib.sha256(box.read_bytes()).hexdigest()
    assert _codes(box, "--checksum", f"sha256:{good}") == (0, set())
    assert _codes(box, "--checksum", "sha256:" + "0" * 64) == (1, {"checksum-mismatch"})
    cat = tmp_path / "c.json"
    run_boxpack("catalog", "add", cat, "--box", box, "--name", "o/b", "--box-version", "1.0.0", "--url", "https://x.org/b.box")
    assert _codes(box, "--catalog", cat, "--box-version", "1.0.0") == (0, set())
    with open(box, "rb") as f:  # from stdin too: the digest comes from the one streaming pass
        proc = run_boxpack("verify", "-", "--catalog", cat, "--box-version", "1.0.0", stdin=f, check=False)
    assert proc.returncode == 0, proc.stdout
    box.write_bytes(box.read_bytes() + b"\0" * 512)  # changed after it was catalogued
    assert "checksum-mismatch" in _codes(box, "--catalog", cat, "--box-version", "1.0.0")[1]


# --- hostile archives --------------------------------------------------------------------------


def test_truncated_archive_cannot_be_read(tmp_path: Path, raw: Path) -> None:
    box = tmp_path / "b.box"
    run_boxpack(raw, "--provider", "libvirt", "-o", box)
    cut = tmp_path / "cut.box"
    cut.write_bytes(box.read_bytes()[: box.stat().st_size // 2])
    proc = run_boxpack("verify", cut, check=False)
    assert proc.returncode == 1 and b"Traceback" not in proc.stderr + proc.stdout


@pytest.mark.slow
def test_gzip_bomb_is_stopped(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.box"
    header = tarfile.TarInfo("box.img")
    header.size = 100 * 1024**3
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    zero = bytes(16 * MIB)
    with open(bomb, "wb") as f:
        f.write(z.compress(header.tobuf(tarfile.GNU_FORMAT)))
        for _ in range(80):  # 1.25 GiB of zeros in about 1.3 MB
            f.write(z.compress(zero))
        f.write(z.flush())
    proc = run_boxpack("verify", bomb, check=False, timeout=120)
    assert proc.returncode == 1 and b"bomb" in proc.stdout


@pytest.mark.parametrize(
    "blob",
    [os.urandom(4096), b"\x1f\x8b\x08\x00" + os.urandom(4096), b"", gzip.compress(b"\0" * 1024)],
    ids=["random", "gzip-garbage", "empty", "gzip-of-zeros"],
)
def test_garbage_is_a_clear_error(tmp_path: Path, blob: bytes) -> None:
    f = tmp_path / "g.box"
    f.write_bytes(blob)
    proc = run_boxpack("verify", f, check=False, timeout=60)
    assert proc.returncode == 1 and b"Traceback" not in proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def seed_boxes(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    d = tmp_path_factory.mktemp("seed")
    disk = make_disk.make(d / "s.img", size=8 * MIB, data=256 * 1024)
    out = []
    for provider in ("libvirt", "virtualbox"):
        box = d / f"{provider}.box"
        run_boxpack(disk, "--provider", provider, "--compression", "none", "-o", box)
        out.append(box.read_bytes())
    return out


@settings(max_examples=150, deadline=10000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_boxes_never_crash(tmp_path: Path, seed_boxes: list[bytes], data: st.DataObject) -> None:
    """Flip bytes anywhere, in headers above all, of plain-tar boxes: examine() reports, never raises."""
    box = bytearray(data.draw(st.sampled_from(seed_boxes)))
    hot = [0, 512, 1024, 1536, 2048, 2560, 3072, 3584, 4096]
    for _ in range(data.draw(st.integers(1, 8))):
        base = data.draw(st.sampled_from(hot + [len(box) // 2, len(box) - 2048]))
        pos = min(len(box) - 1, base + data.draw(st.integers(0, 700)))
        box[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        box = box[: data.draw(st.integers(0, len(box)))]
    path = tmp_path / "f.box"
    path.write_bytes(bytes(box))
    report = verify.examine(str(path))
    assert report.exit_code in (0, 1, 2)
    json.loads(report.to_json())


def test_a_disk_named_only_by_its_descriptor_is_packed_and_checked(tmp_path: Path, raw: Path) -> None:
    """box.ovf names the disk `disk0.dat`, a name no format goes by: packing takes it as the disk (the box's own
    list says so), and verify checks it by the same list, so a broken one is found, not passed over."""
    from conftest import box_members, write_box

    vb = tmp_path / "vb.box"
    run_boxpack(raw, "--provider", "virtualbox", "-o", vb)
    members = box_members(vb)
    members["box.ovf"] = members["box.ovf"].replace(b"box-disk001.vmdk", b"disk0.dat")
    members["disk0.dat"] = members.pop("box-disk001.vmdk")
    order = ["metadata.json", "Vagrantfile", "box.ovf", "disk0.dat"]
    renamed = write_box(tmp_path / "renamed.box", [(n, members[n]) for n in order])
    report = json.loads(run_boxpack("verify", renamed, "--json").stdout)
    assert [(d["member"], d["format"]) for d in report["disks"]] == [("disk0.dat", "vmdk streamOptimized")]
    run_boxpack(renamed, "--provider", "libvirt", "-o", tmp_path / "lv.box")  # packing takes the same disk
    broken = bytearray(members["disk0.dat"])
    broken[len(broken) // 2:] = bytes(len(broken) - len(broken) // 2)
    members["disk0.dat"] = bytes(broken)
    bad = write_box(tmp_path / "bad.box", [(n, members[n]) for n in order])
    proc = run_boxpack("verify", bad, "--json", check=False)
    assert proc.returncode == 1 and any(f["severity"] == "error" and "disk0.dat" in f["message"]
                                        for f in json.loads(proc.stdout)["findings"])
