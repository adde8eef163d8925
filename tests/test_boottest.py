"""`boxpack test` without a guest OS: the machine it describes to QEMU, how it tells a KVM that cannot run
the guest (real QEMU, TCG, a boot sector), and what it says when it cannot run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import MIB, make_disk, run_boxpack

from boxpack.inspect import boottest
from boxpack.metadata import validate


def _cmd(provider: str, arch: str = "amd64", firmware: str | None = None, accel: str = "tcg") -> list[str]:
    vm = boottest.provider_class(provider).test_vm({})
    return boottest.qemu_command(Path("/d.raw"), arch, vm, firmware, accel, 2222, Path("/w"), boottest.TestOptions())


def test_disk_bus_and_nic_follow_the_provider() -> None:
    libvirt = " ".join(_cmd("libvirt"))
    assert "virtio-blk-pci,drive=disk0" in libvirt and "virtio-net-pci,netdev=net0" in libvirt
    for provider, nic in (("virtualbox", "e1000"), ("vmware_desktop", "e1000e"), ("hyperv", "e1000")):
        cmd = " ".join(_cmd(provider))
        assert "-device ahci,id=ahci0 -device ide-hd,drive=disk0,bus=ahci0.0" in cmd and f"-device {nic},netdev=net0" in cmd
    assert "hostfwd=tcp:127.0.0.1:2222-:22" in libvirt and "snapshot=on" in libvirt and "format=raw" in libvirt


def test_firmware_accelerator_and_architecture() -> None:
    efi = _cmd("libvirt", firmware="/usr/share/ovmf/OVMF.fd", accel="kvm")
    assert efi[0] == "qemu-system-x86_64" and efi[efi.index("-bios") + 1] == "/usr/share/ovmf/OVMF.fd"
    assert efi[efi.index("-accel") + 1] == "kvm" and efi[efi.index("-cpu") + 1] == "host"
    assert "-bios" not in _cmd("libvirt")  # BIOS: QEMU's own SeaBIOS
    arm = _cmd("libvirt", arch="arm64", firmware="/usr/share/AAVMF/AAVMF_CODE.fd")
    assert arm[0] == "qemu-system-aarch64" and arm[arm.index("-M") + 1] == "virt" and arm[arm.index("-cpu") + 1] == "cortex-a72"
    tcg = _cmd("libvirt", accel="tcg")  # what the fall-back from KVM runs
    assert tcg[tcg.index("-accel") + 1] == "tcg" and "host" not in tcg
    with pytest.raises(boottest.CannotRun, match="boots amd64 and arm64"):
        _cmd("libvirt", arch="riscv64")


def told_to_install(arch: str, firmware: str, pflash: bool = False) -> str:
    """What a user of this machine is told to install to boot a box where PATH holds no program: QEMU and ssh
    always, the UEFI firmware only where this machine lacks it."""
    packages = [boottest.QEMU_PACKAGE[arch]]
    if firmware == "efi" or arch == "arm64":
        files = boottest.PFLASH[arch] if pflash else [(f,) for f in (boottest.AAVMF if arch == "arm64" else boottest.OVMF)]
        if not any(all(os.path.isfile(f) for f in pair) for pair in files):
            packages.append("qemu-efi-aarch64" if arch == "arm64" else "ovmf")
    return f"are not installed (Debian: apt install {' '.join(packages)} openssh-client)"


def test_everything_missing_is_named_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No QEMU, no firmware, no ssh, no key: one line says all four and every package that brings them."""
    disk = make_disk.make(tmp_path / "d.img", size=64 * MIB, data=2 * MIB, arch="arm64")
    run_boxpack(disk, "--provider", "libvirt", "-o", tmp_path / "d.box")
    monkeypatch.setattr(boottest, "AAVMF", ("/nonexistent/QEMU_EFI.fd",))
    monkeypatch.setattr(boottest, "KEY_CANDIDATES", ("/nonexistent/vagrant",))
    monkeypatch.setenv("PATH", str(tmp_path))
    result = boottest.test(tmp_path / "d.box")
    assert result.exit_code == 4 and result.error == (
        "Vagrant's insecure key, qemu-system-aarch64, the AAVMF firmware this UEFI box boots with and ssh are not "
        "installed (Debian: apt install vagrant qemu-system-arm qemu-efi-aarch64 openssh-client; or give --ssh-key FILE)")


def test_missing_firmware_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(boottest, "OVMF", ("/nonexistent/OVMF.fd",))
    with pytest.raises(boottest.CannotRun, match="apt install ovmf"):
        boottest.find_firmware("amd64", "efi")
    assert boottest.find_firmware("amd64", "bios") is None


@pytest.mark.parametrize("provider", ["virtualbox", "parallels", "utm"])  # a raw copy; the .hds; config.plist
@pytest.mark.parametrize("layout,firmware", [("efi", "efi"), ("bios", "bios")])
def test_cannot_run_without_qemu_exits_4_naming_it(tmp_path: Path, layout: str, firmware: str, provider: str) -> None:
    disk = make_disk.make(tmp_path / "d.img", layout=layout, size=64 * MIB, data=2 * MIB)
    box = tmp_path / "d.box"
    run_boxpack(disk, "--provider", provider, "-o", box)
    key = tmp_path / "key"
    key.write_text("not a real key\n")
    proc = run_boxpack("test", box, "--json", "--ssh-key", key, env={"PATH": str(tmp_path)}, check=False)
    result = json.loads(proc.stdout)
    validate(result, "test-result.schema.json", "boxpack test --json")
    assert proc.returncode == 4 and result["exit_code"] == 4
    assert result["firmware"] == firmware and result["provider"] == provider
    assert "qemu-system-x86_64" in result["error"] and result["error"].endswith(told_to_install("amd64", firmware, provider == "utm"))
    human = run_boxpack("test", box, "--ssh-key", key, env={"PATH": str(tmp_path)}, check=False)
    assert human.returncode == 4 and human.stderr.decode().count("\n") == 1 and "apt install qemu-system-x86" in human.stderr.decode()


def test_a_missing_key_is_named(tmp_path: Path) -> None:
    disk = make_disk.make(tmp_path / "d.img", size=64 * MIB, data=2 * MIB)
    run_boxpack(disk, "--provider", "libvirt", "-o", tmp_path / "d.box")
    proc = run_boxpack("test", tmp_path / "d.box", "--ssh-key", tmp_path / "nokey", check=False)
    assert proc.returncode == 2 and "no such SSH key" in proc.stderr.decode()


# A boot sector that reads 64 sectors from LBA 1 with INT 13h AH=42h, for ever: a guest that reads its disk.
#   xor ax,ax; mov ds,ax; mov si,dap; again: mov ah,0x42; int 0x13; jmp again
#   dap: size 16, 64 sectors, to 1000:0000, from LBA 1
READER = bytes.fromhex("31c08ed8be0d7cb442cd13ebfa" "10004000" "00000010" "0100000000000000")


@pytest.mark.first_case_quick
@pytest.mark.skipif(not shutil.which("qemu-system-x86_64"), reason="QEMU is not installed")
@pytest.mark.parametrize("boot_sector, stalls", [(READER, False), (b"", True)], ids=["reads its disk", "reads nothing"])
def test_a_guest_that_reads_nothing_of_its_disk_is_a_kvm_that_cannot_run_it(tmp_path: Path, boot_sector: bytes,
                                                                             stalls: bool) -> None:
    """What kvm-pvm does to GRUB is what SeaBIOS does without a boot sector: 512 bytes read, and nothing after."""
    image = tmp_path / "disk.raw"
    with open(image, "wb") as f:
        f.truncate(4 * MIB)
        if boot_sector:
            f.write(boot_sector)
            f.seek(510)
            f.write(b"\x55\xaa")
    vm = boottest.provider_class("libvirt").test_vm({})
    cmd = boottest.qemu_command(image, "amd64", vm, None, "tcg", 2222, tmp_path, boottest.TestOptions(memory=64))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert boottest._kvm_stalls(proc, tmp_path / "qmp.sock", seconds=8) is stalls
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(("provider", "noted"), [("vmware_desktop", True), ("parallels", True), ("libvirt", False)])
def test_an_arm64_box_on_sata_is_tested_on_nvme_and_says_so(tmp_path: Path, provider: str, noted: bool) -> None:
    """AAVMF cannot boot from AHCI: the VM gets NVMe instead, and the result says so."""
    disk = make_disk.make(tmp_path / "d.img", size=64 * MIB, data=2 * MIB, arch="arm64")
    run_boxpack(disk, "--provider", provider, "-o", tmp_path / "d.box")
    key = tmp_path / "key"
    key.write_text("not a real key\n")
    proc = run_boxpack("test", tmp_path / "d.box", "--json", "--ssh-key", key, env={"PATH": str(tmp_path)}, check=False)
    result = json.loads(proc.stdout)
    validate(result, "test-result.schema.json", "boxpack test --json")
    assert result["architecture"] == "arm64" and "qemu-system-aarch64" in result["error"]
    assert result["error"].endswith(told_to_install("arm64", "efi"))
    assert bool(result["notes"]) is noted and all("on nvme, not sata" in n for n in result["notes"])
