"""A disk's architecture from its EFI system partition's boot loaders, on ESPs mkfs.vfat and mtools wrote.

The disks have the generic Linux root type, as Debian's installer, kiwi and
debootstrap scripts give them, so only the ESP says. dissect.fat, an
independent FAT reader, lists the same directories.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import MIB, make_disk, run_boxpack
from test_boottest import told_to_install
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boxpack.disk.esp import EspProbe, architecture, probe_disk
from boxpack.disk.fat import FatVolume
from boxpack.packing import PackOptions, pack
from boxpack.disk.partitions import read_partition_table
from boxpack.sources.open import open_source

pytestmark = pytest.mark.skipif(not (shutil.which("mkfs.vfat") and shutil.which("mcopy")), reason="dosfstools and mtools")

ESP_FIRST = 2048
SIZE = 160 * MIB


def esp_disk(path: Path, files: dict[str, bytes], fat: int = 32, esp_mib: int = 100, cluster_sectors: int = 1,
             root=make_disk.LINUX_DATA) -> Path:
    """A GPT disk: an ESP formatted by mkfs.vfat holding files (mtools paths, directories made as needed),
    then a root partition of the given type with some data."""
    esp_last = ESP_FIRST + esp_mib * 2048 - 1
    with open(path, "wb") as f:
        f.truncate(SIZE)
        make_disk.write_gpt(f, SIZE, [(make_disk.ESP, ESP_FIRST, esp_last, "esp"), (root, esp_last + 1, SIZE // 512 - 34, "root")])
        make_disk.fill(f, (esp_last + 1) * 512 + MIB, 2 * MIB, seed=3)
    subprocess.run(["mkfs.vfat", "-F", str(fat), "-s", str(cluster_sectors), "-n", "ESP", f"--offset={ESP_FIRST}", path,
                    str(esp_mib * 1024)], check=True, capture_output=True)
    image = f"{path}@@{ESP_FIRST * 512}"
    made: set[str] = set()
    for name, data in files.items():
        parts = name.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in made:
                subprocess.run(["mmd", "-i", image, f"::/{d}"], check=True, capture_output=True)
                made.add(d)
        src = path.parent / "payload"
        src.write_bytes(data)
        subprocess.run(["mcopy", "-i", image, src, f"::/{name}"], check=True, capture_output=True)
    return path


def probe_of(path: Path) -> tuple[str | None, str]:
    with open_source(path) as src:
        probe = probe_disk(src.scan())
        return architecture(read_partition_table(src), probe)


@pytest.mark.parametrize(("fat", "cluster_sectors", "esp_mib"), [(12, 8, 8), (16, 4, 48), (32, 1, 100), (32, 8, 300)])
@pytest.mark.parametrize(("loader", "arch"), [("EFI/BOOT/BOOTAA64.EFI", "arm64"), ("EFI/BOOT/BOOTX64.EFI", "amd64"),
                                             ("EFI/BOOT/BOOTIA32.EFI", "i386"), ("EFI/BOOT/bootriscv64.efi", "riscv64"),
                                             ("EFI/debian/grubaa64.efi", "arm64"), ("EFI/fedora/shimx64.efi", "amd64")])
def test_loader_names_the_architecture(tmp_path: Path, fat: int, cluster_sectors: int, esp_mib: int, loader: str, arch: str) -> None:
    disk = esp_disk(tmp_path / "d.img", {"EFI/BOOT/fallback.txt": b"x", loader: b"MZ" + bytes(5000)}, fat, esp_mib, cluster_sectors)
    found, why = probe_of(disk)
    assert found == arch
    assert loader.rpartition("/")[2].upper() in why.upper() and "EFI system partition" in why


def test_directories_spanning_clusters_match_dissect_fat(tmp_path: Path) -> None:
    """Long names and directories of many 512-byte clusters, listed as dissect.fat lists them."""
    fatfs = pytest.importorskip("dissect.fat")
    files = {f"EFI/BOOT/a-rather-long-file-name-{i:03}.conf": b"c" * 700 for i in range(60)}
    files["EFI/BOOT/BOOTAA64.EFI"] = b"MZ" + bytes(3000)
    files.update({f"loader/entries/entry-{i}.conf": b"e" for i in range(30)})
    disk = esp_disk(tmp_path / "d.img", files, 32, 64, 1)
    with open(disk, "rb") as f:
        f.seek(ESP_FIRST * 512)
        (tmp_path / "esp.img").write_bytes(f.read(64 * MIB))  # dissect.fat reads a volume from its byte 0
    with open(tmp_path / "esp.img", "rb") as f:
        def read(offset: int, length: int) -> bytes:
            f.seek(offset)
            return f.read(length)

        ours = FatVolume(read)
        theirs = fatfs.FATFS(f)
        for path in (["EFI"], ["EFI", "BOOT"], ["loader", "entries"]):
            mine = sorted(e.name for e in ours.listdir(path))
            assert mine == sorted(e.name for e in theirs.get("/".join(path)).iterdir() if e.name not in (".", "..")), path
    assert probe_of(disk)[0] == "arm64"


def test_root_type_first_and_no_loader_unknown(tmp_path: Path) -> None:
    disk = esp_disk(tmp_path / "typed.img", {"EFI/BOOT/BOOTAA64.EFI": b"MZ"}, root=make_disk.ROOT_X86_64)
    assert probe_of(disk) == ("amd64", "the GPT root partition's type (Discoverable Partitions Specification)")
    bare = esp_disk(tmp_path / "bare.img", {"EFI/tools/shell.efi": b"MZ"})
    assert probe_of(bare)[0] is None
    mixed = esp_disk(tmp_path / "mixed.img", {"EFI/BOOT/BOOTAA64.EFI": b"MZ", "EFI/BOOT/BOOTX64.EFI": b"MZ"})
    found, why = probe_of(mixed)
    assert found is None and "arm64 and amd64" in why


def test_hostile_esp_names_nothing(tmp_path: Path) -> None:
    """A FAT whose directory chain loops, and a boot sector with impossible sizes: no architecture, no hang."""
    disk = esp_disk(tmp_path / "loop.img", {"EFI/BOOT/BOOTAA64.EFI": b"MZ"}, 32, 64, 1)
    with open(disk, "r+b") as f:
        f.seek(ESP_FIRST * 512)
        boot = f.read(512)
        reserved = int.from_bytes(boot[14:16], "little")
        f.seek(ESP_FIRST * 512 + reserved * 512 + 2 * 4)  # the root directory's cluster (2) points at itself
        f.write((2).to_bytes(4, "little"))
    assert probe_of(disk)[0] is None
    with open(disk, "r+b") as f:
        f.seek(ESP_FIRST * 512 + 13)
        f.write(b"\x03")  # 3 sectors per cluster
    assert probe_of(disk)[0] is None


def test_probe_keeps_only_the_esp_start(tmp_path: Path) -> None:
    disk = esp_disk(tmp_path / "d.img", {"EFI/BOOT/BOOTAA64.EFI": b"MZ" + bytes(100 * 1024)}, 32, 100, 1)
    probe = EspProbe()
    with open_source(disk) as src:
        for cluster, data in src.scan():
            probe.feed(cluster, data)
    assert probe.kept and all(ESP_FIRST * 512 <= (c + 1) * 65536 and c * 65536 < probe.end for c in probe.kept)
    assert sum(map(len, probe.kept.values())) <= 16 * MIB


def test_pack_inspect_and_verify_say_where_it_came_from(tmp_path: Path) -> None:
    """pack detects arm64 from the ESP (streamed from a box too); --architecture amd64 against it is a warning
    from pack and from verify, each naming both."""
    disk = esp_disk(tmp_path / "arm.img", {"EFI/BOOT/BOOTAA64.EFI": b"MZ" + bytes(4096)})
    (box,) = pack(disk, PackOptions(providers=["libvirt"], output=tmp_path / "arm.box"))
    assert box.architecture == "arm64"
    assert box.architecture_reason == "detected: \\EFI\\BOOT\\BOOTAA64.EFI on the EFI system partition"
    report = json.loads(run_boxpack("inspect", tmp_path / "arm.box", "--json").stdout)
    assert report["partitions"]["architecture"] == "arm64"
    assert "BOOTAA64.EFI" in report["partitions"]["architecture_reason"]
    assert not [f for f in report["findings"] if f["code"].startswith("architecture")]
    # A box source's metadata carries the architecture; the disk agrees, so no warning.
    proc = run_boxpack(tmp_path / "arm.box", "--provider", "qemu", "-o", tmp_path / "again.box", text=True)
    assert "arch arm64 (from the source box's metadata.json)" in proc.stderr and "WARNING" not in proc.stderr.upper()

    proc = run_boxpack(disk, "--provider", "libvirt", "--architecture", "amd64", "-o", tmp_path / "wrong.box", text=True)
    assert "amd64" in proc.stderr and "arm64" in proc.stderr and "BOOTAA64.EFI" in proc.stderr
    assert "arch amd64 (as asked)" in proc.stderr
    proc = run_boxpack("verify", tmp_path / "wrong.box", "--json", check=False)
    report = json.loads(proc.stdout)
    (finding,) = [f for f in report["findings"] if f["code"] == "architecture-mismatch"]
    assert finding["severity"] == "warning" and "amd64" in finding["message"] and "arm64" in finding["message"]
    text = run_boxpack("inspect", disk, text=True).stdout
    assert "architecture arm64 (\\EFI\\BOOT\\BOOTAA64.EFI on the EFI system partition)" in text


def test_compressed_and_image_disks(tmp_path: Path) -> None:
    """The probe reads a zstd raw disk and a qcow2 through their scans."""
    disk = esp_disk(tmp_path / "arm.img", {"EFI/BOOT/BOOTAA64.EFI": b"MZ"})
    subprocess.run(["zstd", "-q", "-k", disk, "-o", tmp_path / "arm.img.zst"], check=True)
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", disk, tmp_path / "arm.qcow2"], check=True)
    for path in (tmp_path / "arm.img.zst", tmp_path / "arm.qcow2"):
        report = json.loads(run_boxpack("inspect", path, "--json").stdout)
        assert report["partitions"]["architecture"] == "arm64", path


def test_boxpack_test_boots_an_unnamed_arm64_box_as_arm64(tmp_path: Path) -> None:
    """A box whose metadata.json names no architecture (as older tools write them) is booted for what its ESP says:
    here, where PATH has no QEMU, the one it asks for is qemu-system-aarch64."""
    disk = esp_disk(tmp_path / "arm.img", {"EFI/BOOT/BOOTAA64.EFI": b"MZ"})
    pack(disk, PackOptions(providers=["libvirt"], output=tmp_path / "named.box"))
    with tarfile.open(tmp_path / "named.box") as src, tarfile.open(tmp_path / "unnamed.box", "w:gz") as out:
        for m in src:
            data = src.extractfile(m).read()  # type: ignore[union-attr]
            if m.name == "metadata.json":
                meta = json.loads(data)
                del meta["architecture"]
                data = json.dumps(meta).encode()
                m.size = len(data)
            out.addfile(m, io.BytesIO(data))
    key = tmp_path / "key"
    key.write_text("not a real key\n")
    proc = run_boxpack("test", tmp_path / "unnamed.box", "--json", "--ssh-key", key, env={"PATH": str(tmp_path)}, check=False)
    result = json.loads(proc.stdout)
    assert proc.returncode == 4 and result["architecture"] == "arm64", result
    assert "qemu-system-aarch64" in result["error"] and result["error"].endswith(told_to_install("arm64", "efi"))


@pytest.fixture(scope="module")
def real_esp(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A FAT16 ESP as mkfs.vfat and mtools write it, with a vendor directory and the removable path."""
    tmp = tmp_path_factory.mktemp("esp")
    disk = esp_disk(tmp / "d.img", {"EFI/debian/grubaa64.efi": b"MZ", "EFI/BOOT/BOOTAA64.EFI": b"MZ"}, 16, 16, 1)
    with open(disk, "rb") as f:
        f.seek(ESP_FIRST * 512)
        return f.read(16 * MIB)


def _probe_of_volume(volume: bytes) -> EspProbe:
    probe = EspProbe()
    probe.end = len(volume)
    probe.kept = {i: volume[i * 65536 : (i + 1) * 65536] for i in range(len(volume) // 65536)}
    return probe


def test_probe_of_a_real_esp_lists_both(real_esp: bytes) -> None:
    assert _probe_of_volume(real_esp).loaders() == ["\\EFI\\BOOT\\BOOTAA64.EFI", "\\EFI\\debian\\grubaa64.efi"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 96 * 1024 - 1), st.integers(0, 255)), min_size=1, max_size=24))
def test_a_mutated_esp_ends_with_a_list(real_esp: bytes, changes: list[tuple[int, int]]) -> None:
    """Boot sector, FATs and directories with bytes changed (sizes, chains, entries): loaders() returns, naming
    at most what it found; it never raises or loops."""
    volume = bytearray(real_esp)
    for pos, value in changes:
        volume[pos] = value
    found = _probe_of_volume(bytes(volume)).loaders()
    assert isinstance(found, list) and len(found) <= 2 * 65536


def test_an_arm64_qemu_box_asks_tcg_for_a_cortex_a72(tmp_path: Path) -> None:
    disk = esp_disk(tmp_path / "arm.img", {"EFI/BOOT/BOOTAA64.EFI": b"MZ"})
    pack(disk, PackOptions(providers=["qemu"], output=tmp_path / "q.box"))
    with tarfile.open(tmp_path / "q.box") as t:
        text = t.extractfile("Vagrantfile").read().decode()  # type: ignore[union-attr]
    assert 'qe.arch = "aarch64"' in text and 'qe.machine = "virt,highmem=on,accel=tcg"' in text and 'qe.cpu = "cortex-a72"' in text
