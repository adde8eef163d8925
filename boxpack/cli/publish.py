"""boxpack publish: upload boxes and record them in the catalog of their target; the reports `boxpack SOURCE
--publish` shares."""

from __future__ import annotations

import argparse
import json
import sys

from .. import catalog
from ..catalog import CHECKSUM_TYPES
from ..errors import BoxpackError
from ..progress import Progress, human_size
from ..publishing import publish
from ..options import add_arguments
from ..settings import CATALOG_ENTRY
from .common import Parser, option, target_options


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="boxpack publish",
        description="Upload boxes to S3-compatible storage or a directory a web server serves, then record them in "
        "the catalog there, so that `VAGRANT_SERVER_URL=BASE-URL vagrant box add ORG/NAME` finds them. Each box "
        "goes to ORG/NAME/VERSION/PROVIDER/ARCH/vagrant.box beside its checksum file; the catalog is written last, "
        "in one conditional write, so it never names a missing or partial box and concurrent publishers keep "
        "each other's entries. S3 credentials come from the standard AWS chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, "
        "~/.aws); install boto3 for s3:// (pip install 'boxpack[s3]').",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("boxes", metavar="BOX", nargs="+", help="box files; provider and architecture from their metadata.json")
    p.add_argument("--to", required=True, metavar="TARGET", help="s3://BUCKET/PREFIX, or a directory that exists")
    add_arguments(p, CATALOG_ENTRY, {}, option, required={"name", "box_version"})
    p.add_argument("--base-url", required=True, metavar="URL",
                   help="the public HTTP address of TARGET (bucket endpoint, CDN, web server): the catalog's URLs and "
                   "VAGRANT_SERVER_URL")
    option(p, "--architecture", "--arch", metavar="ARCH", help="for every BOX (default: from its metadata.json, else unknown)")
    p.add_argument("--checksum-type", choices=list(CHECKSUM_TYPES), default="sha256",
                   help="the digest recorded in the catalog and the checksum file (default: sha256)")
    p.add_argument("--force", action="store_true", help="replace boxes already published for the same version, provider and architecture")
    p.add_argument("--private", action="store_true",
                   help="make the box private before anything is written: boxpack serve asks for a token that may read it")
    target_options(p, "read the target and say what would be uploaded and the catalog that would result; write nothing")
    p.add_argument("--sign-key", metavar="KEY",
                   help="sign each box with this SSH key as `ssh-keygen -Y sign -n vagrant-box` does (a key with a passphrase "
                   "through ssh-agent: give its .pub), the signature beside the box at its key + .sig")
    p.add_argument("--json", action="store_true", help="print what was published as JSON (schemas/publish-result.schema.json)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary lines")
    return p


EPILOG = """examples:
  boxpack publish debian-libvirt.box debian-virtualbox.box --to s3://boxes-bucket/vagrant --name org/debian \\
      --box-version 1.2.0 --base-url https://boxes-bucket.s3.eu-west-1.amazonaws.com/vagrant
  boxpack publish debian-libvirt.box --to /srv/boxes --name org/debian --box-version 1.2.0 \\
      --base-url https://boxes.example.org
  VAGRANT_SERVER_URL=https://boxes.example.org vagrant box add org/debian

The web server must answer ORG/NAME with the catalog as application/json, or Vagrant takes it for a
box: the README's "Serving a directory with nginx" has the server block.

A rerun after an interruption reuses the parts the store already holds. `boxpack catalog remove
s3://BUCKET/PREFIX/ORG/NAME --box-version V` yanks a version (--delete-boxes also deletes its boxes).
"""


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    progress = Progress() if sys.stderr.isatty() and not args.quiet and not args.json else None
    try:
        result = publish.publish_boxes(
            args.boxes, options(args, args.to), architecture=args.architecture,
            checksum_type=args.checksum_type, progress=progress,
        )
    except BoxpackError as e:
        if progress:
            progress.finish()
        print(f"boxpack: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        if progress:
            progress.finish()
        print("boxpack: interrupted; the catalog was not changed (a rerun reuses what was uploaded)", file=sys.stderr)
        return 130
    report(result, args.quiet, args.json)
    return 0


def options(args: argparse.Namespace, target: str) -> publish.PublishOptions:
    return publish.PublishOptions(
        target=target, name=args.name, version=args.box_version, base_url=args.base_url, force=args.force,
        default_architecture=args.default_architecture, description=args.description,
        endpoint_url=args.endpoint_url, dry_run=args.dry_run, private=args.private, sign_key=args.sign_key,
    )


# What a box's action is called, into a bucket and into a directory (a copy into a directory is not an upload).
ACTIONS = {"uploaded": ("uploaded", "written"), "resumed": ("uploaded, resuming an interrupted upload", "written"),
           "unchanged": ("already there", "already there"), "planned": ("would upload", "would write")}


def said(action: str, target: str) -> str:
    return ACTIONS[action][0 if target.startswith("s3://") else 1]


def report(result: publish.PublishResult, quiet: bool, as_json: bool) -> None:
    """What happened to each box and the catalog on stderr, then the catalog (or the JSON) on stdout."""
    if not quiet:
        say_published(result)
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print_catalog(result)


def print_catalog(result: publish.PublishResult) -> None:
    """The resulting catalog on stdout: as JSON with --dry-run (what would be written), else as a table."""
    assert result.catalog is not None
    if result.dry_run:
        sys.stdout.buffer.write(catalog.dumps(result.catalog))
    else:
        sys.stdout.write(catalog.table(result.catalog))
    sys.stdout.flush()


def say_published(result: publish.PublishResult, boxes: bool = True) -> None:
    for b in result.boxes if boxes else ():
        print(f"boxpack: {result.target}: {b.key}: {said(b.action, result.target)}, {human_size(b.size)}, "
              f"{b.checksum_type} {b.checksum}", file=sys.stderr)
    if not result.changed:
        print(f"boxpack: {result.target}: catalog unchanged: {result.name} {result.version} in {result.catalog_urls[0]}",
              file=sys.stderr)
        return
    done = "would record" if result.dry_run else "recorded"
    print(f"boxpack: {result.target}: {done} {len(result.boxes)} box(es) as {result.name} {result.version} in "
          f"{result.catalog_urls[0]}", file=sys.stderr)
