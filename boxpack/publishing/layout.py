"""Every key boxpack publishes under a target (an S3 prefix or a directory), and the URLs they are fetched by.

    <org>/<box>/<version>/<provider>/<arch>/vagrant.box           the box, never rewritten without --force
    <org>/<box>/<version>/<provider>/<arch>/vagrant.box.sha256    "<hex>  vagrant.box", as sha256sum writes it
    <org>/<box>/<version>/<provider>/<arch>/vagrant.box.sig       its signature, as ssh-keygen -Y sign writes it
    <org>/<box>                                                   the catalog where a key may also be a
    api/v2/vagrant/<org>/<box>                                    prefix (S3), and a copy (Vagrant 2.4 asks
                                                                  for this one first)
    <org>/<box>/catalog.json                                      the catalog in a directory, where a file
                                                                  cannot also be the directory of its
                                                                  versions: a web server answers the two
                                                                  names above with it
    .boxpack/visibility/<org>.json, .../<org>/<box>.json          who may read: boxpack serve's, never served
    .boxpack/tokens/<id>.json                                     a token's record (its SHA-256, not itself)
    .boxpack/boxes/<org>/<box>.json                               what the API knows beyond the catalog
    .boxpack/uploads/<ticket>.json                                what an upload URL may upload, until when
    .boxpack/leases/<org>/<box>.json                              who is releasing or deleting in the box now
    .boxpack/counts/<org>/<box>/<worker>-<hour>.json, base.json   downloads, as each server worker counted them

Nothing under .boxpack/ can be a box's key: an organisation's name never starts with a dot.

Vagrant expands `org/box` to `<server>/org/box` (2.3, lib/vagrant/action/builtin/box_add.rb
BoxAdd#call) and to `<server>/api/v2/vagrant/org/box` first (2.4, the same method), and takes a URL for
a catalog when a HEAD request answers Content-Type application/json (BoxAdd#metadata_url?).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

from ..errors import BadInput, BadOption

BOX_FILE = "vagrant.box"
CATALOG_FILE = "catalog.json"
API_PREFIX = "api/v2/vagrant"
BOX_CACHE = "public, max-age=31536000, immutable"  # a box key is never rewritten without --force
CATALOG_CACHE = "public, max-age=60"  # a new version or a yanked one shows within a minute
CATALOG_LIMIT = 20 * 1024 * 1024  # Vagrant's METADATA_SIZE_LIMIT (box_add.rb): larger is taken for a box
SIDECAR_LIMIT = 4096  # a checksum file: one line
SAFE_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
NAME_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # an organisation's or a box's name


def box_key(name: str, version: str, provider: str, architecture: str) -> str:
    """Where a box goes. Every part is checked: a catalog being mirrored comes from someone else, and a
    name such as ../.. must not write outside the target."""
    parts = [*name.split("/"), version, provider, architecture]
    if len(parts) != 5:
        raise BadInput(f"{name}: a box name is ORG/NAME")
    for part in parts:
        if not SAFE_PART.fullmatch(part) or len(part) > 128:
            raise BadInput(f"{name} {version} {provider} {architecture}: {part!r} cannot be part of a key "
                           "(letters, digits, _ . - only)")
    return f"{name}/{version}/{provider}/{architecture}/{BOX_FILE}"


def sidecar_key(box: str, checksum_type: str) -> str:
    """The checksum file beside a box's key."""
    return f"{box}.{checksum_type}"


def signature_key(box: str) -> str:
    """The signature beside a box's key (signatures.py): at the box's URL + .sig, from any web server."""
    return box + ".sig"


def sidecar(checksum: str) -> bytes:
    """A checksum file's one line, what `sha256sum -c` reads."""
    return f"{checksum}  {BOX_FILE}\n".encode()


def catalog_keys(name: str, nested: bool) -> list[str]:
    """The catalog's key, then its copies': where a key may also be a prefix (nested), ORG/NAME and the
    api/v2 copy; in a directory, one file the web server answers both names with."""
    return [name, f"{API_PREFIX}/{name}"] if nested else [f"{name}/{CATALOG_FILE}"]


PRIVATE_PREFIX = ".boxpack/"


def scope_parts(scope: str) -> list[str]:
    """An organisation (ORG) or a box (ORG/NAME), checked as every part of a key is."""
    parts = scope.split("/")
    if len(parts) not in (1, 2) or any(not SAFE_PART.fullmatch(p) or len(p) > 128 for p in parts):
        raise BadOption(f"{scope!r}: give an organisation (ORG) or a box (ORG/NAME): letters, digits, _ . - only")
    return parts


def visibility_key(scope: str) -> str:
    """Where an organisation's or a box's visibility is kept."""
    return f"{PRIVATE_PREFIX}visibility/{'/'.join(scope_parts(scope))}.json"


TOKENS_PREFIX = f"{PRIVATE_PREFIX}tokens/"


def token_key(token_id: str) -> str:
    """Where a token's record is kept, by its id (hex)."""
    if not re.fullmatch(r"[0-9a-f]{16}", token_id):
        raise BadOption(f"{token_id!r} is not a token id (16 hex digits, as `boxpack serve token list` shows them)")
    return f"{TOKENS_PREFIX}{token_id}.json"


def record_key(name: str) -> str:
    """Where the API keeps a box's versions that are not in its catalog (boxes.py)."""
    return f"{PRIVATE_PREFIX}boxes/{name}.json"


TICKET = re.compile(r"[0-9a-f]{32}")


def upload_key(ticket: str) -> str:
    """Where the API keeps what an upload URL (its secret: ticket) may upload."""
    if not TICKET.fullmatch(ticket):
        raise BadOption(f"{ticket!r} is not an upload ticket")
    return f"{PRIVATE_PREFIX}uploads/{ticket}.json"


def lease_key(name: str) -> str:
    """Where the lease on a box's releases and deletions is kept (lease.py)."""
    return f"{PRIVATE_PREFIX}leases/{'/'.join(scope_parts(name))}.json"


def counts_key(name: str, part: str) -> str:
    """Where a box's download counts are kept (counts.py): base, or a worker's for one hour."""
    return f"{PRIVATE_PREFIX}counts/{'/'.join(scope_parts(name))}/{part}.json"


def url(base_url: str, key: str) -> str:
    """The public URL of key: base + the key, each segment percent-encoded."""
    return base_url.rstrip("/") + "/" + quote(key)


def hosted(url: str, key: str) -> bool:
    """Whether a catalog entry's URL names its own key in this layout, under whatever base URL it was published
    with: its box is in the store. Otherwise it is elsewhere (a URL the API was given: HCP's hosted: false)."""
    return url.endswith("/" + quote(key))


def published_catalog(location: str) -> tuple[str, str]:
    """(target, ORG/NAME) of a catalog that boxpack publish wrote: s3://bucket/prefix/ORG/NAME, or a
    directory target's ORG/NAME/catalog.json."""
    if location.startswith("s3://"):
        head, _, box = location.rstrip("/").rpartition("/")
        root, _, org = head.rpartition("/")
        if not org or not root.startswith("s3://") or root == "s3:/":
            raise BadOption(f"{location}: give the catalog as s3://BUCKET[/PREFIX]/ORG/NAME")
        return root, f"{org}/{box}"
    path = Path(location)
    if path.name != CATALOG_FILE or len(path.parts) < 4:
        raise BadOption(f"{location}: not a published catalog (DIRECTORY/ORG/NAME/{CATALOG_FILE} or s3://BUCKET/PREFIX/ORG/NAME)")
    return str(path.parent.parent.parent), f"{path.parent.parent.name}/{path.parent.name}"
