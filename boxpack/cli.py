"""The boxpack command line: argument parsing, messages and exit codes around pack()."""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

from . import __version__, boottest, catalog, mirror, mkosi, publish, verify
from .catalog import CHECKSUM_TYPES
from .compress import DEFAULT_LEVEL
from .errors import BoxpackError
from .output import COMPRESSIONS
from .packing import FIRMWARES, PackOptions, pack
from .progress import Progress, Transfers, human_size
from .providers import PROVIDERS, options

EPILOG = """\
examples:
  boxpack disk.img --provider libvirt              writes disk-libvirt.box
  boxpack disk.img --provider libvirt --catalog boxes.json --name org/disk --box-version 1.0.0 \\
      --base-url https://example.org/boxes/     also records it in a catalog for `vagrant box add`
  boxpack disk.img --provider libvirt --provider virtualbox --publish s3://bucket/boxes --name org/disk \
      --box-version 1.0.0 --base-url https://bucket.example.org/boxes    uploads both, then the catalog
  boxpack disk.img --provider libvirt --provider virtualbox -o boxes/
  boxpack root.img data.qcow2 --provider libvirt    one box, two disks (root.img boots)
  boxpack disk.img --provider libvirt -o - | curl -T - https://example.org/upload/disk.box

Both providers come from one read of the disk. A VirtualBox box's VMDK size is
known only once it is compressed, so the VMDK is spooled to an unnamed
temporary file next to the output box (in $TMPDIR with -o -) and then copied
into the box.

The box is written under a temporary name next to its final path and renamed
when complete. `boxpack publish --help` puts boxes online; `boxpack catalog --help`
manages catalogs; `boxpack inspect` and `boxpack verify` read any box. Reproducible: the same disk and SOURCE_DATE_EPOCH give the same
bytes (the tar mtime is SOURCE_DATE_EPOCH, else 1980-01-01).
"""


SUBCOMMANDS = ("publish", "mirror", "catalog", "inspect", "verify", "test")
# SOURCE completes to a subcommand or a file: the subcommands have parsers of their own.
COMPLETION_PREAMBLE = {
    "bash": f'_boxpack_source() {{ compgen -W "{" ".join(SUBCOMMANDS)}" -- "$1"; compgen -f -- "$1"; }}\n',
    "zsh": f"_boxpack_source() {{ _alternative 'commands:subcommand:({' '.join(SUBCOMMANDS)})' 'files:file:_files' }}\n",
}


class _PrintCompletion(argparse.Action):
    """shtab writes the script from the parser itself, so it never falls behind the options."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: object, shell: object, option: object = None) -> None:
        import shtab

        print(shtab.complete(parser, str(shell), preamble=COMPLETION_PREAMBLE))  # type: ignore[arg-type]  # shtab takes {shell: text} too
        parser.exit(0)


class _PrintMan(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: object, values: object, option: object = None) -> None:
        from argparse_manpage.manpage import Manpage

        page = Manpage(parser)
        page.description = "turn a disk image into Vagrant boxes for every provider"  # NAME, for whatis and apropos
        page.source, page.manual = f"boxpack {__version__}", "boxpack manual"
        print(str(page))
        parser.exit(0)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + error
        self.exit(2, f"boxpack: error: {message} (see boxpack --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="boxpack",
        description="Turn a disk image (raw, qcow2, VMDK, VHD, VHDX, VDI) or a box into Vagrant boxes for "
        + ", ".join(PROVIDERS) + ", natively: no qemu-img, tar or jq needed. Subcommands: boxpack publish, "
        "boxpack mirror, boxpack catalog, boxpack inspect, boxpack verify, boxpack test (each with --help).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = p.add_argument(
        "disk",
        metavar="SOURCE",
        nargs="*",
        help="a raw disk (as mkosi, kiwi, osbuild or dd write it; also compressed: .raw.zst, .raw.xz, .raw.gz, or in "
        "a tar), a qcow2, VMDK, VHD, VHDX or VDI image, or a box; the format is told by its bytes. Several make one "
        "box with several disks, the first the boot disk",
    )
    source.complete = {"bash": "_boxpack_source", "zsh": "_boxpack_source"}  # type: ignore[attr-defined]
    p.add_argument(
        "--mkosi",
        action="store_true",
        help="run from mkosi.postoutput: pack the disk mkosi wrote ($OUTPUTDIR, $MKOSI_CONFIG), name the boxes after "
        "it and write them beside it, with the architecture from $ARCHITECTURE and the catalog version from "
        "$IMAGE_VERSION; no SOURCE",
    )
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
        help=f"gzip level 1-12 (libdeflate; default {DEFAULT_LEVEL}, a little smaller than gzip -6)",
    )
    p.add_argument(
        "--fast",
        action="store_true",
        help="fastest gzip (ISA-L): about twice as fast as --level 1, boxes about 12%% larger than gzip -6",
    )
    p.add_argument("--threads", type=int, metavar="N", help="compression threads (default: all cores)")
    p.add_argument("--vagrantfile", metavar="FILE", help="use this Vagrantfile instead of the provider's default")
    p.add_argument(
        "--include", metavar="FILE", action="append", default=[], help="add FILE to the box (repeatable)"
    )
    p.add_argument(
        "--architecture",
        "--arch",
        metavar="ARCH",
        help="box architecture, Vagrant's name (amd64, arm64, i386, ...); default: from the GPT root partition type",
    )
    p.add_argument(
        "--firmware",
        choices=FIRMWARES,
        help="firmware the box starts the VM with; default: efi for a disk that only boots with UEFI, else bios",
    )
    by_owners: dict[tuple[str, ...], list] = {}
    for o in options():  # each option once, in a group naming the providers that read it
        by_owners.setdefault(tuple(n for n, p in PROVIDERS.items() if o in p.OPTIONS), []).append(o)
    for owners, opts in by_owners.items():
        group = p.add_argument_group(f"{', '.join(owners)} box" + ("es" if len(owners) > 1 else ""))
        for o in opts:
            group.add_argument(o.flag, dest=o.name, type=o.type, default=o.default, choices=o.choices, metavar=o.metavar, help=o.help)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary line")
    p.add_argument("--json", action="store_true",
                   help="print one JSON document on stdout describing every box (schemas/pack-result.schema.json); "
                   "the summary stays on stderr")
    p.add_argument("--verify", action="store_true", help="read each box back and check it as `boxpack verify` does")
    p.add_argument("--test", action="store_true", help="boot each box written to a file and check it as `boxpack test` does")
    p.add_argument("--version", action="version", version=f"boxpack {__version__}")
    p.add_argument("--print-completion", choices=["bash", "zsh"], action=_PrintCompletion,
                   help="print a shell completion script for boxpack and exit (e.g. boxpack --print-completion bash "
                   "> /etc/bash_completion.d/boxpack)")
    p.add_argument("--print-man", nargs=0, action=_PrintMan, help="print boxpack's man page (roff) and exit")
    sums = p.add_argument_group("checksums and catalog")
    sums.add_argument(
        "--checksum-type", choices=list(CHECKSUM_TYPES), default="sha256", help="digest computed while writing (default: sha256)"
    )
    sums.add_argument(
        "--checksum-file",
        nargs="?",
        const=True,
        default=False,
        metavar="PATH",
        help="write <box>.<checksum-type> beside each box (sha256sum format), or all lines to PATH (needed with -o -)",
    )
    sums.add_argument("--catalog", metavar="FILE", help="record the boxes in this catalog JSON (created if missing)")
    sums.add_argument("--name", metavar="ORG/NAME", help="box name in the catalog")
    sums.add_argument("--box-version", metavar="VERSION", help="box version in the catalog (X.Y.Z)")
    sums.add_argument("--base-url", "--url-base", dest="base_url", metavar="URL",
                      help="the public address the boxes are served from: with --catalog a box's URL is this + its file "
                      "name, with --publish this + its key")
    sums.add_argument("--default-architecture", "--default-arch", action="store_true", help="make these boxes their provider's default architecture")
    sums.add_argument("--description", help="catalog description")
    sums.add_argument("--allow-relative", action="store_true", help="accept a relative --base-url (with --catalog)")
    pub = p.add_argument_group("publishing (see boxpack publish --help)")
    pub.add_argument("--publish", metavar="TARGET",
                     help="stream each box straight into TARGET (s3://BUCKET/PREFIX or a directory) in the layout "
                     "`vagrant box add ORG/NAME` finds, then update its catalog; needs --name, --box-version, --base-url")
    _target_options(pub)
    return p


def _target_options(p: argparse._ActionsContainer) -> None:
    p.add_argument("--endpoint-url", metavar="URL",
                   help="an S3-compatible endpoint (default: AWS_ENDPOINT_URL, the AWS profile's, or AWS)")
    p.add_argument("--dry-run", action="store_true",
                   help="read the target and say what would be uploaded and the catalog that would result; write nothing")


def build_publish_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="boxpack publish",
        description="Upload boxes to S3-compatible storage or a directory a web server serves, then record them in "
        "the catalog there, so that `VAGRANT_SERVER_URL=BASE-URL vagrant box add ORG/NAME` finds them. Each box "
        "goes to ORG/NAME/VERSION/PROVIDER/ARCH/vagrant.box beside its checksum file; the catalog is written last, "
        "in one conditional write, so it never names a missing or partial box and concurrent publishers keep "
        "each other's entries. S3 credentials come from the standard AWS chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, "
        "~/.aws); install boto3 for s3:// (pip install 'boxpack[s3]').",
        epilog=PUBLISH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("boxes", metavar="BOX", nargs="+", help="box files; provider and architecture from their metadata.json")
    p.add_argument("--to", required=True, metavar="TARGET", help="s3://BUCKET/PREFIX, or a directory that exists")
    p.add_argument("--name", required=True, metavar="ORG/NAME")
    p.add_argument("--box-version", required=True, metavar="VERSION")
    p.add_argument("--base-url", required=True, metavar="URL",
                   help="the public HTTP address of TARGET (bucket endpoint, CDN, web server): the catalog's URLs and "
                   "VAGRANT_SERVER_URL")
    p.add_argument("--architecture", "--arch", metavar="ARCH", help="for every BOX (default: from its metadata.json, else unknown)")
    p.add_argument("--default-architecture", "--default-arch", action="store_true",
                   help="make these boxes their provider's default architecture (default: amd64 if published, else the first)")
    p.add_argument("--description", help="catalog description")
    p.add_argument("--checksum-type", choices=list(CHECKSUM_TYPES), default="sha256")
    p.add_argument("--force", action="store_true", help="replace boxes already published for the same version, provider and architecture")
    _target_options(p)
    p.add_argument("--json", action="store_true", help="print what was published as JSON (schemas/publish-result.schema.json)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary lines")
    return p


PUBLISH_EPILOG = """examples:
  boxpack publish debian-libvirt.box debian-virtualbox.box --to s3://boxes-bucket/vagrant --name org/debian \
      --box-version 1.2.0 --base-url https://boxes-bucket.s3.eu-west-1.amazonaws.com/vagrant
  boxpack publish debian-libvirt.box --to /srv/www/boxes --name org/debian --box-version 1.2.0 \
      --base-url https://boxes.example.org
  VAGRANT_SERVER_URL=https://boxes.example.org vagrant box add org/debian

A rerun after an interruption reuses the parts the store already holds. `boxpack catalog remove
s3://BUCKET/PREFIX/ORG/NAME --box-version V` yanks a version (--delete-boxes also deletes its boxes).
"""


def publish_main(argv: list[str]) -> int:
    args = build_publish_parser().parse_args(argv)
    progress = Progress() if sys.stderr.isatty() and not args.quiet and not args.json else None
    try:
        result = publish.publish_boxes(
            args.boxes, _publish_options(args, args.to), architecture=args.architecture,
            checksum_type=args.checksum_type, progress=progress,
        )
    except BoxpackError as e:
        if progress:
            progress.finish()
        print(f"boxpack: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if progress:
            progress.finish()
        print("boxpack: interrupted; the catalog was not changed (a rerun reuses what was uploaded)", file=sys.stderr)
        return 130
    _report_publish(result, args.quiet, args.json)
    return 0


def build_mirror_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="boxpack mirror",
        description="Copy boxes from a catalog (HCP Vagrant's, or any other) onto storage you own, every byte checked "
        "against the catalog's checksum as it streams, and write the mirrored catalog last, so that "
        "`VAGRANT_SERVER_URL=BASE-URL vagrant box add ORG/NAME` keeps working. Same targets and layout as "
        "boxpack publish. A rerun skips what is already mirrored; an entry that fails (a 404, a wrong checksum, a "
        "download cut short for good) is reported and left out, and the exit status is 1.",
        epilog=MIRROR_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sources", metavar="SOURCE", nargs="*",
                   help="ORG/NAME (resolved against --server as Vagrant does), a catalog URL (https://, file://) or a catalog file")
    p.add_argument("--from-file", metavar="LIST", help="one SOURCE per line (# starts a comment)")
    p.add_argument("--to", required=True, metavar="TARGET", help="s3://BUCKET/PREFIX, or a directory that exists")
    p.add_argument("--base-url", required=True, metavar="URL", help="the public HTTP address of TARGET: the mirrored catalogs' URLs")
    p.add_argument("--server", metavar="URL",
                   help=f"where ORG/NAME is looked up (default: $VAGRANT_SERVER_URL, else {mirror.DEFAULT_SERVER})")
    p.add_argument("--versions", default="all", metavar="all|latest|N", help="which versions: all (default), the latest, or the newest N")
    p.add_argument("--provider", action="append", default=[], help="only this provider (repeatable)")
    p.add_argument("--architecture", "--arch", action="append", default=[], help="only this architecture (repeatable)")
    p.add_argument("--jobs", type=int, default=mirror.DEFAULT_JOBS, metavar="N",
                   help=f"transfers at once (default: {mirror.DEFAULT_JOBS})")
    p.add_argument("--verify", action="store_true",
                   help="also check each box as boxpack verify does, in the same stream, and report what Vagrant or its "
                   "provider would reject")
    p.add_argument("--require-valid", action="store_true", help="with --verify: leave out (and fail) boxes with errors")
    p.add_argument("--force", action="store_true", help="replace boxes the target already holds with other bytes")
    _target_options(p)
    p.add_argument("--json", action="store_true",
                   help="print the report as JSON (schemas/mirror-result.schema.json); the lines per box stay on stderr")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress and no lines per box")
    return p


MIRROR_EPILOG = """examples:
  boxpack mirror bento/ubuntu-24.04 --versions latest --to s3://my-boxes/vagrant \
      --base-url https://my-boxes.s3.eu-west-1.amazonaws.com/vagrant
  boxpack mirror --from-file our-boxes.txt --to /srv/boxes --base-url https://boxes.example.org --jobs 4
  boxpack mirror https://boxes.example.org/org/debian --to s3://new-home/vagrant --base-url https://cdn.example.org/vagrant

Private HCP boxes: set VAGRANT_CLOUD_TOKEN; it is sent to the catalog's server only.
"""


def mirror_main(argv: list[str]) -> int:
    args = build_mirror_parser().parse_args(argv)
    try:
        sources = list(args.sources)
        if args.from_file:
            try:
                lines = Path(args.from_file).read_text().splitlines()
            except OSError as e:
                raise BoxpackError(f"{args.from_file}: cannot read: {e.strerror}") from None
            sources += [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]
        if not sources:
            raise BoxpackError("no SOURCE given (ORG/NAME, a catalog URL or file, or --from-file LIST)")
        options = mirror.MirrorOptions(
            target=args.to, base_url=args.base_url, server=args.server, versions=args.versions, providers=args.provider,
            architectures=args.architecture, jobs=args.jobs, dry_run=args.dry_run, verify=args.verify,
            require_valid=args.require_valid, force=args.force, endpoint_url=args.endpoint_url,
            token=os.environ.get("VAGRANT_CLOUD_TOKEN") or None,
        )
        shown = sys.stderr.isatty() and not args.quiet and not args.json and not args.dry_run
        transfers = Transfers() if shown else None

        def progress(c: mirror.Copy, n: int) -> None:
            if transfers:
                transfers(c.label(), n)

        def done(c: mirror.Copy) -> None:
            if args.quiet or args.dry_run:
                return
            line = f"boxpack: mirror: {_copy_line(c)}"
            if transfers:
                transfers.done(c.label(), line)
            else:
                print(line, file=sys.stderr, flush=True)

        result = mirror.mirror(sources, options, progress, done, on_plan=transfers.expect if transfers else None)
        if transfers:
            transfers.finish()
    except BoxpackError as e:
        print(f"boxpack: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("boxpack: interrupted; the catalogs not yet written are as they were (a rerun skips what was copied)",
              file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    elif args.dry_run:
        _print_plan(result)
    for problem in result.errors:
        print(f"boxpack: error: {problem}", file=sys.stderr)
    if not args.quiet:
        counts = {a: sum(c.action == a for c in result.copies) for a in ("copied", "skipped", "failed", "planned")}
        summary = ", ".join(f"{n} {a}" for a, n in counts.items() if n) or "nothing to copy"
        print(f"boxpack: mirror: {summary}" + "".join(f"; {name}: {urls[0]}" for name, urls in result.catalogs.items()
                                                      if not result.dry_run), file=sys.stderr)
    return result.exit_code


def _copy_line(c: mirror.Copy) -> str:
    size = human_size(c.size) if c.size is not None else "size unknown"
    if c.action == "copied":
        how = f"{c.checksum_type} computed (the source gives none) {c.checksum}" if c.computed else f"{c.checksum_type} checked"
        line = f"{c.label()}: copied {size}, {how}, {c.seconds:.1f} s"
    elif c.action == "skipped":
        line = f"{c.label()}: already mirrored ({size})"
    else:
        line = f"{c.label()}: FAILED: {c.error}"
    problems = [f for f in c.findings if f["severity"] in ("error", "warning")]
    return line + "".join(f"\n  verify: {f['severity'].upper()} {f['code']}: {f['message']}" for f in problems)


def _print_plan(result: mirror.MirrorResult) -> None:
    rows = [("NAME", "VERSION", "PROVIDER", "ARCH", "SIZE", "WHAT", "FROM")]
    for c in result.copies:
        what = {"planned": "copy", "skipped": "already there", "failed": f"fails: {c.error}"}[c.action]
        rows.append((c.name, c.version, c.provider, c.architecture, human_size(c.size) if c.size is not None else "?", what, c.source_url))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    sys.stdout.write("".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] + "\n" for r in rows))
    planned = [c for c in result.copies if c.action == "planned"]
    total = sum(c.size or 0 for c in planned)
    unknown = sum(c.size is None for c in planned)
    print(f"boxpack: mirror: would copy {len(planned)} box(es), {human_size(total)}"
          + (f" and {unknown} of unknown size" if unknown else ""), file=sys.stderr)


def _publish_options(args: argparse.Namespace, target: str) -> publish.PublishOptions:
    return publish.PublishOptions(
        target=target, name=args.name, version=args.box_version, base_url=args.base_url, force=args.force,
        default_architecture=args.default_architecture, description=args.description,
        endpoint_url=args.endpoint_url, dry_run=args.dry_run,
    )


ACTIONS = {"uploaded": "uploaded", "resumed": "uploaded, resuming an interrupted upload", "unchanged": "already there",
           "planned": "would upload"}


def _report_publish(result: publish.PublishResult, quiet: bool, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        _print_catalog(result)
    if not quiet:
        _say_published(result)


def _print_catalog(result: publish.PublishResult) -> None:
    """The resulting catalog on stdout: as JSON with --dry-run (what would be written), else as a table."""
    assert result.catalog is not None
    if result.dry_run:
        sys.stdout.buffer.write(catalog.dumps(result.catalog))
    else:
        sys.stdout.write(catalog.table(result.catalog))
    sys.stdout.flush()


def _say_published(result: publish.PublishResult, boxes: bool = True) -> None:
    for b in result.boxes if boxes else ():
        print(f"boxpack: {result.target}: {b.key}: {ACTIONS[b.action]}, {human_size(b.size)}, "
              f"{b.checksum_type} {b.checksum}", file=sys.stderr)
    done = "would record" if result.dry_run else "recorded"
    print(f"boxpack: {result.target}: {done} {len(result.boxes)} box(es) as {result.name} {result.version} in "
          f"{result.catalog_urls[0]}", file=sys.stderr)


def build_catalog_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="boxpack catalog",
        description="Create, update and read the Vagrant box catalog JSON that `vagrant box add URL` reads.",
        epilog=CATALOG_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="action", required=True, metavar="add|show|remove")
    add = sub.add_parser("add", help="add a box to a version (creating the catalog or version as needed)")
    add.add_argument("catalog", metavar="CATALOG")
    add.add_argument("--box", required=True, metavar="FILE", help="the box file; checksum computed from it")
    add.add_argument("--name", required=True, metavar="ORG/NAME")
    add.add_argument("--box-version", required=True, metavar="VERSION")
    add.add_argument("--url", required=True, help="absolute URL the box is served from")
    add.add_argument("--provider", help="default: from the box's metadata.json")
    add.add_argument("--architecture", "--arch", help="default: from the box's metadata.json, else unknown")
    add.add_argument("--default-architecture", "--default-arch", action="store_true", help="make this the provider's default architecture")
    add.add_argument("--description")
    add.add_argument("--checksum-type", choices=list(CHECKSUM_TYPES), default="sha256")
    add.add_argument("--force", action="store_true", help="replace an entry for the same provider and architecture")
    add.add_argument("--allow-relative", action="store_true", help="accept a URL without a scheme")
    show = sub.add_parser("show", help="print the catalog as a table")
    show.add_argument("catalog", metavar="CATALOG", help="a catalog file, or a published one: s3://BUCKET/PREFIX/ORG/NAME")
    show.add_argument("--endpoint-url", metavar="URL", help="for s3:// catalogs: an S3-compatible endpoint")
    rm = sub.add_parser("remove", help="remove a version, or some of its entries (yank a broken box)")
    rm.add_argument("catalog", metavar="CATALOG", help="a catalog file, or a published one: s3://BUCKET/PREFIX/ORG/NAME")
    rm.add_argument("--box-version", required=True, metavar="VERSION")
    rm.add_argument("--provider")
    rm.add_argument("--architecture", "--arch")
    rm.add_argument("--delete-boxes", action="store_true",
                    help="also delete the removed entries' boxes and checksum files (catalogs boxpack publish wrote), "
                    "after the catalog no longer names them")
    rm.add_argument("--endpoint-url", metavar="URL", help="for s3:// catalogs: an S3-compatible endpoint")
    return p


CATALOG_EPILOG = """examples:
  boxpack catalog add boxes.json --box debian-libvirt.box --name org/debian --box-version 1.2.0 \\
      --url https://example.org/boxes/debian-libvirt.box
  boxpack catalog show boxes.json
  boxpack catalog remove s3://bucket/vagrant/org/debian --box-version 1.2.0 --provider libvirt   (yank a published box)
  vagrant box add https://example.org/boxes/boxes.json    (served as application/json)
"""


def build_examine_parser(action: str) -> argparse.ArgumentParser:
    what = {
        "inspect": "Say what a box or disk is: members, metadata, Vagrantfile settings, disk format and sizes, "
        "OVF hardware, partition table.",
        "verify": "Check a box against every rule its consumers (Vagrant, vagrant-libvirt, VirtualBox, bsdtar, qemu) "
        "enforce. Exit 0 when clean or only warned about, 1 when errors were found (or, with --strict, warnings), "
        "2 when the box could not be read.",
    }[action]
    p = _Parser(prog=f"boxpack {action}", description=what)
    p.add_argument("path", metavar="BOX" if action == "verify" else "BOX|DISK", help="a box file, - for stdin, or (inspect) a disk")
    p.add_argument("--json", action="store_true", help="print JSON")
    if action == "verify":
        p.add_argument("--checksum", metavar="TYPE:HEX", help="the box's expected digest, e.g. sha256:abc...")
        p.add_argument("--catalog", metavar="FILE", help="check the box's checksum against this catalog's entry")
        p.add_argument("--box-version", metavar="V", help="the catalog version to look in")
        p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    return p


def examine_main(action: str, argv: list[str]) -> int:
    args = build_examine_parser(action).parse_args(argv)
    try:
        report = verify.examine(
            args.path,
            checksum=getattr(args, "checksum", None),
            catalog=getattr(args, "catalog", None),
            box_version=getattr(args, "box_version", None),
            disks=action == "inspect",
        )
    except BoxpackError as e:
        print(f"boxpack: error: {e}", file=sys.stderr)
        return 2
    try:
        strict = getattr(args, "strict", False)
        if args.json:
            print(report.to_json(strict))
        else:
            sys.stdout.write(verify.render_inspect(report) if action == "inspect" else verify.render_verify(report))
        sys.stdout.flush()
    except OSError as e:
        print(f"boxpack: error: cannot write the report: {e.strerror}", file=sys.stderr)
        return 2
    return report.exit_status(strict) if action == "verify" else (2 if report.unreadable else 0)


def build_test_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="boxpack test",
        description="Boot a box in QEMU (KVM where it can, TCG elsewhere) with the firmware, disk bus and NIC its "
        "provider gives the VM, and check what `vagrant up` needs: SSH as vagrant with Vagrant's insecure key, "
        "passwordless sudo, then --command. Exit 0 when every check passes, 1 when one fails or the box does not "
        "come up in time, 2 when the test cannot run here. Needs qemu-system-x86_64 (or -aarch64), OVMF for UEFI "
        "boxes, and ssh.",
    )
    p.add_argument("box", metavar="BOX", help="a box file (or a disk image)")
    p.add_argument("--timeout", type=int, default=600, metavar="SECONDS", help="for the boot and the checks (default: 600)")
    p.add_argument("--command", metavar="CMD", help="run CMD in the guest after the checks; it must exit 0")
    p.add_argument("--ssh-key", metavar="FILE", help="the private key (default: Vagrant's insecure key, as installed here)")
    p.add_argument("--memory", type=int, default=1024, metavar="MIB", help="guest memory (default: 1024)")
    p.add_argument("--cpus", type=int, default=2, metavar="N", help="guest CPUs (default: 2)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def test_main(argv: list[str]) -> int:
    args = build_test_parser().parse_args(argv)
    options = boottest.TestOptions(args.timeout, args.command, args.ssh_key, args.memory, args.cpus)
    return _run_test(args.box, options, args.json)


def _run_test(box: str, options: boottest.TestOptions, as_json: bool) -> int:
    say = (lambda m: print(f"boxpack: test: {m}", file=sys.stderr)) if sys.stderr.isatty() and not as_json else None
    result = boottest.test(box, options, say)
    if as_json:
        print(json.dumps({**dataclasses.asdict(result), "exit_code": result.exit_code}, indent=2))
        return result.exit_code
    if result.error:
        print(f"boxpack: test: {result.error}", file=sys.stderr)
        return 2
    boot = f"{result.boot_seconds:.0f} s" if result.boot_seconds is not None else "did not come up"
    print(f"{box}: {result.provider} box, {result.architecture}, firmware {result.firmware}, {result.accelerator}, boot {boot}")
    for c in result.checks:
        print(f"  {'PASS' if c.passed else 'FAIL'}  {c.name}" + (f": {c.detail}" if c.detail and not c.passed else ""))
    if result.console_tail:
        print("  console (last lines):")
        print("".join(f"    {verify.printable(line)}\n" for line in result.console_tail), end="")
    print(f"{box}: " + ("OK" if result.exit_code == 0 else "FAILED"))
    return result.exit_code


def catalog_main(argv: list[str]) -> int:
    args = build_catalog_parser().parse_args(argv)
    try:
        if args.action == "add":
            doc = catalog.add_box(
                args.catalog,
                args.box,
                name=args.name,
                version=args.box_version,
                url=args.url,
                provider=args.provider,
                architecture=args.architecture,
                checksum_type=args.checksum_type,
                default_architecture=args.default_architecture,
                description=args.description,
                force=args.force,
                allow_relative=args.allow_relative,
            )
            print(f"boxpack: {args.catalog}: added {args.name} {args.box_version}", file=sys.stderr)
        elif args.action == "remove" and (args.delete_boxes or args.catalog.startswith("s3://")):
            doc, deleted = publish.yank(args.catalog, args.box_version, args.provider, args.architecture,
                                        delete_boxes=args.delete_boxes, endpoint_url=args.endpoint_url)
            for key in deleted:
                print(f"boxpack: deleted {key}", file=sys.stderr)
        elif args.action == "remove":
            doc = catalog.update(args.catalog, lambda d: catalog.remove(_existing(d, args.catalog), args.box_version, args.provider, args.architecture))
        elif args.catalog.startswith("s3://"):
            store, name = publish.published_catalog(args.catalog, args.endpoint_url)
            doc = _existing(store.read_catalog(name), args.catalog)
        else:
            doc = _existing(catalog.load(args.catalog), args.catalog)
        sys.stdout.write(catalog.table(doc))
    except BoxpackError as e:
        print(f"boxpack: error: {e}", file=sys.stderr)
        return 1
    return 0


def _existing(doc: catalog.Catalog | None, path: str) -> catalog.Catalog:
    if doc is None:
        raise BoxpackError(f"{path}: no such catalog")
    return doc


def _check_catalog_args(args: argparse.Namespace) -> None:
    """All of the in-run catalog options or none, each checked before any disk is read."""
    if args.publish:
        _check_publish_args(args)
        return
    if args.dry_run or args.endpoint_url:
        raise BoxpackError(f"{'--dry-run' if args.dry_run else '--endpoint-url'} is for --publish")
    wanted = {"--catalog": args.catalog, "--name": args.name, "--box-version": args.box_version, "--base-url": args.base_url}
    given = [k for k, v in wanted.items() if v]
    if not given:
        return
    if len(given) < len(wanted):
        raise BoxpackError(f"{', '.join(k for k in wanted if k not in given)} needed with {', '.join(given)}")
    if args.output == "-":
        raise BoxpackError("--catalog records box files; it cannot be used with -o -")
    catalog.check_entry(args.name, args.box_version, _box_url(args.base_url, "x.box"), args.allow_relative)
    catalog.load(args.catalog)  # a broken catalog is reported before the disk is packed


def _check_publish_args(args: argparse.Namespace) -> None:
    missing = [k for k, v in {"--name": args.name, "--box-version": args.box_version, "--base-url": args.base_url}.items() if not v]
    if missing:
        raise BoxpackError(f"{', '.join(missing)} needed with --publish")
    clash = {"-o": args.output, "--catalog": args.catalog, "--checksum-file": args.checksum_file, "--verify": args.verify,
             "--test": args.test, "--allow-relative": args.allow_relative}
    for flag, value in clash.items():
        if value:
            raise BoxpackError(f"{flag} is for box files; with --publish the boxes go straight to {args.publish} "
                               "(its catalog and checksum files included)")


def _source(args: argparse.Namespace) -> str | None:
    """SOURCE, or with --mkosi the disk mkosi wrote (filling in -o, --architecture and --box-version from
    mkosi's hook environment); returns the name the boxes are called after, None for the source's."""
    if not args.mkosi:
        if not args.disk:
            raise BoxpackError("no SOURCE given (a disk image or a box; or --mkosi in an mkosi.postoutput script)")
        return None
    if args.disk:
        raise BoxpackError(f"--mkosi finds the disk from mkosi's environment; give no SOURCE (got {args.disk[0]!r})")
    image = mkosi.from_environment(os.environ)
    args.disk = [str(image.disk)]
    if not args.publish:
        args.output = args.output or f"{image.output_dir}/"
    args.architecture = args.architecture or image.architecture
    if args.catalog or args.publish:
        args.box_version = args.box_version or image.version
    return image.name


def _box_url(base: str, file_name: str) -> str:
    """base + the box's file name, percent-encoded: a '#' or a space in a file name must not end the URL."""
    return (base if base.endswith("/") else base + "/") + quote(file_name)


class _OneLine(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"boxpack: {record.levelname.lower()}: {record.getMessage()}\n")


def _keep_freed_memory() -> None:
    """Let glibc keep freed buffers instead of unmapping them.

    The MiB-sized pieces passed between threads are otherwise returned to the
    kernel and faulted back in: 426,000 page faults for 1.6 GB of data, a fifth
    of a --fast run. Peak RSS stays under 75 MiB with this.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return
    libc.mallopt(-3, 64 * 1024 * 1024)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 256 * 1024 * 1024)  # M_TRIM_THRESHOLD


def main(argv: list[str] | None = None) -> int:
    """The boxpack command; anything unexpected is reported in one line (BOXPACK_DEBUG=1 shows the traceback)."""
    _keep_freed_memory()
    try:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _interrupt)
    except ValueError:  # not the main thread: an embedding program handles signals
        pass
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:  # before a run started (or in inspect/verify)
        print("boxpack: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (`boxpack ... --json | head`): what was done stays done
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes it
        return 1
    except Exception as e:  # a bug: still one line, and a distinct exit code
        if os.environ.get("BOXPACK_DEBUG"):
            raise
        print(f"boxpack: internal error: {type(e).__name__}: {e} (set BOXPACK_DEBUG=1 for details)", file=sys.stderr)
        return 70


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM and SIGHUP stop a run as Ctrl-C does: temporary files are removed on the way out."""
    raise KeyboardInterrupt


def _main(argv: list[str]) -> int:
    if argv[:1] == ["publish"]:
        return publish_main(argv[1:])
    if argv[:1] == ["mirror"]:
        return mirror_main(argv[1:])
    if argv[:1] == ["catalog"]:
        return catalog_main(argv[1:])
    if argv[:1] in (["inspect"], ["verify"]):
        return examine_main(argv[0], argv[1:])
    if argv[:1] == ["test"]:
        return test_main(argv[1:])
    args = build_parser().parse_args(argv)
    logger = logging.getLogger("boxpack")
    logger.addHandler(_OneLine())
    logger.propagate = False
    progress = Progress() if sys.stderr.isatty() and not args.quiet else None
    if args.json and args.output == "-":
        print("boxpack: error: --json prints to stdout, where -o - writes the box; choose one", file=sys.stderr)
        return 1
    if args.output == "-" and sys.stdout.isatty():
        print("boxpack: error: refusing to write a box to a terminal; redirect stdout", file=sys.stderr)
        return 1
    results: list = []  # the boxes complete so far, for a truthful message if a later step fails
    published: publish.PublishResult | None = None
    try:
        name = _source(args)
        _check_catalog_args(args)
        output = sys.stdout.buffer if args.output == "-" else args.output
        options_ = PackOptions(
            providers=args.provider,
            output=output,
            force=args.force,
            compression=args.compression,
            level=args.level,
            fast=args.fast,
            threads=args.threads,
            vagrantfile=args.vagrantfile,
            include=args.include,
            architecture=args.architecture,
            firmware=args.firmware,
            checksum_type=args.checksum_type,
            checksum_file=args.checksum_file,
            name=name,
            settings={o.name: getattr(args, o.name) for o in options()},
        )
        if args.publish:
            _, published = publish.pack_and_publish(args.disk, options_, _publish_options(args, args.publish), progress,
                                                    on_box=results.append)
        else:
            pack(args.disk, options_, progress, on_box=results.append)
        if args.catalog:
            for r in results:
                catalog.add_box(
                    args.catalog,
                    r.path,
                    name=args.name,
                    version=args.box_version,
                    url=_box_url(args.base_url, r.path.name),
                    provider=r.provider,
                    architecture=r.architecture,
                    checksum=r.checksum,
                    checksum_type=r.checksum_type,
                    default_architecture=args.default_architecture,
                    description=args.description,
                    force=args.force,
                    allow_relative=args.allow_relative,
                )
    except BoxpackError as e:
        if progress:
            progress.finish()
        print(f"boxpack: error: {e}{_written(results, args.publish)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if progress:
            progress.finish()
        print(f"boxpack: interrupted{_written(results, args.publish) or '; no box was written'}", file=sys.stderr)
        return 130
    failed = 0
    if args.verify:
        for r in results:
            if r.path is None:
                continue
            report = verify.examine(str(r.path), checksum=f"{r.checksum_type}:{r.checksum}")
            if report.exit_code:
                sys.stderr.write(verify.render_verify(report))
                failed = 1
    if args.test:
        for r in results:
            if r.path is not None and _run_test(str(r.path), boottest.TestOptions(), False):
                failed = 1
    if args.catalog and not args.quiet:
        print(f"boxpack: {args.catalog}: recorded {len(results)} box(es) as {args.name} {args.box_version}", file=sys.stderr)
    if args.json:
        doc = {"boxes": [result_json(r) for r in results], "exit_code": failed}
        if published:
            doc["published"] = published.to_json()
        print(json.dumps(doc, indent=2))
    elif published:
        _print_catalog(published)
    boxes = {b.provider: b for b in published.boxes} if published else {}
    if not args.quiet:
        for r in results:
            b = boxes.get(r.provider)
            where = r.path.name if r.path else f"{published.target}/{b.key}" if published and b else "<stdout>"
            action = f", {ACTIONS[b.action]}" if b and b.action != "uploaded" else ""
            print(
                f"boxpack: {where}: {r.provider} box, {human_size(r.size)}, firmware {r.firmware}, "
                f"arch {r.architecture or 'unknown'}, {r.checksum_type} {r.checksum}{action}, {r.seconds:.1f} s",
                file=sys.stderr,
            )
        if published:
            _say_published(published, boxes=False)
    return failed


def result_json(r) -> dict:
    """One box of `boxpack --json`, as schemas/pack-result.schema.json describes it."""
    firmware, _, why = r.firmware.partition(" (")
    return {
        "path": str(r.path) if r.path else None,
        "provider": r.provider,
        "architecture": r.architecture,
        "size": r.size,
        "checksum_type": r.checksum_type,
        "checksum": r.checksum,
        "firmware": firmware,
        "firmware_reason": why.rstrip(")"),
        "disks": [{"format": fmt, "virtual_size": size} for fmt, size in r.disks],
        "seconds": round(r.seconds, 3),
    }


def _written(results: list, target: str | None = None) -> str:
    """What a run that failed after packing leaves behind, said truthfully."""
    if target:
        return f" (the catalog in {target} was not changed)"
    paths = [str(r.path) for r in results if r.path]
    return f" (written before that: {', '.join(paths)})" if paths else ""


if __name__ == "__main__":
    sys.exit(main())
