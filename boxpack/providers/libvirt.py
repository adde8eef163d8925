"""The vagrant-libvirt box (format v1): box.img (qcow2), metadata.json, Vagrantfile.

vagrant-libvirt reads `format` and `virtual_size` (whole GiB, multiplied by
1024**3) from metadata.json and never inspects box.img, so virtual_size is
rounded up: rounded down, the volume is smaller than the disk.
"""

from __future__ import annotations

from ..archive import Member
from ..metadata import metadata_json, virtual_size_gib
from ..qcow2 import COMPAT_VERSIONS, Qcow2Layout
from . import Job, include_members

NAME = "libvirt"

# vagrant-libvirt defaults to driver "kvm", which fails on hosts without usable
# KVM (no VT-x/AMD-V, nested guests); pick it at `vagrant up` time instead.
VAGRANTFILE = """\
# Vagrantfile of a libvirt box made by boxpack. Settings in your own
# Vagrantfile override these.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
    # KVM where this host can run it, plain QEMU (TCG) elsewhere.
    cpuinfo = File.read("/proc/cpuinfo") rescue ""
    kvm = File.exist?("/dev/kvm") && (cpuinfo !~ /^flags\\s*:/ || cpuinfo =~ /\\b(vmx|svm)\\b/)
    libvirt.driver = kvm ? "kvm" : "qemu"
  end
end
"""


def metadata(job: Job) -> dict:
    meta = {"provider": NAME, "format": "qcow2", "virtual_size": virtual_size_gib(job.disk.size)}
    if job.architecture:
        meta["architecture"] = job.architecture
    return meta


def members(job: Job) -> list[Member]:
    layout = Qcow2Layout(job.disk.size, job.clusters, COMPAT_VERSIONS[job.qcow2_compat])
    return [
        Member.from_bytes("metadata.json", metadata_json(metadata(job))),
        Member.from_bytes("Vagrantfile", job.vagrantfile or VAGRANTFILE.encode()),
        Member("box.img", layout.image_size, lambda: layout.stream(job.disk, job.progress)),
        *include_members(job),
    ]
