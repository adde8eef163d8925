"""libvirt boxes from every disk case, checked with qemu-img and bsdtar."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from conftest import GIB, bsdtar_list, extract, make_disk, qemu_check, qemu_compare, qemu_info, run_boxpack
from disks import CASES

from boxpack.metadata import validate


@pytest.mark.first_case_quick
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("compat", ["1.1", "0.10"])
def test_libvirt_box_equals_source(tmp_path: Path, case: str, compat: str) -> None:
    raw = CASES[case](tmp_path / f"{case}.img")
    box = tmp_path / "out.box"
    run_boxpack(raw, "--provider", "libvirt", "-o", box, "--qcow2-compat", compat)
    assert bsdtar_list(box) == ["metadata.json", "Vagrantfile", "box.img"]
    d = extract(box, tmp_path / "x")
    image = d / "box.img"
    qemu_check(image, "qcow2")
    qemu_compare(image, "qcow2", raw)
    info = qemu_info(image)
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == raw.stat().st_size
    assert info["format-specific"]["data"]["compat"] == compat
    meta = json.loads((d / "metadata.json").read_text())
    validate(meta, "metadata.schema.json", "metadata.json")
    assert meta == {"provider": "libvirt", "format": "qcow2", "virtual_size": math.ceil(raw.stat().st_size / GIB)}


def test_zero_clusters_and_holes_are_not_stored(tmp_path: Path) -> None:
    """A 3 GiB disk of zeros gives a qcow2 of metadata only, and zero runs cost nothing."""
    for case in ("empty_sparse", "all_zero_written", "allocated_with_zero_runs"):
        raw = CASES[case](tmp_path / f"{case}.img")
        box = tmp_path / f"{case}.box"
        run_boxpack(raw, "--provider", "libvirt", "-o", box)
        d = extract(box, tmp_path / case)
        report = qemu_check(d / "box.img", "qcow2")
        expected = {"empty_sparse": 0, "all_zero_written": 0, "allocated_with_zero_runs": 16 + 1}[case]
        assert report.get("allocated-clusters", 0) == expected


def test_unaligned_disk_is_padded_with_a_warning(tmp_path: Path) -> None:
    raw = tmp_path / "odd.img"
    raw.write_bytes(b"\x01" * 1000)
    box = tmp_path / "odd.box"
    proc = run_boxpack(raw, "--provider", "libvirt", "-o", box)
    assert "warning" in proc.stderr.decode() and "padded" in proc.stderr.decode()
    d = extract(box, tmp_path / "x")
    assert qemu_info(d / "box.img")["virtual-size"] == 1024
    qemu_compare(d / "box.img", "qcow2", raw)


def test_vagrantfile_include_and_arch(tmp_path: Path, sample_disk: Path) -> None:
    vf = tmp_path / "Vagrantfile"
    vf.write_text('Vagrant.configure("2") { |c| c.vm.hostname = "mine" }\n')
    extra = tmp_path / "info.json"
    extra.write_text('{"author": "me"}\n')
    box = tmp_path / "out.box"
    run_boxpack(sample_disk, "--provider", "libvirt", "-o", box, "--vagrantfile", vf, "--include", extra, "--arch", "amd64")
    assert bsdtar_list(box) == ["metadata.json", "Vagrantfile", "box.img", "info.json"]
    d = extract(box, tmp_path / "x")
    assert (d / "Vagrantfile").read_text() == vf.read_text()
    assert json.loads((d / "metadata.json").read_text())["architecture"] == "amd64"


def test_default_vagrantfile_does_not_hard_code_kvm(tmp_path: Path, sample_disk: Path) -> None:
    box = tmp_path / "out.box"
    run_boxpack(sample_disk, "--provider", "libvirt", "-o", box)
    text = (extract(box, tmp_path / "x") / "Vagrantfile").read_text()
    assert 'disk_bus = "virtio"' in text
    assert 'driver = "kvm"' not in text and 'kvm ? "kvm" : "qemu"' in text


def test_ruby_parses_default_vagrantfile(tmp_path: Path, sample_disk: Path) -> None:
    ruby = pytest.importorskip("shutil").which("ruby")
    if not ruby:
        pytest.skip("ruby not installed")
    import subprocess

    box = tmp_path / "out.box"
    run_boxpack(sample_disk, "--provider", "libvirt", "-o", box)
    vf = extract(box, tmp_path / "x") / "Vagrantfile"
    subprocess.run([ruby, "-c", str(vf)], check=True, capture_output=True)


@pytest.mark.parametrize(("layout", "arch"), [("bios", "x86-64"), ("efi", "x86-64"), ("efi", "arm64")])
def test_vagrant_libvirt_validates_the_vagrantfile(tmp_path: Path, layout: str, arch: str) -> None:
    """vagrant-libvirt's own Config#validate (run by `vagrant validate`) takes every setting the box gives,
    and an arm64 box describes QEMU's virt machine with AAVMF, never the x86 PC and OVMF."""
    import shutil
    import subprocess

    if not shutil.which("vagrant"):
        pytest.skip("vagrant not installed")
    disk = make_disk.make(tmp_path / "d.img", layout, size=256 * 1024 * 1024, data=1024 * 1024, arch=arch)
    run_boxpack(disk, "--provider", "libvirt", "-o", tmp_path / "d.box")
    text = (extract(tmp_path / "d.box", tmp_path / "x") / "Vagrantfile").read_text()
    arm = arch == "arm64"
    assert ('libvirt.machine_type = "virt"' in text and "qemu-efi-aarch64/QEMU_EFI.fd" in text) is arm
    assert ("OVMF" in text) is (layout == "efi" and not arm)
    project = tmp_path / "project"
    project.mkdir()
    (project / "Vagrantfile").write_text(text.replace('Vagrant.configure("2") do |config|\n',
                                                      'Vagrant.configure("2") do |config|\n  config.vm.box = "boxpack/test"\n', 1))
    proc = subprocess.run(["vagrant", "validate"], cwd=project, capture_output=True, text=True,
                          env={**os.environ, "VAGRANT_DEFAULT_PROVIDER": "libvirt", "VAGRANT_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0 and "validated successfully" in proc.stdout, proc.stdout + proc.stderr
