"""The qemu box, for vagrant-qemu (ppggff/vagrant-qemu): the libvirt layout with provider "qemu".

vagrant-qemu registers its provider with box_format "libvirt"
(lib/vagrant-qemu/plugin.rb) and reads `disks` or box.img, qcow2 only
(lib/vagrant-qemu/action/import.rb); bento publishes its libvirt boxes
under "qemu" this way, since a catalog entry's provider must equal the box's
(Vagrant's lib/vagrant/box_collection.rb, BoxProviderDoesntMatch).

Its defaults (lib/vagrant-qemu/config.rb, finalize!) are the host's
architecture, with KVM (Linux), HVF (macOS) or WHPX for a guest of the
host's architecture and TCG otherwise, and firmware only for aarch64. So the
Vagrantfile names the guest's architecture, falls back to TCG on a Linux host
without usable KVM, and gives an x86-64 UEFI-only disk the host's OVMF.
"""

from __future__ import annotations

from .libvirt import FIND_OVMF, Libvirt

# Vagrant's architecture names -> QEMU's (qemu-system-<arch>), vagrant-qemu's machine for it, and the CPU
# TCG emulates: for aarch64 a Cortex-A72, since `max` adds pointer authentication, slow in software
# (see inspect/boottest.py, qemu_command).
QEMU_ARCH = {"amd64": ("x86_64", "q35", "max"), "arm64": ("aarch64", "virt,highmem=on", "cortex-a72")}

NO_KVM = """\
    # Without usable KVM (no VT-x/AMD-V, a nested guest) QEMU must emulate (TCG).
    cpuinfo = File.read("/proc/cpuinfo") rescue ""
    if RUBY_PLATFORM =~ /linux/ && !(File.exist?("/dev/kvm") && (cpuinfo !~ /^flags\\s*:/ || cpuinfo =~ /\\b(vmx|svm)\\b/))
      qe.machine = "%s,accel=tcg"
      qe.cpu = "%s"
    end
"""

EFI = """\
    # This disk boots with UEFI only: start it with the host's OVMF firmware.
""" + FIND_OVMF + """\
    if ovmf
      qe.extra_qemu_args = ["-bios", ovmf]
    else
      $stderr.puts "This box boots with UEFI only: install OVMF (Debian: apt install ovmf) or add -bios to qe.extra_qemu_args."
    end
"""


class Qemu(Libvirt):
    NAME = "qemu"
    TEST_DEVICES = ("virtio", "virtio-net-pci")  # vagrant-qemu's drive_interface and net_device defaults

    def settings(self) -> str:
        lines = ["  config.vm.provider :qemu do |qe|\n"]
        arch, machine, cpu = QEMU_ARCH.get(self.job.architecture or "", (None, None, None))
        if arch:
            lines.append(f'    qe.arch = "{arch}"\n')
            lines.append(NO_KVM % (machine, cpu))
        if self.job.firmware == "efi" and arch == "x86_64":
            lines.append(EFI)
        lines.append("  end\n")
        return "".join(lines)
