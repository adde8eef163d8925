"""boxpack test: boot a box in QEMU and check what `vagrant up` needs; also `boxpack SOURCE --test`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from ..inspect import boottest
from ..inspect.render import printable
from .common import Parser


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="boxpack test",
        description="Boot a box in QEMU (KVM where it can, TCG elsewhere) with the firmware, disk bus and NIC its "
        "provider gives the VM, and check what `vagrant up` needs: SSH as vagrant with Vagrant's insecure key, "
        "passwordless sudo, then --command. Exit 0 when every check passes, 1 when one fails or the box does not "
        "come up in time, 4 when the test cannot run here (2 for a bad option). Needs qemu-system-x86_64 (or "
        "-aarch64), OVMF for UEFI boxes (AAVMF for arm64), ssh and Vagrant's insecure key; one line names all that "
        "is missing.",
    )
    p.add_argument("box", metavar="BOX", help="a box file (or a disk image)")
    p.add_argument("--timeout", type=int, default=600, metavar="SECONDS", help="for the boot and the checks (default: 600)")
    p.add_argument("--command", metavar="CMD", help="run CMD in the guest after the checks; it must exit 0")
    p.add_argument("--ssh-key", metavar="FILE", help="the private key (default: Vagrant's insecure key, as installed here)")
    p.add_argument("--memory", type=int, default=1024, metavar="MIB", help="guest memory (default: 1024)")
    p.add_argument("--cpus", type=int, default=2, metavar="N", help="guest CPUs (default: 2)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    options = boottest.TestOptions(args.timeout, args.command, args.ssh_key, args.memory, args.cpus)
    return run_test(args.box, options, args.json)


def run_test(box: str, options: boottest.TestOptions, as_json: bool) -> int:
    say = (lambda m: print(f"boxpack: test: {m}", file=sys.stderr)) if sys.stderr.isatty() and not as_json else None
    result = boottest.test(box, options, say)
    if as_json:
        fields = {k: v for k, v in dataclasses.asdict(result).items() if k != "error_code"}
        print(json.dumps({**fields, "exit_code": result.exit_code}, indent=2))
    else:
        print_result(result, box)
    return result.exit_code


def print_result(result: boottest.TestResult, box: str) -> None:
    """A boot test's result as people read it: the checks on stdout, why it could not run on stderr."""
    if result.error:
        print(f"boxpack: test: {result.error}", file=sys.stderr)
        return
    boot = f"{result.boot_seconds:.0f} s" if result.boot_seconds is not None else "did not come up"
    print(f"{box}: {result.provider} box, {result.architecture}, firmware {result.firmware}, {result.accelerator}, boot {boot}")
    for note in result.notes:
        print(f"  note: {note}")
    for c in result.checks:
        print(f"  {'PASS' if c.passed else 'FAIL'}  {c.name}" + (f": {c.detail}" if c.detail and not c.passed else ""))
    if result.console_tail:
        print("  console (last lines):")
        print("".join(f"    {printable(line)}\n" for line in result.console_tail), end="")
    print(f"{box}: " + ("OK" if result.exit_code == 0 else "FAILED"))
