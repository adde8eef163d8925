"""`boxpack test`: boot a box in QEMU and check what `vagrant up` needs of it, before it is published.

The box's disk is written to a sparse raw file (whatever its format, read
through the same sources as packing), or, for a provider whose format QEMU
reads itself (Parallels), copied out as it is; never modifying the box; booted
with qemu-system-<arch>: KVM where it can run a guest, TCG elsewhere; the
box's firmware (SeaBIOS, or OVMF/AAVMF for a UEFI disk); the disk bus and NIC
the provider gives the VM; user-mode networking with SSH forwarded on
127.0.0.1. Then, as Vagrant does on `vagrant up`: SSH as `vagrant` with
Vagrant's insecure key, passwordless sudo, the user's command. OpenSSH's `ssh`
client runs the checks: it is on every machine that runs Vagrant, and no
Python SSH library joins the dependencies for it.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ..disk.esp import EspProbe, architecture
from ..disk.partitions import read_partition_table
from ..disk.source import CLUSTER
from ..errors import BadOption, BoxpackError, CannotRun, OutputFailed
from ..providers import DEFAULT, PROVIDERS, Provider, TestVm
from .. import metadata
from ..sources import box as boxfile
from ..sources.open import open_source

SSH_USER = "vagrant"
# Vagrant's insecure private key: what Vagrant copies to ~/.vagrant.d, and where packages install it.
KEY_CANDIDATES = (
    "~/.vagrant.d/insecure_private_key",
    "/opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant",
    "/opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.key.rsa",
    "/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant",
    "/usr/share/vagrant/gems/gems/vagrant-*/keys/vagrant",
    "/usr/lib/ruby/vendor_ruby/vagrant/keys/vagrant",
)
# UEFI firmware as one file (code and variables), where Debian, Ubuntu, Fedora and Arch install it.
OVMF = ("/usr/share/ovmf/OVMF.fd", "/usr/share/qemu/OVMF.fd", "/usr/share/OVMF/OVMF.fd", "/usr/share/edk2/ovmf/OVMF.fd",
        "/usr/share/edk2/x64/OVMF.fd", "/usr/share/edk2-ovmf/x64/OVMF.fd")
AAVMF = ("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd", "/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/edk2/aarch64/QEMU_EFI.fd",
         "/usr/share/edk2/aarch64/QEMU_CODE.fd")
# UEFI as code and a variable store apart, for a VM whose consumer gives it pflash (UTM copies its
# edk2 variable template beside the VM: Services/UTMQemuVirtualMachine.swift, qemuEnsureEfiVarsAvailable).
PFLASH = {
    "amd64": (("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
              ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
              ("/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd")),
    "arm64": (("/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd"),
              ("/usr/share/edk2/aarch64/QEMU_CODE.fd", "/usr/share/edk2/aarch64/QEMU_VARS.fd")),
}
QEMU = {"amd64": "qemu-system-x86_64", "arm64": "qemu-system-aarch64"}
QEMU_PACKAGE = {"amd64": "qemu-system-x86", "arm64": "qemu-system-arm"}
# Under a KVM that runs the guest, its boot loader has read its kernel (MiBs) within KVM_PROBE seconds,
# after a menu countdown of the usual 0-5 s. Where kvm-pvm runs the host (measured here), GRUB reads
# 136 KiB (its core and modules) and the vCPU then fails on every instruction, for ever.
KVM_PROBE = 20
KVM_PROGRESS = 2**20

T = TypeVar("T")


@dataclass
class TestOptions:
    timeout: int = 600  # seconds for the boot and the checks
    command: str | None = None  # run in the guest after the checks
    ssh_key: str | os.PathLike[str] | None = None  # default: Vagrant's insecure key, as installed here
    memory: int = 1024  # MiB
    cpus: int = 2


@dataclass
class Check:
    name: str
    passed: bool
    detail: str = ""


@dataclass
class TestResult:
    box: str
    provider: str = ""
    architecture: str = ""
    firmware: str = ""
    accelerator: str = ""
    qemu: list[str] = field(default_factory=list)
    boot_seconds: float | None = None
    checks: list[Check] = field(default_factory=list)
    console_tail: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # where the VM differs from the provider's, and why
    error: str | None = None  # why the test could not run
    error_code: int = 0  # the exit status that error gives (errors.py): 4 when this machine lacks QEMU

    @property
    def exit_code(self) -> int:
        if self.error:
            return self.error_code
        return 0 if self.checks and all(c.passed for c in self.checks) else 1


class Missing(CannotRun):
    """What this machine lacks for a boot test: each thing with the Debian package that brings it, so that one
    line names everything to install rather than one thing per run."""

    def __init__(self, *needs: tuple[str, str]) -> None:
        self.needs = needs
        whats = [what for what, _ in needs]
        listed = whats[0] if len(whats) == 1 else ", ".join(whats[:-1]) + " and " + whats[-1]
        packages = " ".join(dict.fromkeys(package for _, package in needs))
        hint = "; or give --ssh-key FILE" if any(what == INSECURE_KEY for what in whats) else ""
        super().__init__(f"{listed} {'is' if len(needs) == 1 else 'are'} not installed (Debian: apt install {packages}{hint})")


INSECURE_KEY = "Vagrant's insecure key"


def find_key(given: str | os.PathLike[str] | None) -> Path:
    if given:
        key = Path(given)
        if not key.is_file():
            raise BadOption(f"{key}: no such SSH key")
        return key
    for pattern in KEY_CANDIDATES:
        for match in sorted(glob.glob(os.path.expanduser(pattern))):
            return Path(match)
    raise Missing((INSECURE_KEY, "vagrant"))


def _uefi(arch: str) -> tuple[str, str]:
    """(the firmware's name, its Debian package) for arch."""
    return ("AAVMF", "qemu-efi-aarch64") if arch == "arm64" else ("OVMF", "ovmf")


def find_firmware(arch: str, firmware: str) -> str | None:
    """The UEFI firmware file for arch, or None for BIOS (QEMU's SeaBIOS)."""
    if firmware != "efi" and arch != "arm64":
        return None
    found = next((f for f in (AAVMF if arch == "arm64" else OVMF) if os.path.isfile(f)), None)
    if found is None:
        name, package = _uefi(arch)
        raise Missing((f"the {name} firmware this UEFI box boots with", package))
    return found


def find_pflash(arch: str) -> tuple[str, str]:
    """(code, variable template) of the UEFI firmware for arch, as two files."""
    found = next((pair for pair in PFLASH.get(arch, ()) if all(os.path.isfile(f) for f in pair)), None)
    if found is None:
        name, package = _uefi(arch)
        raise Missing((f"the {name} firmware's code and variables files this box boots from pflash", package))
    return found


def find_program(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise Missing((name, package))
    return found


def kvm_usable(arch: str) -> bool:
    """KVM when /dev/kvm opens and the host's CPU can run this architecture's guests; TCG otherwise."""
    host = os.uname().machine
    if {"x86_64": "amd64", "aarch64": "arm64"}.get(host) != arch:
        return False
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def provider_class(provider: str) -> type[Provider]:
    """The provider whose consumer's VM boxpack test imitates."""
    if provider not in PROVIDERS:
        raise CannotRun(f"a {provider!r} box: boxpack test knows the VMs that {', '.join(PROVIDERS)} give their guests")
    return PROVIDERS[provider]


# Debian 12's AAVMF (edk2 2022.11, ArmVirtQemu) has no AHCI or IDE driver (ArmVirtPkg/ArmVirtQemuFvMain.fdf.inc
# lists virtio-blk, virtio-scsi, USB mass storage and, since, NVMe), so it cannot load a boot loader from
# them: measured here, its shell maps no disk on AHCI and boots the same disk on NVMe, virtio-scsi and USB.
# An arm64 box on SATA (the firmware of VMware Fusion and Parallels on Apple silicon reads SATA) is tested on
# NVMe, the other PCI storage those offer; the guest then needs nvme, not ahci, in its initramfs.
AAVMF_BUS = {"sata": "nvme", "ide": "nvme"}

BUSES = {
    "virtio": ["-device", "virtio-blk-pci,drive=disk0"],
    "sata": ["-device", "ahci,id=ahci0", "-device", "ide-hd,drive=disk0,bus=ahci0.0"],
    "nvme": ["-device", "nvme,drive=disk0,serial=disk0"],
    "ide": ["-device", "ide-hd,drive=disk0,bus=ide.0"],
    "scsi": ["-device", "lsi53c895a,id=scsi0", "-device", "scsi-hd,drive=disk0,bus=scsi0.0"],
}


def qemu_command(image: Path, arch: str, vm: TestVm, firmware: str | tuple[str, str] | None, accelerator: str,
                 port: int, work: Path, options: TestOptions) -> list[str]:
    """The QEMU command line that boots the box's disk as its provider would; console and QMP socket in work.
    firmware: a unified UEFI image (-bios), (code, variables) for pflash, or None for SeaBIOS."""
    binary = QEMU.get(arch)
    if binary is None:
        raise CannotRun(f"architecture {arch!r}: boxpack test boots amd64 and arm64 boxes")
    cmd = [binary, "-accel", accelerator, "-m", str(options.memory), "-smp", str(options.cpus),
           "-display", "none", "-monitor", "none", "-serial", f"file:{work / 'serial.log'}", "-no-reboot",
           "-qmp", f"unix:{work / 'qmp.sock'},server=on,wait=off"]
    machine = vm.machine or ("virt" if arch == "arm64" else None)
    if machine:
        cmd += ["-M", machine]
    if accelerator == "kvm":
        cmd += ["-cpu", "host"]
    elif vm.cpu or arch == "arm64":
        # Under TCG an arm64 guest gets a Cortex-A72, as the libvirt and qemu boxes' Vagrantfiles ask and UTM
        # gives: `max` adds pointer authentication, whose QARMA cipher TCG computes in software on every
        # signed return (a Debian 12 boot to SSH took 162 s with it here, 72 s without).
        cmd += ["-cpu", vm.cpu or "cortex-a72"]
    if isinstance(firmware, tuple):
        cmd += ["-drive", f"if=pflash,format=raw,unit=0,file={firmware[0]},readonly=on",
                "-drive", f"if=pflash,format=raw,unit=1,file={firmware[1]}"]
    elif firmware:
        cmd += ["-bios", firmware]
    cmd += ["-drive", f"file={image},format={vm.image_format},if=none,id=disk0,snapshot=on", *BUSES[vm.bus]]
    for i, nic in enumerate(vm.nics):
        subnet = vm.subnets[i] if i < len(vm.subnets) else None
        netdev = (f",net={subnet}" if subnet else "") + (f",hostfwd=tcp:127.0.0.1:{port}-:22" if i == vm.forward else "")
        cmd += ["-netdev", f"user,id=net{i}{netdev}", "-device", f"{nic},netdev=net{i}"]
    return cmd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _extract(source, path: Path, probe: EspProbe) -> None:
    """The disk as a sparse raw file: only the clusters that hold data are written (and fed to probe)."""
    try:
        with open(path, "wb") as f:
            f.truncate(source.size)
            for cluster, data in source.scan():
                probe.feed(cluster, data)
                f.seek(cluster * CLUSTER)
                f.write(data)
    except OSError as e:  # EFBIG: ext4 holds files of up to 16 TiB; ENOSPC
        raise OutputFailed(
            f"{source.path}: its {source.size / 2**40:.1f} TiB disk does not fit a file in {path.parent} ({e.strerror}); "
            "set TMPDIR to a file system that holds it (XFS and btrfs take sparse files of exabytes)"
        ) from None


class _Qmp:
    """QEMU's machine protocol on a Unix socket: the one question boxpack asks is how much the guest read."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(5)
        self.sock.connect(str(path))
        self.io = self.sock.makefile("rw", encoding="utf-8")
        self._reply()  # the greeting
        self._ask("qmp_capabilities")

    def _reply(self) -> dict:
        while True:
            line = self.io.readline()
            if not line:
                raise OSError("QEMU closed its QMP socket")
            message = json.loads(line)
            if "event" not in message:
                return message

    def _ask(self, command: str) -> object:
        self.io.write(json.dumps({"execute": command}) + "\n")
        self.io.flush()
        return self._reply().get("return")

    def bytes_read(self) -> int:
        stats = self._ask("query-blockstats")
        return sum(int(device.get("stats", {}).get("rd_bytes", 0)) for device in stats) if isinstance(stats, list) else 0

    def close(self) -> None:
        self.io.close()
        self.sock.close()


def _kvm_stalls(proc: subprocess.Popen, qmp: Path, seconds: float = KVM_PROBE) -> bool:
    """True when KVM does not run this guest: QEMU quits within its first seconds (nested virtualisation
    without VMX), or the guest reads almost nothing of its disk (a paravirtualised KVM such as kvm-pvm that
    cannot emulate what the boot loader runs, logs INTERNAL_ERROR to the host's kernel, and spins).
    A boot loader that waits longer than KVM_PROBE seconds is booted with TCG: slower, still right."""
    deadline = time.monotonic() + seconds
    client: _Qmp | None = None
    read: int | None = None
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return True
            time.sleep(1)
            try:
                client = client or _Qmp(qmp)
                read = client.bytes_read()
            except (OSError, ValueError):
                client = None
                continue
            if read >= KVM_PROGRESS:
                return False
        return read is not None  # QEMU answered, and the guest read almost nothing
    finally:
        if client:
            client.close()


def _ssh(key: Path, port: int, command: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "ConnectTimeout=5", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
         f"{SSH_USER}@127.0.0.1", command],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def test(path: str | os.PathLike[str], options: TestOptions | None = None, say: Callable[[str], None] | None = None) -> TestResult:
    """Boot the box at path and run the checks; never raises for a box that fails, only reports."""
    o = options or TestOptions()
    say = say or (lambda message: None)
    result = TestResult(str(path))
    with tempfile.TemporaryDirectory(prefix="boxpack-test-") as tmp:
        work = Path(tmp)
        try:
            command, port, key = _prepare(Path(path), o, result, work, say)
        except BoxpackError as e:
            result.error, result.error_code = str(e), e.exit_code
            return result
        serial = work / "serial.log"
        started = time.monotonic()
        say(f"booting ({result.firmware}, {result.accelerator}) ...")
        result.qemu = command(result.accelerator)
        proc = subprocess.Popen(result.qemu, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if result.accelerator == "kvm" and _kvm_stalls(proc, work / "qmp.sock"):
            # /dev/kvm opens, but this host cannot run the guest with it: TCG, with the whole timeout.
            proc.kill()
            proc.wait()
            result.accelerator = "tcg"
            result.qemu = command("tcg")
            say("KVM cannot run this guest here; booting with TCG ...")
            started = time.monotonic()
            proc = subprocess.Popen(result.qemu, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _checks(proc, key, port, started, o, result, say)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            if result.exit_code:
                lines = serial.read_text(errors="replace").splitlines() if serial.exists() else []
                result.console_tail = lines[-25:]
    return result


def _prepare(
    path: Path, o: TestOptions, result: TestResult, work: Path, say: Callable[[str], None]
) -> tuple[Callable[[str], list[str]], int, Path]:
    """The disk extracted and the facts found: (the QEMU command for an accelerator, the SSH port, the key).
    What the machine lacks (QEMU, firmware, ssh, the key) is raised once, all of it in one line."""
    lacking: list[tuple[str, str]] = []

    def have(find: Callable[[], T]) -> T | None:
        try:
            return find()
        except Missing as e:
            lacking.extend(e.needs)
            return None

    key_file = have(lambda: find_key(o.ssh_key))  # a --ssh-key that is not there is a bad option, raised now
    try:
        meta = boxfile.read_metadata(path)
    except BoxpackError:
        meta = {}
    result.provider = str(meta.get("provider", DEFAULT))
    provider = provider_class(result.provider)  # before the disk is extracted
    vm = provider.test_vm(boxfile.read_members(path, provider.TEST_TEXTS) if provider.TEST_TEXTS else {})
    say("extracting the disk ...")
    image = work / f"disk.{vm.image_format}"
    if vm.image_format != "raw":  # the box's own file, read by QEMU's driver for its format
        boxfile.copy_disk(path, image)
    probe = EspProbe()
    with open_source(path if vm.image_format == "raw" else image, 2) as source:
        if vm.image_format == "raw":
            _extract(source, image, probe)
        else:  # a source reads its partition table once scanned: the copy, a local file, is quick to scan
            for cluster, data in source.scan():
                probe.feed(cluster, data)
        table = read_partition_table(source)
        arch = metadata.text(meta, "architecture") or source.architecture or architecture(table, probe)[0] or "amd64"
    result.architecture = str(vm.architecture or arch)
    result.firmware = vm.firmware or table.firmware()[0]
    if result.architecture not in QEMU:
        raise CannotRun(f"architecture {result.architecture!r}: boxpack test boots {' and '.join(QEMU)} boxes")
    if result.architecture == "arm64" and vm.bus in AAVMF_BUS:
        result.notes.append(f"the disk is on {AAVMF_BUS[vm.bus]}, not {vm.bus}: QEMU's AAVMF cannot boot from {vm.bus}")
        vm = dataclasses.replace(vm, bus=AAVMF_BUS[vm.bus])
    have(lambda: find_program(QEMU[result.architecture], QEMU_PACKAGE[result.architecture]))
    firmware: str | tuple[str, str] | None = None
    template = None
    if vm.pflash and (result.firmware == "efi" or result.architecture == "arm64"):
        pflash = have(lambda: find_pflash(result.architecture))
        if pflash:
            firmware, template = (pflash[0], str(work / "efi_vars.fd")), pflash[1]
    else:
        firmware = have(lambda: find_firmware(result.architecture, result.firmware))
    have(lambda: find_program("ssh", "openssh-client"))
    if lacking or key_file is None:
        raise Missing(*lacking)
    # ssh ignores a private key others may read, and packages install Vagrant's mode 0644: use a private copy.
    key = work / "key"
    shutil.copyfile(key_file, key)
    key.chmod(0o600)
    result.accelerator = "kvm" if kvm_usable(result.architecture) else "tcg"
    port = _free_port()

    def command(accelerator: str) -> list[str]:
        if template:  # a fresh variable store for each start: a KVM run given up on may have written to it
            shutil.copyfile(template, work / "efi_vars.fd")
        return qemu_command(image, result.architecture, vm, firmware, accelerator, port, work, o)

    return command, port, key


def _checks(proc: subprocess.Popen, key: Path, port: int, started: float, o: TestOptions, result: TestResult,
            say: Callable[[str], None]) -> None:
    """Wait for SSH, then the checks `vagrant up` depends on, within the timeout."""
    deadline = started + o.timeout
    say("waiting for SSH ...")
    while True:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace").strip().splitlines() if proc.stderr else []
            result.checks.append(Check("boot", False, f"QEMU exited with {proc.returncode}: {err[-1] if err else ''}"))
            return
        left = deadline - time.monotonic()
        if left <= 0:
            result.checks.append(Check("boot", False, f"no SSH login within {o.timeout} s"))
            return
        try:
            login = _ssh(key, port, "true", int(min(60, max(5, left))))
        except subprocess.TimeoutExpired:
            continue
        if login.returncode == 0:
            break
        if "Permission denied" in login.stderr:
            result.boot_seconds = time.monotonic() - started
            result.checks.append(Check("ssh as vagrant with the insecure key", False,
                                       f"sshd answers but refuses the key: {login.stderr.strip()[:200]}"))
            return
        time.sleep(2)
    result.boot_seconds = time.monotonic() - started
    result.checks.append(Check("ssh as vagrant with the insecure key", True))
    say(f"up after {result.boot_seconds:.0f} s")
    steps = [("passwordless sudo", "sudo -n true")]
    if o.command:
        steps.append((f"command: {o.command}", o.command))
    for name, command in steps:
        try:
            out = _ssh(key, port, command, max(10, int(deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            result.checks.append(Check(name, False, "timed out"))
            return
        detail = (out.stdout + out.stderr).strip()
        result.checks.append(Check(name, out.returncode == 0, detail[-300:]))
    try:
        _ssh(key, port, "sudo -n poweroff", 20)
    except subprocess.TimeoutExpired:
        pass
