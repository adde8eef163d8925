"""The vagrant-libvirt box (format v1): box.img (qcow2), metadata.json, Vagrantfile.

vagrant-libvirt reads `format` and `virtual_size` (whole GiB, multiplied by
1024**3) from metadata.json and never inspects box.img, so virtual_size is
rounded up: rounded down, the volume is smaller than the disk.
"""

from __future__ import annotations

from ..archive import Member
from ..metadata import metadata_json, virtual_size_gib
from ..qcow2 import COMPAT_VERSIONS, Qcow2Layout
from . import Provider

# vagrant-libvirt defaults to driver "kvm", which fails on hosts without usable
# KVM (no VT-x/AMD-V, nested guests); the box picks it at `vagrant up` time.
SETTINGS = """\
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
    # KVM where this host can run it, plain QEMU (TCG) elsewhere.
    cpuinfo = File.read("/proc/cpuinfo") rescue ""
    kvm = File.exist?("/dev/kvm") && (cpuinfo !~ /^flags\\s*:/ || cpuinfo =~ /\\b(vmx|svm)\\b/)
    libvirt.driver = kvm ? "kvm" : "qemu"
"""

# vagrant-libvirt passes `loader` alone as a ROM (QEMU -bios), which needs a
# unified OVMF image (code and variables in one file); these are where
# distributions install one.
EFI_SETTINGS = """\
    # This disk boots with UEFI only: start it with the host's OVMF firmware.
    ovmf = %w[/usr/share/ovmf/OVMF.fd /usr/share/qemu/OVMF.fd /usr/share/OVMF/OVMF.fd
              /usr/share/edk2/ovmf/OVMF.fd /usr/share/edk2/x64/OVMF.4m.fd /usr/share/edk2-ovmf/x64/OVMF.fd
             ].find { |f| File.exist?(f) }
    if ovmf
      libvirt.loader = ovmf
    else
      $stderr.puts "This box boots with UEFI only: install OVMF (Debian: apt install ovmf) or set libvirt.loader."
    end
"""


class Libvirt(Provider):
    NAME = "libvirt"

    def metadata(self) -> dict:
        meta = {"provider": self.NAME, "format": "qcow2", "virtual_size": virtual_size_gib(self.job.disk.size)}
        if self.job.architecture:
            meta["architecture"] = self.job.architecture
        return meta

    def members(self) -> list[Member]:
        job = self.job
        layout = Qcow2Layout(job.disk.size, job.clusters, COMPAT_VERSIONS[job.qcow2_compat])
        block = SETTINGS + (EFI_SETTINGS if job.firmware == "efi" else "") + "  end\n"
        return [
            Member.from_bytes("metadata.json", metadata_json(self.metadata())),
            Member.from_bytes("Vagrantfile", self.vagrantfile(block)),
            Member("box.img", layout.image_size, lambda: layout.stream(job.disk)),
            *self.include_members(),
        ]
