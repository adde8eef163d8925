"""boxpack SOURCE... --provider ...: pack a disk into boxes, and the catalog, checksum, publish, verify and
test steps after it."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from .. import __version__, mkosi
from .. import run as runs
from ..errors import BadOption, BoxpackError
from ..options import add_arguments
from ..packing import BoxResult, PackOptions
from ..progress import Progress, human_size
from ..providers import PROVIDERS, options
from ..publishing.publish import PublishOptions
from ..run import CatalogEntry, Run
from ..settings import CATALOG_ENTRY, SETTINGS
from .common import VERBS, Parser, PrintCompletion, PrintMan, option, target_options
from .publish import options as publish_options
from .publish import print_catalog, said, say_published
from .test import print_result

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
        "boxpack mirror, boxpack catalog, boxpack inspect, boxpack verify, boxpack test, boxpack serve (each with --help).",
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
    add_arguments(p, [s for s in SETTINGS if not s.group], defaults, option)
    by_owners: dict[tuple[str, ...], list] = {}
    for o in options():  # each option once, in a group naming the providers that read it
        by_owners.setdefault(tuple(n for n, p in PROVIDERS.items() if o in p.OPTIONS), []).append(o)
    for owners, opts in by_owners.items():
        add_arguments(p.add_argument_group(f"{', '.join(owners)} box" + ("es" if len(owners) > 1 else "")), opts, {}, option)
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
    add_arguments(sums, [s for s in SETTINGS if s.group == sums.title], defaults, option)
    sums.add_argument("--catalog", metavar="FILE", help="record the boxes in this catalog JSON (created if missing)")
    add_arguments(sums, CATALOG_ENTRY, {}, option)
    option(sums, "--base-url", "--url-base", metavar="URL",
           help="the public address the boxes are served from: with --catalog a box's URL is this + its file "
           "name, with --publish this + its key")
    sums.add_argument("--allow-relative", action="store_true", help="accept a relative --base-url (with --catalog)")
    pub = p.add_argument_group("publishing (see boxpack publish --help)")
    pub.add_argument("--publish", metavar="TARGET",
                     help="stream each box straight into TARGET (s3://BUCKET/PREFIX or a directory) in the layout "
                     "`vagrant box add ORG/NAME` finds, then update its catalog; needs --name, --box-version, --base-url")
    target_options(pub, "read the target and say what would be uploaded and the catalog that would result; write nothing")
    pub.add_argument("--private", action="store_true",
                     help="make the box private before anything is written: boxpack serve asks for a token that may read it")
    return p


def _catalog_entry(args: argparse.Namespace) -> CatalogEntry | None:
    """--catalog with its name, version and address: all of them or none, each checked before any disk is read."""
    wanted = {"--catalog": args.catalog, "--name": args.name, "--box-version": args.box_version, "--base-url": args.base_url}
    given = [k for k, v in wanted.items() if v]
    if not given or (args.publish and not args.catalog):  # --publish takes the name, version and address
        return None
    if len(given) < len(wanted):
        raise BadOption(f"{', '.join(k for k in wanted if k not in given)} needed with {', '.join(given)}")
    return CatalogEntry(args.catalog, args.name, args.box_version, args.base_url, args.default_architecture,
                        args.description, args.allow_relative)


def _publishing(args: argparse.Namespace) -> PublishOptions | None:
    """--publish with its name, version and address; --dry-run and --endpoint-url only with it."""
    if not args.publish:
        for flag, given in (("--dry-run", args.dry_run), ("--endpoint-url", args.endpoint_url), ("--private", args.private)):
            if given:
                raise BadOption(f"{flag} is for --publish")
        return None
    missing = [k for k, v in {"--name": args.name, "--box-version": args.box_version, "--base-url": args.base_url}.items() if not v]
    if missing:
        raise BadOption(f"{', '.join(missing)} needed with --publish")
    if args.allow_relative:
        raise BadOption(f"--allow-relative is for box files; with --publish the boxes go straight to {args.publish} "
                        "(its catalog and checksum files included)")
    return publish_options(args, args.publish)


def _run_of(args: argparse.Namespace) -> Run:
    """The library's Run for these arguments; with --mkosi, the disk, output, architecture and version from mkosi's
    hook environment fill in what the command line leaves out."""
    if args.output == "-" and args.json:
        raise BadOption("--json prints to stdout, where -o - writes the box; choose one")
    if args.output == "-" and sys.stdout.isatty():
        raise BadOption("refusing to write a box to a terminal; redirect stdout")
    image = _mkosi_image(args)
    if image and (args.catalog or args.publish):
        args.box_version = args.box_version or image.version
    return Run([str(image.disk)] if image else args.disk, _pack_options(args, image), _catalog_entry(args),
               _publishing(args), args.verify, args.test)


def _mkosi_image(args: argparse.Namespace) -> mkosi.MkosiImage | None:
    """With --mkosi, the image mkosi's environment names (and no SOURCE); without it, SOURCE is needed."""
    if args.mkosi and args.disk:
        raise BadOption(f"--mkosi finds the disk from mkosi's environment; give no SOURCE (got {args.disk[0]!r})")
    if args.mkosi:
        return mkosi.from_environment(os.environ)
    if not args.disk:
        raise BadOption("no SOURCE given (a disk image or a box; or --mkosi in an mkosi.postoutput script)")
    return None


def _pack_options(args: argparse.Namespace, image: mkosi.MkosiImage | None) -> PackOptions:
    core = {setting.name: getattr(args, setting.name) for setting in SETTINGS}
    if image:  # the boxes beside the image, named after it, for its architecture
        core["output"] = core["output"] or (None if args.publish else f"{image.output_dir}/")
        core["architecture"] = core["architecture"] or image.architecture
    if args.output == "-":
        core["output"] = sys.stdout.buffer
    if args.publish:
        core["sign_key"] = None  # the uploads are signed (publishing), not box files
    return PackOptions(**core, name=image.name if image else None, settings={o.name: getattr(args, o.name) for o in options()})


def run(argv: list[str]) -> int:
    """boxpack SOURCE... --provider ...: pack, then the steps the flags ask for."""
    args = build_parser().parse_args(argv)
    progress = Progress() if sys.stderr.isatty() and not args.quiet else None
    written: list[BoxResult] = []  # the boxes complete so far, for a truthful message if a later step fails
    try:
        result = runs.run(_run_of(args), progress, on_box=written.append, say=_say if sys.stderr.isatty() else None)
    except (BoxpackError, KeyboardInterrupt) as e:
        if progress:
            progress.finish()
        print(_stopped(e, written, args.publish), file=sys.stderr)
        return e.exit_code if isinstance(e, BoxpackError) else 130
    _report(args, result)
    return result.exit_code


def _say(message: str) -> None:
    print(f"boxpack: test: {message}", file=sys.stderr)


def _stopped(e: BaseException, written: list[BoxResult], target: str | None) -> str:
    """What a run that stopped says, and truthfully what it leaves behind."""
    if isinstance(e, KeyboardInterrupt):
        return f"boxpack: interrupted{_written(written, target) or '; no box was written'}"
    return f"boxpack: error: {e}{_written(written, target)}"


def _report(args: argparse.Namespace, result: runs.RunResult) -> None:
    """Each step's outcome: verify's findings and the boot tests, the summary lines on stderr, the JSON or the
    published catalog on stdout."""
    from ..inspect.render import render_verify

    for report in result.reports:
        if report.exit_code:
            sys.stderr.write(render_verify(report))
    for test in result.tests:
        print_result(test, test.box)
    if args.catalog and not args.quiet:
        print(f"boxpack: {args.catalog}: recorded {len(result.boxes)} box(es) as {args.name} {args.box_version}", file=sys.stderr)
    if not args.quiet:
        _summary(result)
    if args.json:
        doc = {"boxes": [result_json(r) for r in result.boxes], "exit_code": result.exit_code}
        if result.published:
            doc["published"] = result.published.to_json()
        print(json.dumps(doc, indent=2))
    elif result.published:
        print_catalog(result.published)


def _summary(result: runs.RunResult) -> None:
    """One line per box, and where the boxes were published."""
    published = result.published
    boxes = {b.provider: b for b in published.boxes} if published else {}
    for r in result.boxes:
        b = boxes.get(r.provider)
        where = r.path.name if r.path else f"{published.target}/{b.key}" if published and b else "<stdout>"
        action = f", {said(b.action, published.target)}" if published and b and b.action != "uploaded" else ""
        print(f"boxpack: {where}: {r.provider} box, {human_size(r.size)}, firmware {r.firmware} ({r.firmware_reason}), "
              f"arch {r.architecture or 'unknown'} ({r.architecture_reason}), {r.checksum_type} {r.checksum}{action}, "
              f"{r.seconds:.1f} s", file=sys.stderr)
    if published:
        say_published(published, boxes=False)


def result_json(r: BoxResult) -> dict:
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
