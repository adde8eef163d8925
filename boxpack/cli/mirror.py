"""boxpack mirror: copy boxes from a catalog onto storage you own."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .. import signatures
from ..errors import BadOption, BoxpackError
from ..progress import Transfers, human_size
from ..publishing import mirror
from .common import Parser, option, target_options


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="boxpack mirror",
        description="Copy boxes from a catalog (HCP Vagrant's, or any other) onto storage you own, every byte checked "
        "against the catalog's checksum as it streams, and write the mirrored catalog last, so that "
        "`VAGRANT_SERVER_URL=BASE-URL vagrant box add ORG/NAME` keeps working. Same targets and layout as "
        "boxpack publish. A rerun skips what is already mirrored; an entry that fails (a 404, a wrong checksum, a "
        "download cut short for good) is reported and left out, and the exit status is 1.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sources", metavar="SOURCE", nargs="*",
                   help="ORG/NAME (resolved against --server as Vagrant does), a catalog URL (https://, file://) or a catalog file")
    p.add_argument("--from-file", metavar="LIST", help="one SOURCE per line (# starts a comment)")
    p.add_argument("--org", action="append", default=[], metavar="ORG",
                   help="every box of the organisation ORG that --server lists to VAGRANT_CLOUD_TOKEN, public and private, "
                   "with every version (unreleased and revoked ones kept for boxpack serve's API) (repeatable)")
    p.add_argument("--to", required=True, metavar="TARGET", help="s3://BUCKET/PREFIX, or a directory that exists")
    p.add_argument("--base-url", required=True, metavar="URL", help="the public HTTP address of TARGET: the mirrored catalogs' URLs")
    p.add_argument("--server", metavar="URL",
                   help=f"where ORG/NAME is looked up (default: $VAGRANT_SERVER_URL, else {mirror.DEFAULT_SERVER})")
    p.add_argument("--versions", default="all", metavar="all|latest|N", help="which versions: all (default), the latest, or the newest N")
    p.add_argument("--provider", action="append", default=[], metavar="PROVIDER", help="only this provider (repeatable)")
    option(p, "--architecture", "--arch", action="append", default=[], metavar="ARCH", help="only this architecture (repeatable)")
    p.add_argument("--jobs", type=int, default=mirror.DEFAULT_JOBS, metavar="N",
                   help=f"transfers at once (default: {mirror.DEFAULT_JOBS})")
    p.add_argument("--verify", action="store_true",
                   help="also check each box as boxpack verify does, in the same stream, and report what Vagrant or its "
                   "provider would reject")
    p.add_argument("--require-valid", action="store_true", help="with --verify: leave out (and fail) boxes with errors")
    p.add_argument("--timeout", type=float, default=mirror.DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"the longest one box's transfer may take in all, resumptions included (default: {mirror.DEFAULT_TIMEOUT:.0f})")
    p.add_argument("--speed-limit", type=int, default=mirror.DEFAULT_SPEED[0], metavar="BYTES",
                   help=f"give a box up when it comes slower than this many bytes a second for --speed-time "
                   f"(default: {mirror.DEFAULT_SPEED[0]}; 0: never)")
    p.add_argument("--speed-time", type=float, default=mirror.DEFAULT_SPEED[1], metavar="SECONDS",
                   help=f"how long a box may come slower than --speed-limit (default: {mirror.DEFAULT_SPEED[1]:.0f})")
    p.add_argument("--allow-private-addresses", action="store_true",
                   help="copy boxes on loopback, link-local or private addresses that a catalog from the internet names "
                   "(refused by default: such a catalog could make boxpack fetch from your own network)")
    p.add_argument("--force", action="store_true", help="replace boxes the target already holds with other bytes")
    p.add_argument("--signed-by", metavar="ALLOWED_SIGNERS",
                   help="copy only boxes whose signature (their URL + .sig) a key this allowed_signers file allows for "
                   "vagrant-box made, checked as they stream; the signature is kept beside the copy")
    p.add_argument("--sign-key", metavar="KEY",
                   help="sign each box whose source has no signature with this SSH key (a signature found is kept)")
    visibility = p.add_mutually_exclusive_group()
    visibility.add_argument("--private", action="store_true",
                            help="make every mirrored box private before anything is written: boxpack serve asks for a "
                            "token (default: as its source says; private when it cannot say)")
    visibility.add_argument("--public", action="store_true", help="make every mirrored box public, whatever its source says")
    target_options(p, "list what would be copied, with each box's size and the total; download and write nothing")
    p.add_argument("--json", action="store_true",
                   help="print the report as JSON (schemas/mirror-result.schema.json); the lines per box stay on stderr")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress and no lines per box but the boxes that failed")
    return p


EPILOG = """examples:
  boxpack mirror bento/ubuntu-24.04 --versions latest --to s3://my-boxes/vagrant \\
      --base-url https://my-boxes.s3.eu-west-1.amazonaws.com/vagrant
  boxpack mirror --from-file our-boxes.txt --to /srv/boxes --base-url https://boxes.example.org --jobs 4
  boxpack mirror https://boxes.example.org/org/debian --to s3://new-home/vagrant --base-url https://cdn.example.org/vagrant

Private HCP boxes: set VAGRANT_CLOUD_TOKEN; it is sent to the catalog's server only.
"""


def _options(args: argparse.Namespace) -> tuple[list[str], mirror.MirrorOptions]:
    """The sources and options the command line gives, checked."""
    sources = list(args.sources)
    if args.from_file:
        try:
            lines = Path(args.from_file).read_text().splitlines()
        except OSError as e:
            raise BadOption(f"{args.from_file}: cannot read: {e.strerror}") from None
        sources += [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]
    if not args.timeout > 0:
        raise BadOption("--timeout must be a number of seconds above 0")
    if args.speed_limit < 0 or not args.speed_time > 0:
        raise BadOption("--speed-limit must be 0 or more bytes a second, --speed-time a number of seconds above 0")
    if not sources and not args.org:
        raise BadOption("no SOURCE given (ORG/NAME, a catalog URL or file, --from-file LIST, or --org ORG)")
    if args.signed_by and not os.path.isfile(args.signed_by):
        raise BadOption(f"--signed-by {args.signed_by}: no such allowed_signers file")
    if args.sign_key:
        signatures.check_key(args.sign_key)
    return sources, mirror.MirrorOptions(
        target=args.to, base_url=args.base_url, server=args.server, versions=args.versions, providers=args.provider,
        architectures=args.architecture, jobs=args.jobs, dry_run=args.dry_run, verify=args.verify,
        require_valid=args.require_valid, force=args.force, endpoint_url=args.endpoint_url, private=args.private,
        public=args.public, orgs=args.org, allow_private_addresses=args.allow_private_addresses, timeout=args.timeout,
        speed=(args.speed_limit, args.speed_time), token=os.environ.get("VAGRANT_CLOUD_TOKEN") or None,
        sign_key=args.sign_key, signed_by=args.signed_by,
    )


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        sources, options = _options(args)
        shown = sys.stderr.isatty() and not args.quiet and not args.json and not args.dry_run
        transfers = Transfers() if shown else None

        def progress(c: mirror.Copy, n: int) -> None:
            if transfers:
                transfers(c.label(), n)

        def done(c: mirror.Copy) -> None:
            if args.dry_run or (args.quiet and c.action != "failed"):  # -q still says what failed
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
        return e.exit_code
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
        if args.org and not result.dry_run:
            _switch_over(result, args.base_url)
    return result.exit_code


def _switch_over(result: mirror.MirrorResult, base_url: str) -> None:
    """What a team needs to switch: what came over, what is private, what was left out and why, and the one line
    that points Vagrant at the new place."""
    boxes = sorted({c.name for c in result.copies if c.action in ("copied", "skipped")})
    versions = {(c.name, c.version) for c in result.copies if c.action in ("copied", "skipped")}
    kept = sum(1 for c in result.copies if c.action in ("copied", "skipped") and c.status != "active")
    print(f"boxpack: mirror: {len(boxes)} box(es), {len(versions)} version(s) ({kept} box(es) of versions not released "
          f"or revoked kept for boxpack serve's API)", file=sys.stderr)
    for name, why in sorted(result.private.items()):
        print(f"boxpack: mirror: {name}: private ({why})", file=sys.stderr)
    for c in result.copies:
        if c.action == "failed":
            print(f"boxpack: mirror: left out: {c.label()}: {c.error}", file=sys.stderr)
    print(f"boxpack: mirror: point Vagrant at it: config.vm.box_server_url = \"{base_url}\" in a Vagrantfile, or "
          f"VAGRANT_SERVER_URL={base_url}", file=sys.stderr)


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
        what = {"planned": "copy", "skipped": "already mirrored", "failed": f"fails: {c.error}"}[c.action]
        rows.append((c.name, c.version, c.provider, c.architecture, human_size(c.size) if c.size is not None else "?", what, c.source_url))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    sys.stdout.write("".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] + "\n" for r in rows))
    planned = [c for c in result.copies if c.action == "planned"]
    total = sum(c.size or 0 for c in planned)
    unknown = sum(c.size is None for c in planned)
    print(f"boxpack: mirror: would copy {len(planned)} box(es), {human_size(total)}"
          + (f" and {unknown} of unknown size" if unknown else ""), file=sys.stderr)
