"""boxpack SOURCE... --provider ...: pack a disk into boxes, and the catalog, checksum, publish, verify and
test steps after it."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from urllib.parse import quote

from .. import __version__, catalog, mkosi
from ..errors import BadOption, BoxpackError
from ..packing import PackOptions, pack
from ..progress import Progress, human_size
from ..providers import PROVIDERS, options
from ..publishing import publish
from ..settings import SETTINGS, add_arguments
from .common import VERBS, Parser, PrintCompletion, PrintMan, option, target_options
from .publish import options as publish_options
from .publish import print_catalog, said, say_published

EPILOG = """\
examples:
  boxpack disk.img --provider libvirt              writes disk-libvirt.box
  boxpack disk.img --provider libvirt --catalog boxes.json --name org/disk --box-version 1.0.0 \\
      --base-url https://example.org/boxes/     also records it in a catalog for `vagrant box add`
  boxpack disk.img --provider libvirt --provider virtualbox --publish s3://bucket/boxes --name org/disk \\
      --box-version 1.0.0 --base-url https://bucket.example.org/boxes    uploads both, then the catalog
  boxpack disk.img --provider libvirt --provider virtualbox -o boxes/
  boxpack root.img data.qcow2 --provider libvirt    one box, two disks (root.img boots)
  boxpack disk.img --provider libvirt -o - | curl -T - https://example.org/upload/disk.box

Both providers come from one read of the disk. A VirtualBox box's VMDK size is
known only once it is compressed, so the VMDK is spooled to an unnamed
temporary file next to the output box (in $TMPDIR with -o -) and then copied
into the box.

The box is written under a temporary name next to its final path and renamed
when complete. `boxpack publish --help` puts boxes online; `boxpack catalog
--help` manages catalogs; `boxpack inspect` and `boxpack verify` read any box.
Reproducible: the same disk and SOURCE_DATE_EPOCH give the same bytes (the tar
mtime is SOURCE_DATE_EPOCH, else 1980-01-01).
"""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="boxpack",
        usage="%(prog)s SOURCE... --provider PROVIDER [options]\n"
              f"       %(prog)s {{{','.join(VERBS)}}} ...  (each with --help)",
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
    defaults = {f.name: f.default for f in dataclasses.fields(PackOptions)}
    add_arguments(p, "", defaults, option)
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
    p.add_argument("--print-completion", choices=["bash", "zsh"], action=PrintCompletion,
                   help="print a shell completion script for boxpack and exit (e.g. boxpack --print-completion bash "
                   "> /etc/bash_completion.d/boxpack)")
    p.add_argument("--print-man", nargs=0, action=PrintMan, help="print boxpack's man page (roff) and exit")
    sums = p.add_argument_group("checksums and catalog")
    add_arguments(sums, sums.title or "", defaults, option)
    sums.add_argument("--catalog", metavar="FILE", help="record the boxes in this catalog JSON (created if missing)")
    sums.add_argument("--name", metavar="ORG/NAME", help="box name in the catalog")
    sums.add_argument("--box-version", metavar="VERSION", help="box version in the catalog (X.Y.Z)")
    option(sums, "--base-url", "--url-base", metavar="URL",
                      help="the public address the boxes are served from: with --catalog a box's URL is this + its file "
                      "name, with --publish this + its key")
    option(sums, "--default-architecture", "--default-arch", action="store_true", help="make these boxes their provider's default architecture")
    sums.add_argument("--description", metavar="TEXT", help="catalog description")
    sums.add_argument("--allow-relative", action="store_true", help="accept a relative --base-url (with --catalog)")
    pub = p.add_argument_group("publishing (see boxpack publish --help)")
    pub.add_argument("--publish", metavar="TARGET",
                     help="stream each box straight into TARGET (s3://BUCKET/PREFIX or a directory) in the layout "
                     "`vagrant box add ORG/NAME` finds, then update its catalog; needs --name, --box-version, --base-url")
    target_options(pub, "read the target and say what would be uploaded and the catalog that would result; write nothing")
    return p


def _check_catalog_args(args: argparse.Namespace) -> None:
    """All of the in-run catalog options or none, each checked before any disk is read."""
    if args.publish:
        _check_publish_args(args)
        return
    if args.dry_run or args.endpoint_url:
        raise BadOption(f"{'--dry-run' if args.dry_run else '--endpoint-url'} is for --publish")
    wanted = {"--catalog": args.catalog, "--name": args.name, "--box-version": args.box_version, "--base-url": args.base_url}
    given = [k for k, v in wanted.items() if v]
    if not given:
        return
    if len(given) < len(wanted):
        raise BadOption(f"{', '.join(k for k in wanted if k not in given)} needed with {', '.join(given)}")
    if args.output == "-":
        raise BadOption("--catalog records box files; it cannot be used with -o -")
    catalog.check_entry(args.name, args.box_version, _box_url(args.base_url, "x.box"), args.allow_relative)
    catalog.load(args.catalog)  # a broken catalog is reported before the disk is packed


def _check_publish_args(args: argparse.Namespace) -> None:
    missing = [k for k, v in {"--name": args.name, "--box-version": args.box_version, "--base-url": args.base_url}.items() if not v]
    if missing:
        raise BadOption(f"{', '.join(missing)} needed with --publish")
    clash = {"-o": args.output, "--catalog": args.catalog, "--checksum-file": args.checksum_file, "--verify": args.verify,
             "--test": args.test, "--allow-relative": args.allow_relative}
    for flag, value in clash.items():
        if value:
            raise BadOption(f"{flag} is for box files; with --publish the boxes go straight to {args.publish} "
                               "(its catalog and checksum files included)")


def _source(args: argparse.Namespace) -> str | None:
    """SOURCE, or with --mkosi the disk mkosi wrote (filling in -o, --architecture and --box-version from
    mkosi's hook environment); returns the name the boxes are called after, None for the source's."""
    if not args.mkosi:
        if not args.disk:
            raise BadOption("no SOURCE given (a disk image or a box; or --mkosi in an mkosi.postoutput script)")
        return None
    if args.disk:
        raise BadOption(f"--mkosi finds the disk from mkosi's environment; give no SOURCE (got {args.disk[0]!r})")
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


def run(argv: list[str]) -> int:
    """boxpack SOURCE... --provider ...: pack, then the steps the flags ask for."""
    args = build_parser().parse_args(argv)
    logger = logging.getLogger("boxpack")
    logger.addHandler(_OneLine())
    logger.propagate = False
    progress = Progress() if sys.stderr.isatty() and not args.quiet else None
    if args.json and args.output == "-":
        print("boxpack: error: --json prints to stdout, where -o - writes the box; choose one", file=sys.stderr)
        return BadOption.exit_code
    if args.output == "-" and sys.stdout.isatty():
        print("boxpack: error: refusing to write a box to a terminal; redirect stdout", file=sys.stderr)
        return BadOption.exit_code
    results: list = []  # the boxes complete so far, for a truthful message if a later step fails
    published: publish.PublishResult | None = None
    try:
        name = _source(args)
        _check_catalog_args(args)
        core = {setting.name: getattr(args, setting.name) for setting in SETTINGS}
        if args.output == "-":
            core["output"] = sys.stdout.buffer
        options_ = PackOptions(**core, name=name, settings={o.name: getattr(args, o.name) for o in options()})
        if args.publish:
            _, published = publish.pack_and_publish(args.disk, options_, publish_options(args, args.publish), progress,
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
        return e.exit_code
    except KeyboardInterrupt:
        if progress:
            progress.finish()
        print(f"boxpack: interrupted{_written(results, args.publish) or '; no box was written'}", file=sys.stderr)
        return 130
    failed = 0
    if args.verify:
        from ..inspect.render import render_verify
        from ..inspect.verify import examine

        for r in results:
            if r.path is None:
                continue
            report = examine(str(r.path), checksum=f"{r.checksum_type}:{r.checksum}")
            if report.exit_code:
                sys.stderr.write(render_verify(report))
                failed = 1
    if args.test:
        from ..inspect.boottest import TestOptions
        from .test import run_test

        for r in results:
            if r.path is not None:
                failed = failed or run_test(str(r.path), TestOptions(), False)
    if args.catalog and not args.quiet:
        print(f"boxpack: {args.catalog}: recorded {len(results)} box(es) as {args.name} {args.box_version}", file=sys.stderr)
    boxes = {b.provider: b for b in published.boxes} if published else {}
    if not args.quiet:
        for r in results:
            b = boxes.get(r.provider)
            where = r.path.name if r.path else f"{published.target}/{b.key}" if published and b else "<stdout>"
            action = f", {said(b.action, published.target)}" if published and b and b.action != "uploaded" else ""
            print(
                f"boxpack: {where}: {r.provider} box, {human_size(r.size)}, firmware {r.firmware} ({r.firmware_reason}), "
                f"arch {r.architecture or 'unknown'} ({r.architecture_reason}), {r.checksum_type} {r.checksum}{action}, {r.seconds:.1f} s",
                file=sys.stderr,
            )
        if published:
            say_published(published, boxes=False)
    if args.json:
        doc = {"boxes": [result_json(r) for r in results], "exit_code": failed}
        if published:
            doc["published"] = published.to_json()
        print(json.dumps(doc, indent=2))
    elif published:
        print_catalog(published)
    return failed


def result_json(r) -> dict:
    """One box of `boxpack --json`, as schemas/pack-result.schema.json describes it."""
    return {
        "path": str(r.path) if r.path else None,
        "provider": r.provider,
        "architecture": r.architecture,
        "architecture_reason": r.architecture_reason,
        "size": r.size,
        "checksum_type": r.checksum_type,
        "checksum": r.checksum,
        "firmware": r.firmware,
        "firmware_reason": r.firmware_reason,
        "disks": [{"format": fmt, "virtual_size": size} for fmt, size in r.disks],
        "seconds": round(r.seconds, 3),
    }


def _written(results: list, target: str | None = None) -> str:
    """What a run that failed after packing leaves behind, said truthfully."""
    if target:
        return f" (the catalog in {target} was not changed)"
    paths = [str(r.path) for r in results if r.path]
    return f" (written before that: {', '.join(paths)})" if paths else ""
