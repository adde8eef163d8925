"""boxpack --mkosi, run as mkosi runs mkosi.postoutput: the environment of run_postoutput_scripts
(mkosi/__init__.py) and $MKOSI_CONFIG as Config.to_dict writes it (mkosi/config.py, at systemd/mkosi
70ce10d, July 2026)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MIB, ROOT, extract, make_disk, qemu_compare, run_boxpack

# class Architecture in mkosi/config.py, in mkosi's spelling, and the name the box gets.
ARCHITECTURES = {
    "alpha": "alpha", "arc": "arc", "arm": "arm", "arm64": "arm64", "ia64": "ia64", "loongarch64": "loongarch64",
    "mips-le": "mipsle", "mips64-le": "mips64le", "parisc": "parisc", "ppc": "ppc", "ppc64": "ppc64",
    "ppc64-le": "ppc64le", "riscv32": "riscv32", "riscv64": "riscv64", "s390": "s390", "s390x": "s390x",
    "tilegx": "tilegx", "x86": "i386", "x86-64": "amd64",
}


def mkosi_config(path: Path, **settings: object) -> Path:
    """A $MKOSI_CONFIG file: capitalised setting names, enums as their strings, as mkosi writes it."""
    config = {
        "Architecture": "x86-64", "Bootable": "enabled", "CompressLevel": 3, "CompressOutput": "none",
        "Distribution": "debian", "Format": "disk", "ImageId": "debian-12-vagrant", "ImageVersion": None,
        "Output": "debian-12-vagrant", "OutputDirectory": "/work/src/mkosi.output", "OutputExtension": "raw",
        "OutputMode": None, "Release": "bookworm", "SourceDateEpoch": None, "SplitArtifacts": [],
    }
    config.update(settings)
    path.write_text(json.dumps(config, indent=4, sort_keys=True))
    return path


def hook_env(outdir: Path, config: Path | None, **env: str) -> dict[str, str]:
    """What run_postoutput_scripts sets (paths are the host's here, not the sandbox's /work/...)."""
    base = {"OUTPUTDIR": str(outdir), "SRCDIR": str(outdir.parent), "DISTRIBUTION": "debian", "RELEASE": "bookworm",
            "ARCHITECTURE": "x86-64", "DISTRIBUTION_ARCHITECTURE": "amd64", "MKOSI_UID": "0", "MKOSI_GID": "0",
            "MKOSI_DEBUG": "0", "IMAGE_ID": "debian-12-vagrant", "SOURCE_DATE_EPOCH": "1700000000"}
    if config:
        base["MKOSI_CONFIG"] = str(config)
    return {**base, **env}


@pytest.fixture
def outdir(tmp_path: Path) -> Path:
    (tmp_path / "out").mkdir()
    return tmp_path / "out"


def test_the_example_hook_packs_what_mkosi_wrote(tmp_path: Path, outdir: Path) -> None:
    """fixtures/mkosi/mkosi.postoutput, run as mkosi runs it, on a versioned zstd-compressed image."""
    raw = make_disk.make(tmp_path / "disk.raw", data=4 * MIB)
    compressed = outdir / "debian-12-vagrant_1.2.3.raw.zst"
    subprocess.run(["zstd", "-q", str(raw), "-o", str(compressed)], check=True)
    (outdir / "debian-12-vagrant_1.2.3").symlink_to(compressed.name)  # mkosi links Output to the file
    config = mkosi_config(tmp_path / "config.json", Output="debian-12-vagrant_1.2.3", ImageVersion="1.2.3",
                          CompressOutput="zstd")
    env = {**os.environ, **hook_env(outdir, config, IMAGE_VERSION="1.2.3"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    subprocess.run([ROOT / "fixtures/mkosi/mkosi.postoutput"], env=env, check=True, cwd=tmp_path)
    for provider, member, fmt in (("libvirt", "box.img", "qcow2"), ("virtualbox", "box-disk001.vmdk", "vmdk")):
        box = outdir / f"debian-12-vagrant_1.2.3-{provider}.box"
        qemu_compare(extract(box, tmp_path / provider) / member, fmt, raw)
        assert (outdir / f"{box.name}.sha256").read_text().endswith(f"  {box.name}\n")
        meta = json.loads((tmp_path / provider / "metadata.json").read_text())
        assert meta["architecture"] == "amd64"


@pytest.mark.first_case_quick
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_architecture_names_map_to_vagrants(tmp_path: Path, outdir: Path, arch: str) -> None:
    make_disk.make(outdir / "debian-12-vagrant.raw", data=MIB)
    config = mkosi_config(tmp_path / "config.json", Architecture=arch)
    proc = run_boxpack("--mkosi", "--provider", "libvirt", "--json", env=hook_env(outdir, config, ARCHITECTURE=arch))
    (box,) = json.loads(proc.stdout)["boxes"]
    assert box["architecture"] == ARCHITECTURES[arch]
    assert box["path"] == str(outdir / "debian-12-vagrant-libvirt.box")


def test_catalog_version_comes_from_image_version(tmp_path: Path, outdir: Path) -> None:
    make_disk.make(outdir / "img_4.5.raw", data=MIB)
    config = mkosi_config(tmp_path / "config.json", Output="img_4.5", ImageId="img", ImageVersion="4.5")
    catalog = tmp_path / "boxes.json"
    run_boxpack("--mkosi", "--provider", "libvirt", "--catalog", catalog, "--name", "org/img", "--url-base",
                "https://example.org/", env=hook_env(outdir, config, IMAGE_ID="img", IMAGE_VERSION="4.5"))
    (version,) = json.loads(catalog.read_text())["versions"]
    assert version["version"] == "4.5"
    assert version["providers"][0]["url"] == "https://example.org/img_4.5-libvirt.box"


def test_without_mkosi_config_the_names_come_from_image_id_and_version(tmp_path: Path, outdir: Path) -> None:
    make_disk.make(tmp_path / "d.raw", size=64 * MIB, data=MIB)  # xz reads every zero of it
    subprocess.run(["xz", "-0", "-c", str(tmp_path / "d.raw")], stdout=open(outdir / "vm_7.raw.xz", "wb"), check=True)
    run_boxpack("--mkosi", "--provider", "libvirt", env=hook_env(outdir, None, IMAGE_ID="vm", IMAGE_VERSION="7"))
    assert (outdir / "vm_7-libvirt.box").exists()


@pytest.mark.parametrize(
    "env, config, message",
    [
        ({"OUTPUTDIR": ""}, {}, "$OUTPUTDIR is not set"),
        ({}, {"Format": "tar"}, "Format=tar makes no disk image"),
        ({}, {"Output": "other"}, "no disk image in"),
        ({"MKOSI_CONFIG": "/nonexistent/config.json"}, None, "cannot read"),
    ],
)
def test_mkosi_mode_errors_are_one_line(tmp_path: Path, outdir: Path, env: dict, config: dict | None, message: str) -> None:
    make_disk.make(outdir / "debian-12-vagrant.raw", data=MIB)
    cfg = mkosi_config(tmp_path / "config.json", **config) if config is not None else None
    proc = run_boxpack("--mkosi", "--provider", "libvirt", env={**hook_env(outdir, cfg), **env}, check=False)
    code = 2 if "OUTPUTDIR" in env else 1  # run from the wrong place is usage; what mkosi wrote is input
    assert proc.returncode == code and message in proc.stderr.decode() and len(proc.stderr.splitlines()) == 1, proc.stderr


def test_mkosi_mode_takes_no_source(tmp_path: Path, outdir: Path) -> None:
    disk = make_disk.make(outdir / "debian-12-vagrant.raw", data=MIB)
    proc = run_boxpack(disk, "--mkosi", "--provider", "libvirt", env=hook_env(outdir, None), check=False)
    assert proc.returncode == 2 and "give no SOURCE" in proc.stderr.decode()
