"""The boxpack command line: argument parsing, messages and exit codes around pack()."""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__
from .compress import DEFAULT_LEVEL
from .errors import BoxpackError
from .ovf import DEFAULT_OS_TYPE, OS_TYPES
from .pack import COMPRESSIONS, FIRMWARES, pack
from .progress import Progress, human_size
from .providers import PROVIDERS
from .qcow2 import COMPAT_VERSIONS

EPILOG = """\
examples:
  boxpack disk.img --provider libvirt              writes disk-libvirt.box
  boxpack disk.img --provider libvirt --provider virtualbox -o boxes/
  boxpack disk.img --provider libvirt -o - | curl -T - https://example.org/upload/disk.box

Both providers come from one read of the disk. A VirtualBox box's VMDK size is
known only once it is compressed, so the VMDK is spooled to an unnamed
temporary file next to the output box (in $TMPDIR with -o -) and then copied
into the box.

The box is written under a temporary name next to its final path and renamed
when complete. Reproducible: the same disk and SOURCE_DATE_EPOCH give the same
bytes (the tar mtime is SOURCE_DATE_EPOCH, else 1980-01-01).
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + error
        self.exit(2, f"boxpack: error: {message} (see boxpack --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="boxpack",
        description="Turn a raw disk image into Vagrant boxes (libvirt: qcow2; VirtualBox: streamOptimized VMDK "
        "+ OVF), natively: no qemu-img, tar or jq needed.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("disk", metavar="DISK", help="raw disk image (as mkosi, kiwi, osbuild or dd write it)")
    p.add_argument(
        "--provider",
        action="append",
        choices=list(PROVIDERS),
        required=True,
        help="box provider; repeat for several boxes from one read of the disk",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="output box file, a directory for several providers, or - for stdout (default: ./<stem>-<provider>.box)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--compression", choices=COMPRESSIONS, default="gzip", help="box compression (default: gzip)")
    p.add_argument(
        "--level",
        type=int,
        default=DEFAULT_LEVEL,
        help=f"gzip level 0-12 (libdeflate; 0 stores, default {DEFAULT_LEVEL})",
    )
    p.add_argument("--threads", type=int, metavar="N", help="compression threads (default: all cores)")
    p.add_argument(
        "--qcow2-compat",
        choices=list(COMPAT_VERSIONS),
        default="1.1",
        help="qcow2 version: 1.1 (v3, default) or 0.10 (v2, for QEMU older than 1.1)",
    )
    p.add_argument("--vagrantfile", metavar="FILE", help="use this Vagrantfile instead of the provider's default")
    p.add_argument(
        "--include", metavar="FILE", action="append", default=[], help="add FILE to the box (repeatable)"
    )
    p.add_argument(
        "--arch",
        metavar="ARCH",
        help="box architecture, Vagrant's name (amd64, arm64, i386, ...); default: from the GPT root partition type",
    )
    p.add_argument(
        "--firmware",
        choices=FIRMWARES,
        help="firmware the box starts the VM with; default: efi for a disk that only boots with UEFI, else bios",
    )
    vbox = p.add_argument_group("VirtualBox box")
    vbox.add_argument("--cpus", type=int, default=2, help="virtual CPUs (default: 2)")
    vbox.add_argument("--memory", type=int, default=1024, metavar="MIB", help="memory in MiB (default: 1024)")
    vbox.add_argument(
        "--os-type", default=DEFAULT_OS_TYPE, metavar="TYPE", help=f"VirtualBox OS type (default: {DEFAULT_OS_TYPE}; also "
        + ", ".join(t for t in OS_TYPES if t != DEFAULT_OS_TYPE) + ")"
    )
    vbox.add_argument("--vm-name", metavar="NAME", help="VM name in box.ovf (default: the disk's file name)")
    vbox.add_argument(
        "--base-mac",
        metavar="auto|MAC",
        help="set config.vm.base_mac, only needed by Vagrant < 2.2: auto derives one from the disk, "
        "or give 12 hex digits (default: none, Vagrant generates one per VM)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary line")
    p.add_argument("--version", action="version", version=f"boxpack {__version__}")
    return p


class _OneLine(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"boxpack: {record.levelname.lower()}: {record.getMessage()}\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logger = logging.getLogger("boxpack")
    logger.addHandler(_OneLine())
    logger.propagate = False
    progress = Progress() if sys.stderr.isatty() and not args.quiet else None
    output = sys.stdout.buffer if args.output == "-" else args.output
    if output is sys.stdout.buffer and sys.stdout.isatty():
        print("boxpack: error: refusing to write a box to a terminal; redirect stdout", file=sys.stderr)
        return 1
    try:
        results = pack(
            args.disk,
            args.provider,
            output,
            force=args.force,
            compression=args.compression,
            level=args.level,
            threads=args.threads,
            qcow2_compat=args.qcow2_compat,
            vagrantfile=args.vagrantfile,
            include=args.include,
            architecture=args.arch,
            firmware=args.firmware,
            cpus=args.cpus,
            memory=args.memory,
            os_type=args.os_type,
            vm_name=args.vm_name,
            base_mac=args.base_mac,
            progress=progress,
        )
    except BoxpackError as e:
        if progress:
            progress.finish()
        print(f"boxpack: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if progress:
            progress.finish()
        print("boxpack: interrupted; no box was written", file=sys.stderr)
        return 130
    if not args.quiet:
        for r in results:
            where = r.path.name if r.path else "<stdout>"
            print(
                f"boxpack: {where}: {r.provider} box, {human_size(r.size)}, firmware {r.firmware}, "
                f"arch {r.architecture or 'unknown'}, {r.checksum_type} {r.checksum}, {r.seconds:.1f} s",
                file=sys.stderr,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
