"""boxpack serve: the server in front of a store; `boxpack serve token ...` and `boxpack serve visibility ...`
manage who may read what, in the store itself."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from dataclasses import asdict

from ..errors import BadOption, BoxpackError, CannotRun, OutputFailed
from ..publishing import access
from ..publishing.stores import open_target
from .common import Parser

EPILOG = """examples:
  boxpack serve --store s3://my-boxes/vagrant --listen 127.0.0.1:8080 --public-url https://boxes.example.org
  boxpack serve --store /srv/boxes --listen 0.0.0.0:8080 --public-url https://boxes.example.org --workers 4
  boxpack serve visibility acme private --store s3://my-boxes/vagrant        every box of acme needs a token
  boxpack serve token create acme --read --store s3://my-boxes/vagrant      prints the token, once
  boxpack serve token create acme --write --client --store s3://my-boxes/vagrant   HCP_CLIENT_ID, HCP_CLIENT_SECRET
  boxpack serve token list --store s3://my-boxes/vagrant
  boxpack serve token revoke 3f2a9c0d1e4b5a67 --store s3://my-boxes/vagrant
  VAGRANT_SERVER_URL=https://boxes.example.org VAGRANT_CLOUD_TOKEN=boxpack_... vagrant box add acme/debian
  VAGRANT_SERVER_URL=https://boxes.example.org VAGRANT_CLOUD_TOKEN=boxpack_... \\
    vagrant cloud publish acme/debian 1.2.0 libvirt debian-libvirt.box --release

Everything the servers know is in the store: run as many as needed behind a load balancer. A private box
needs the store itself to be private (no public-read bucket policy, no web server on the directory). A box
created through the API without is_private is private, as on HCP, unless its organisation was made public
(boxpack serve visibility ORG public). A pipeline that authenticated to HCP with a service principal sets
HCP_AUTH_URL to --public-url and uses a --client's id and secret.
"""


def _store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, metavar="TARGET", help="s3://BUCKET/PREFIX or a directory, as publish's --to")
    p.add_argument("--endpoint-url", metavar="URL",
                   help="an S3-compatible endpoint (default: AWS_ENDPOINT_URL, the AWS profile's, or AWS)")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="boxpack serve",
        usage="%(prog)s --store TARGET --listen HOST:PORT --public-url URL [options]\n"
              "       %(prog)s {token,visibility} ...  (each with --help)",
        description="Serve the boxes and catalogs of a store that boxpack publish and mirror write (the same layout, "
        "an existing bucket or directory as it is) for `vagrant box add ORG/NAME` with VAGRANT_SERVER_URL set to "
        "--public-url: private boxes behind tokens (Vagrant sends VAGRANT_CLOUD_TOKEN as a Bearer token to that "
        "host only), pages for people at /, /ORG and /ORG/NAME, boxes on S3 answered with a short-lived "
        "presigned redirect; and the Vagrant Cloud publish API that `vagrant cloud publish` and Packer's "
        "vagrant-cloud post-processor call (with a --write token), each upload checked before it is released. "
        "Needs the serve extra: pip install 'boxpack[serve]'.",
        epilog=EPILOG,
    )
    _store_options(p)
    p.add_argument("--listen", required=True, metavar="HOST:PORT", help="the address to listen on (behind a TLS proxy: 127.0.0.1:8080)")
    p.add_argument("--public-url", required=True, metavar="URL",
                   help="the address clients use (https://boxes.example.org): what VAGRANT_SERVER_URL is set to, and "
                   "the catalogs' box URLs")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="worker processes (default: 2)")
    p.add_argument("--trust-proxy", metavar="IPS",
                   help="take the client's address from X-Forwarded-For when the request comes from these (the "
                   "reverse proxy: 127.0.0.1), for the per-client limit on invalid tokens")
    p.add_argument("--presign-seconds", type=int, default=300, metavar="N",
                   help="how long a box's redirect to S3 works (default: 300)")
    return p


def build_token_parser() -> argparse.ArgumentParser:
    p = Parser(prog="boxpack serve token", description="Tokens for private boxes: made, listed and revoked in the store, "
               "so that every server over it agrees within seconds. Only a token's SHA-256 is kept.")
    sub = p.add_subparsers(dest="action", required=True, metavar="create|list|revoke")
    create = sub.add_parser("create", help="make a token and print it on stdout, alone, once")
    create.add_argument("scope", metavar="ORG[/NAME]", help="what it opens: an organisation's boxes, or one box")
    right = create.add_mutually_exclusive_group(required=True)
    right.add_argument("--read", action="store_const", const="read", dest="access", help="it may download")
    right.add_argument("--write", action="store_const", const="write", dest="access", help="it may also publish")
    create.add_argument("--expires", metavar="DATE", help="when it stops working (ISO 8601, UTC: 2027-06-30)")
    create.add_argument("--client", action="store_true",
                        help="an HCP service principal's stand-in: print HCP_CLIENT_ID and HCP_CLIENT_SECRET, with which "
                        "vagrant cloud (2.4) asks the server (HCP_AUTH_URL) for tokens lasting an hour")
    _store_options(create)
    listed = sub.add_parser("list", help="every token's id, scope, access and dates (never the token)")
    listed.add_argument("--json", action="store_true", help="print them as JSON")
    _store_options(listed)
    revoke = sub.add_parser("revoke", help="delete a token: it opens nothing any more")
    revoke.add_argument("id", metavar="ID", help="the token's id, as list shows it")
    _store_options(revoke)
    return p


def build_visibility_parser() -> argparse.ArgumentParser:
    p = Parser(prog="boxpack serve visibility", description="Make an organisation's boxes, or one box, private (a "
               "token that may read it is needed) or public. A box's own setting wins over its organisation's.")
    p.add_argument("scope", metavar="ORG[/NAME]")
    p.add_argument("visibility", choices=["private", "public"])
    _store_options(p)
    return p


def run(argv: list[str]) -> int:
    try:
        if argv[:1] == ["token"]:
            return _token(build_token_parser().parse_args(argv[1:]))
        if argv[:1] == ["visibility"]:
            args = build_visibility_parser().parse_args(argv[1:])
            access.set_visibility(open_target(args.store, args.endpoint_url), args.scope, args.visibility == "private")
            print(f"boxpack: serve: {args.scope} is {args.visibility}", file=sys.stderr)
            return 0
        return _serve(build_parser().parse_args(argv))
    except BoxpackError as e:
        print(f"boxpack: error: {e}", file=sys.stderr)
        return e.exit_code


def _token(args: argparse.Namespace) -> int:
    store = open_target(args.store, args.endpoint_url)
    if args.action == "create":
        token, record = access.create_token(store, args.scope, args.access, args.expires, args.client)
        print(f"HCP_CLIENT_ID={record.id}\nHCP_CLIENT_SECRET={token}" if record.client else token)
        until = f" until {record.expires}" if record.expires else ""
        what = f"client {record.id} (with HCP_AUTH_URL set to the server's address)" if record.client else f"token {record.id}"
        print(f"boxpack: serve: {what} may {record.access} {record.scope}{until}", file=sys.stderr)
    elif args.action == "list":
        records = access.list_tokens(store)
        if args.json:
            print(json.dumps([{k: v for k, v in asdict(r).items() if k != "sha256"} for r in records], indent=2))
        else:
            rows = [("ID", "SCOPE", "ACCESS", "CREATED", "EXPIRES", "KIND")]
            rows += [(r.id, r.scope, r.access, r.created, r.expires or "never", "client" if r.client else "token") for r in records]
            widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
            print("\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows))
    else:
        record = access.revoke_token(store, args.id)
        print(f"boxpack: serve: token {record.id} ({record.access} {record.scope}) revoked", file=sys.stderr)
    return 0


def _can_listen(host: str, port: int) -> None:
    """Said in one line, naming the address, before uvicorn says less (another server took the port)."""
    try:
        with socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET):
            pass
    except OSError as e:
        why = os.strerror(e.errno) if e.errno else str(e)
        raise OutputFailed(f"--listen {host}:{port}: cannot listen there: {why} (another server has it? SeaweedFS's "
                           "volume server takes 8080 unless given -volume.port)") from None


def _serve(args: argparse.Namespace) -> int:
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadOption(f"--listen {args.listen!r}: give HOST:PORT (127.0.0.1:8080)")
    if not args.public_url.startswith(("http://", "https://")):
        raise BadOption(f"--public-url {args.public_url!r}: give the http(s) address clients use")
    if args.workers < 1:
        raise BadOption("--workers must be at least 1")
    try:
        from ..publishing.server.context import Config
        from ..publishing.server.run import serve
    except ImportError as e:
        raise CannotRun(f"boxpack serve needs its extra ({e.name} is missing): pip install 'boxpack[serve]'") from None
    store = open_target(args.store, args.endpoint_url)
    store.stat(".boxpack/probe")  # an unreachable store or wrong credentials are said now, in one line
    _can_listen(host.strip("[]"), int(port))
    config = Config(args.store, args.public_url, args.endpoint_url, args.presign_seconds)
    serve(config, host.strip("[]"), int(port), args.workers, args.trust_proxy)
    return 0
