"""boxpack inspect and boxpack verify: what a box or disk is, and whether its consumers accept it."""

from __future__ import annotations

import argparse
import os
import sys

from .. import signatures
from ..inspect import verify as verifying
from ..inspect.render import render_inspect, render_verify
from ..errors import BadInput, BadOption, BoxpackError, OutputFailed
from ..report import Report
from .common import Parser


def inspect(argv: list[str]) -> int:
    return _examine("inspect", argv)


def verify(argv: list[str]) -> int:
    return _examine("verify", argv)


def build_parser(action: str) -> argparse.ArgumentParser:
    what = {
        "inspect": "Say what a box or disk is: members, metadata, Vagrantfile settings, disk format and sizes, "
        "OVF hardware, partition table.",
        "verify": "Check a box against every rule its consumers (Vagrant, vagrant-libvirt, VirtualBox, bsdtar, qemu) "
        "enforce. Exit 0 when clean or only warned about, 1 when errors were found (or, with --strict, warnings) "
        "or the box could not be read.",
    }[action]
    p = Parser(prog=f"boxpack {action}", description=what)
    p.add_argument("path", metavar="BOX" if action == "verify" else "BOX|DISK", help="a box file, - for stdin, or (inspect) a disk")
    p.add_argument("--json", action="store_true", help="print JSON")
    if action == "verify":
        p.add_argument("--checksum", metavar="TYPE:HEX", help="the box's expected digest, e.g. sha256:abc...")
        p.add_argument("--catalog", metavar="FILE", help="check the box's checksum against this catalog's entry")
        p.add_argument("--box-version", metavar="V", help="the catalog version to look in")
        p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
        p.add_argument("--signed-by", metavar="ALLOWED_SIGNERS",
                       help="the box must carry a signature (BOX.sig) by a key this allowed_signers file (ssh-keygen(1)) "
                       "allows for the vagrant-box namespace; the signer is named")
        p.add_argument("--signature", metavar="FILE", help="with --signed-by: the signature, where it is not BOX.sig")
    return p


def _check_signature(report: Report, box: str, signature: str, allowed: str) -> None:
    """The box's signature checked (ssh-keygen -Y verify): its signer named, or an error that names the signature."""
    if box == "-":
        raise BadOption("--signed-by reads the box again to check its signature: give the box as a file, not -")
    if not os.path.isfile(allowed):
        raise BadOption(f"--signed-by {allowed}: no such allowed_signers file")
    try:
        with open(signature, "rb") as f:
            signed = f.read(signatures.LIMIT)
    except FileNotFoundError:
        report.add("signature-missing", "error", f"{signature}: no signature (--signed-by asks for one)")
        return
    except OSError as e:
        raise BadInput(f"{signature}: cannot read: {e.strerror}") from None
    try:
        with open(box, "rb") as data:
            signer = signatures.verify(data, signed, allowed, signature)
    except BadInput as e:
        report.add("signature-bad", "error", str(e))
        return
    report.add("signed", "info", f"{signature}: a good vagrant-box signature by {signer} ({signatures.fingerprint(signed)})")


def _examine(action: str, argv: list[str]) -> int:
    args = build_parser(action).parse_args(argv)
    try:
        report = verifying.examine(
            args.path,
            checksum=getattr(args, "checksum", None),
            catalog=getattr(args, "catalog", None),
            box_version=getattr(args, "box_version", None),
            disks=action == "inspect",
        )
        if getattr(args, "signed_by", None):
            _check_signature(report, args.path, args.signature or f"{args.path}{signatures.SUFFIX}", args.signed_by)
        elif getattr(args, "signature", None):
            raise BadOption("--signature is checked with --signed-by ALLOWED_SIGNERS")
    except BoxpackError as e:
        print(f"boxpack: error: {e}", file=sys.stderr)
        return e.exit_code
    try:
        strict = getattr(args, "strict", False)
        if args.json:
            print(report.to_json(strict))
        else:
            sys.stdout.write(render_inspect(report) if action == "inspect" else render_verify(report))
        sys.stdout.flush()
    except OSError as e:
        print(f"boxpack: error: cannot write the report: {e.strerror}", file=sys.stderr)
        return OutputFailed.exit_code
    return report.exit_status(strict) if action == "verify" else (BadInput.exit_code if report.unreadable else 0)
