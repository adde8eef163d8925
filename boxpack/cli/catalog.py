"""boxpack catalog add|show|remove: the catalog JSON `vagrant box add URL` reads, as a file or published."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .. import catalog
from ..catalog import CHECKSUM_TYPES
from ..errors import BadInput, BoxpackError
from ..publishing import http as download
from ..publishing import counts, layout, publish, retention
from ..publishing.layout import CATALOG_LIMIT
from ..options import add_arguments
from ..settings import CATALOG_ENTRY
from .common import Parser, option


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="boxpack catalog",
        description="Create, update and read the Vagrant box catalog JSON that `vagrant box add URL` reads.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="action", required=True, metavar="add|show|remove|prune")
    add = sub.add_parser("add", help="add a box to a version (creating the catalog or version as needed)")
    add.add_argument("catalog", metavar="CATALOG")
    add.add_argument("--box", required=True, metavar="FILE", help="the box file; checksum computed from it")
    add_arguments(add, CATALOG_ENTRY, {}, option, required={"name", "box_version"})
    add.add_argument("--url", required=True, metavar="URL", help="absolute URL the box is served from")
    add.add_argument("--provider", metavar="PROVIDER", help="default: from the box's metadata.json")
    option(add, "--architecture", "--arch", metavar="ARCH", help="default: from the box's metadata.json, else unknown")
    add.add_argument("--checksum-type", choices=list(CHECKSUM_TYPES), default="sha256",
                     help="the digest computed from the box (default: sha256)")
    add.add_argument("--force", action="store_true", help="replace an entry for the same provider and architecture")
    add.add_argument("--allow-relative", action="store_true", help="accept a URL without a scheme")
    show = sub.add_parser("show", help="print the catalog as a table")
    show.add_argument("catalog", metavar="CATALOG",
                      help="a catalog file, a published one (s3://BUCKET/PREFIX/ORG/NAME), or its http(s):// URL")
    show.add_argument("--endpoint-url", metavar="URL", help="for s3:// catalogs: an S3-compatible endpoint")
    rm = sub.add_parser("remove", help="remove a version, or some of its entries (yank a broken box)")
    rm.add_argument("catalog", metavar="CATALOG", help="a catalog file, or a published one: s3://BUCKET/PREFIX/ORG/NAME")
    rm.add_argument("--box-version", required=True, metavar="VERSION", help="the version to take out")
    rm.add_argument("--provider", metavar="PROVIDER", help="only this provider's entries")
    option(rm, "--architecture", "--arch", metavar="ARCH", help="only this architecture's entries")
    rm.add_argument("--delete-boxes", action="store_true",
                    help="also delete the removed entries' boxes and checksum files (catalogs boxpack publish wrote), "
                    "after the catalog no longer names them")
    rm.add_argument("--endpoint-url", metavar="URL", help="for s3:// catalogs: an S3-compatible endpoint")
    prune = sub.add_parser("prune", help="remove old versions of a published box: the catalog first, their boxes after")
    prune.add_argument("target", metavar="TARGET", help="s3://BUCKET/PREFIX or a directory, as publish's --to")
    prune.add_argument("--name", required=True, metavar="ORG/NAME", help="the box whose versions are pruned")
    prune.add_argument("--keep", type=int, metavar="N", help="keep the newest N versions")
    prune.add_argument("--keep-days", type=float, metavar="DAYS", help="keep versions with a box younger than DAYS")
    prune.add_argument("--dry-run", action="store_true", help="say what would be removed; change nothing")
    prune.add_argument("--json", action="store_true", help="print what was removed as JSON")
    prune.add_argument("--endpoint-url", metavar="URL", help="for s3:// targets: an S3-compatible endpoint")
    return p


EPILOG = """examples:
  boxpack catalog add boxes.json --box debian-libvirt.box --name org/debian --box-version 1.2.0 \\
      --url https://example.org/boxes/debian-libvirt.box
  boxpack catalog show boxes.json
  boxpack catalog remove s3://bucket/vagrant/org/debian --box-version 1.2.0 --provider libvirt   (yank a published box)
  boxpack catalog prune s3://bucket/vagrant --name org/debian --keep 3   (the three newest versions stay)
  vagrant box add https://example.org/boxes/boxes.json    (served as application/json)
"""


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
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
        elif args.action == "prune":
            return _prune(args)
        elif args.action == "remove" and (args.delete_boxes or args.catalog.startswith("s3://")):
            doc, deleted = retention.yank(args.catalog, args.box_version, args.provider, args.architecture,
                                        delete_boxes=args.delete_boxes, endpoint_url=args.endpoint_url)
            for key in deleted:
                print(f"boxpack: deleted {key}", file=sys.stderr)
        elif args.action == "remove":
            doc = catalog.update(args.catalog, lambda d: catalog.remove(_existing(d, args.catalog), args.box_version, args.provider, args.architecture))
        elif args.catalog.startswith("s3://") or _published(args.catalog):
            published = publish.published(args.catalog, args.endpoint_url)
            doc = _existing(published.read(), args.catalog)
            downloads = counts.totals(published.store, published.name, fold=False)
            sys.stdout.write(catalog.table(doc, downloads or None))  # a column once boxpack serve counted some
            return 0
        elif args.catalog.startswith(("http://", "https://")):  # as Vagrant asks for it: JSON, within its size limit
            doc = catalog.parse(json.dumps(download.get_json(args.catalog, CATALOG_LIMIT)).encode(), args.catalog)
        else:
            doc = _existing(catalog.load(args.catalog), args.catalog)
        sys.stdout.write(catalog.table(doc))
    except BoxpackError as e:
        print(f"boxpack: error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


def _prune(args: argparse.Namespace) -> int:
    store = publish.open_store(args.target, args.endpoint_url, args.dry_run)
    pruned = retention.prune(store, args.name, args.keep, args.keep_days)
    if args.json:
        print(json.dumps({"name": args.name, "dry_run": args.dry_run, "versions": pruned.versions, "deleted": pruned.deleted},
                         indent=2))
    said = "would remove" if args.dry_run else "removed"
    print(f"boxpack: {store.where}: {args.name}: {said} {len(pruned.versions)} version(s)"
          + (f": {', '.join(pruned.versions)}" if pruned.versions else ""), file=sys.stderr)
    for key in pruned.deleted:
        print(f"boxpack: deleted {key}", file=sys.stderr)
    return 0


def _published(path: str) -> bool:
    """Whether a catalog file is one boxpack publish wrote in a directory target (ORG/NAME/catalog.json), beside
    which boxpack serve keeps download counts."""
    try:
        target, _ = layout.published_catalog(path)
    except BoxpackError:
        return False
    return os.path.isdir(target)


def _existing(doc: catalog.Catalog | None, path: str) -> catalog.Catalog:
    if doc is None:
        raise BadInput(f"{path}: no such catalog")
    return doc
