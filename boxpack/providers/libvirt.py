"""The vagrant-libvirt box: box.img (qcow2), metadata.json, Vagrantfile; and the same box for vagrant-qemu.

vagrant-libvirt reads `format` and `virtual_size` (whole GiB, multiplied by
1024**3) from metadata.json and never inspects box.img, so virtual_size is
rounded up: rounded down, the volume is smaller than the disk.

Several disks: vagrant-libvirt 0.5.0 and later read a non-empty `disks` list
(lib/vagrant-libvirt/action/handle_box_image.rb) and size each disk with
`qemu-img info`; older versions read box.img and the top-level fields. So the
first disk stays box.img with the top-level fields, and `disks` lists
box.img, box_2.img, box_3.img, ... in order (box_N.img is disk N, as
`vagrant package` numbers them). A one-disk box has no `disks`.

vagrant-qemu registers the qemu provider with box_format "libvirt"
(lib/vagrant-qemu/plugin.rb) and reads the same layout; its catalog entry and
metadata say "qemu", as bento publishes it.
"""

from __future__ import annotations

from typing import Any

from ..formats.qcow2 import COMPAT_VERSIONS, Qcow2Layout
from ..member import Member
from ..metadata import GIB, metadata_json, virtual_size_gib
from ..report import Report
from ..options import provider_option
from .base import Provider, image_chunks

SETTINGS = """\
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
"""
# vagrant-libvirt defaults to driver "kvm", which fails on hosts without usable
# KVM (no VT-x/AMD-V, nested guests); the box picks it at `vagrant up` time.
X86_DRIVER = """\
    # KVM where this host can run it, plain QEMU (TCG) elsewhere.
    cpuinfo = File.read("/proc/cpuinfo") rescue ""
    kvm = File.exist?("/dev/kvm") && (cpuinfo !~ /^flags\\s*:/ || cpuinfo =~ /\\b(vmx|svm)\\b/)
    libvirt.driver = kvm ? "kvm" : "qemu"
"""
# vagrant-libvirt 0.11 describes an x86 PC unless told otherwise: config.rb's finalize! sets features
# acpi, apic and pae, a PS/2 mouse, cirrus video and cpu_mode host-model, and templates/domain.xml.erb
# writes them as they are, with <type arch= machine=> only from machine_arch and machine_type (and libvirt
# refuses a USB input on a virt machine without a USB controller, which it does not add itself, and ACPI
# on aarch64 unless the loader is pflash: "ACPI requires UEFI on this architecture"). An
# aarch64 guest (QEMU's virt machine) has none of those devices, and under TCG no host CPU to copy.
# Its loader is a unified image (Debian's qemu-efi-aarch64; Fedora's and Arch's edk2-aarch64) as a ROM
# (type 'rom', QEMU's -bios): vagrant-libvirt's `nvram` is the VM's own variable file, not a template,
# and one path in a box would be shared by all its VMs; the removable-media path the disk boots from
# needs no stored variable.
ARM64 = """\
    # An arm64 guest: QEMU's virt machine, with devices it has.
    libvirt.machine_type = "virt"
    libvirt.machine_arch = "aarch64"
    libvirt.features = []  # no ACPI: libvirt refuses it without pflash UEFI, and Linux reads the device tree
    libvirt.usb_controller :model => "qemu-xhci"  # libvirt gives a virt machine no USB controller of its own
    libvirt.input :type => "mouse", :bus => "usb"
    libvirt.video_type = "virtio"
    # KVM on an arm64 host that has it; elsewhere QEMU emulates a Cortex-A72 (TCG).
    kvm = File.exist?("/dev/kvm") && RbConfig::CONFIG["host_cpu"] =~ /\\A(aarch64|arm64)/
    libvirt.driver = kvm ? "kvm" : "qemu"
    libvirt.cpu_mode = kvm ? "host-passthrough" : "custom"
    libvirt.cpu_model = "cortex-a72" unless kvm
    aavmf = %w[/usr/share/qemu-efi-aarch64/QEMU_EFI.fd /usr/share/edk2/aarch64/QEMU_EFI.fd].find { |f| File.exist?(f) }
    if aavmf
      libvirt.loader = aavmf
    else
      $stderr.puts "This arm64 box boots with UEFI: install AAVMF (Debian: apt install qemu-efi-aarch64) or set libvirt.loader."
    end
"""

# vagrant-libvirt passes `loader` alone as a ROM (QEMU -bios), which needs a
# unified OVMF image (code and variables in one file); these are where
# distributions install one.
FIND_OVMF = """\
    ovmf = %w[/usr/share/ovmf/OVMF.fd /usr/share/qemu/OVMF.fd /usr/share/OVMF/OVMF.fd
              /usr/share/edk2/ovmf/OVMF.fd /usr/share/edk2/x64/OVMF.4m.fd /usr/share/edk2-ovmf/x64/OVMF.fd
             ].find { |f| File.exist?(f) }
"""
EFI_SETTINGS = """\
    # This disk boots with UEFI only: start it with the host's OVMF firmware.
""" + FIND_OVMF + """\
    if ovmf
      libvirt.loader = ovmf
    else
      $stderr.puts "This box boots with UEFI only: install OVMF (Debian: apt install ovmf) or set libvirt.loader."
    end
"""


def disk_name(index: int) -> str:
    return "box.img" if index == 0 else f"box_{index + 1}.img"


class Libvirt(Provider):
    NAME = "libvirt"
    TEST_DEVICES = ("virtio", "virtio-net-pci")  # vagrant-libvirt's disk_bus and nic_model_type defaults
    DISK_FORMAT = "qcow2"
    OPTIONS = (
        provider_option(
            "qcow2_compat",
            "--qcow2-compat",
            "qcow2 version: 1.1 (v3, default) or 0.10 (v2, for QEMU older than 1.1)",
            default="1.1",
            choices=tuple(COMPAT_VERSIONS),
        ),
    )

    MEMBERS = ("box.img", "box_[0-9]*.img")

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"provider": self.NAME, "format": "qcow2", "virtual_size": virtual_size_gib(self.job.disk.size)}
        if len(self.job.disks) > 1:
            meta["disks"] = [{"path": disk_name(i)} for i in range(len(self.job.disks))]
        if self.job.architecture:
            meta["architecture"] = self.job.architecture
        return meta

    def settings(self) -> str:
        if self.job.architecture == "arm64":  # UEFI whatever the partition table says: arm64 has no BIOS
            return SETTINGS + ARM64 + "  end\n"
        return SETTINGS + X86_DRIVER + (EFI_SETTINGS if self.job.firmware == "efi" else "") + "  end\n"

    def members(self) -> list[Member]:
        job = self.job
        compat = COMPAT_VERSIONS[job.settings["qcow2_compat"]]
        layouts = [Qcow2Layout(d.source.size, d.clusters, compat) for d in job.disks]
        return [
            Member.from_bytes("metadata.json", metadata_json(self.metadata())),
            Member.from_bytes("Vagrantfile", self.vagrantfile(self.settings())),
            *(Member(disk_name(i), lay.image_size, image_chunks(lay, d))
              for i, (lay, d) in enumerate(zip(layouts, job.disks))),
            *self.include_members(),
        ]

    @classmethod
    def check_box(cls, report: Report, texts: dict[str, bytes]) -> None:
        """vagrant-libvirt's rules: qcow2 disks, named by `disks` (format v2) or box.img (v1), big enough volumes.

        Disk paths are joined to the box directory by vagrant-libvirt
        (lib/vagrant-libvirt/action/handle_box_image.rb), so an absolute path
        or one with '..' reads a file outside the box.
        """
        meta = report.metadata
        names = {m["name"].removeprefix("./") for m in report.members}
        disks = meta.get("disks")
        if disks is not None:
            if not isinstance(disks, list) or not disks:
                report.add("libvirt-disks", "error", "metadata.json: disks must be a non-empty list")
                return
            facts = {d.get("member"): d for d in report.disks}
            volumes: dict[str, int] = {}
            for i, d in enumerate(disks):
                path = d.get("path") if isinstance(d, dict) else None
                if not isinstance(path, str) or not path:
                    report.add("libvirt-disks", "error", f"metadata.json: disks[{i}] has no path")
                    continue
                if path.startswith("/") or ".." in path.replace("\\", "/").split("/"):
                    report.add("unsafe-path", "error", f"metadata.json: disks[{i}] path {path!r} points outside the box")
                    continue
                member = path.removeprefix("./")
                if member not in names:
                    report.add("libvirt-disks", "error", f"metadata.json: disks[{i}] path {path!r} is not in the box")
                elif member not in facts:  # verify reads every member metadata.json names as a disk, if it comes after
                    report.add("libvirt-disks", "error", f"metadata.json: disks[{i}] path {path!r} names a member that "
                               "is no disk image boxpack read (a disk comes after metadata.json, and is not a text of the box)")
                elif not str(facts[member].get("format", "")).startswith("qcow2"):
                    # handle_box_image.rb, verify_box_format: only qcow2
                    report.add("libvirt-not-qcow2", "error", f"{member} is {facts[member].get('format')}, vagrant-libvirt needs qcow2")
                # The volume is named after `name`, else the path without its extension; two alike are refused
                # (handle_box_image.rb, BoxFormatDuplicateVolume).
                volume = str(d.get("name", path.rsplit(".", 1)[0] if "." in path.rsplit("/", 1)[-1] else path))
                if volume in volumes:
                    report.add("libvirt-disks", "error", f"metadata.json: disks[{i}] and disks[{volumes[volume]}] get the same volume name {volume!r}")
                volumes.setdefault(volume, i)
            if "format" not in meta or "virtual_size" not in meta or "box.img" not in names:
                report.add("libvirt-disks-only", "info", "no box.img with top-level format and virtual_size: vagrant-libvirt "
                           "before 0.5.0 cannot use this box, later versions and vagrant-qemu read `disks`")
            return
        if "box.img" not in names:
            report.add("provider-mismatch", "error", "metadata.json says libvirt but there is no box.img")
            return
        if report.disk.get("member") == "box.img" and not str(report.disk.get("format", "")).startswith("qcow2"):
            report.add("libvirt-not-qcow2", "error", f"box.img is {report.disk.get('format')}, vagrant-libvirt needs qcow2")
        size = report.disk.get("virtual_size")
        declared = meta.get("virtual_size")
        if isinstance(declared, int) and size and declared * GIB < size:
            report.add(
                "virtual-size-too-small",
                "error",
                f"metadata.json says virtual_size {declared} GiB but box.img is {size} bytes "
                f"({-(-size // GIB)} GiB rounded up); vagrant-libvirt would make the volume too small",
            )
