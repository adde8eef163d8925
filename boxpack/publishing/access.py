"""Who may read and write which boxes: visibility and tokens, kept in the store beside the boxes, so that
every `boxpack serve` replica over the same store agrees (layout.py has the keys, under .boxpack/).

An organisation or a single box is public or private; a box's own record wins over its organisation's,
and with neither it is public. A token may read, or read and write, an organisation's boxes or one box.
A token is `boxpack_<id>_<secret>`: the id (64 bits) names its record and is what logs show; the secret
(256 bits, from the system's CSPRNG) is shown once when the token is made, and only its SHA-256 is kept
(a secret this long needs no slow hash), compared in constant time.

A client (an HCP service principal's stand-in: `token create --client`) is such a record whose id and secret
are HCP_CLIENT_ID and HCP_CLIENT_SECRET; its secret is never a token itself, but mints short-lived ones
(`boxpack_<id>_<expiry>_<mac>`, the MAC keyed with the secret's SHA-256): nothing is written per token, and
revoking the client revokes them all.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
import secrets
from dataclasses import asdict, dataclass

from ..errors import BadInput, BadOption
from . import layout
from .stores.base import Store
from .versioned import Unchanged, json_record

TOKEN = re.compile(r"boxpack_([0-9a-f]{16})_([0-9a-f]{64})")
ISSUED = re.compile(r"boxpack_([0-9a-f]{16})_([0-9]{10})_([0-9a-f]{64})")  # minted by a client, until the epoch second
ISSUED_SECONDS = 3600
RECORD_LIMIT = 4096


@dataclass(frozen=True)
class Token:
    """A token's record: never the token itself."""

    id: str
    sha256: str  # of the secret part
    scope: str  # ORG or ORG/NAME
    access: str  # "read" or "write" (which reads too)
    created: str  # ISO 8601, UTC
    expires: str | None = None  # ISO 8601 date or time, UTC; None: never
    client: bool = False  # a client's: its secret mints short-lived tokens (issue()), and is none itself

    def expired(self, now: datetime.datetime) -> bool:
        return self.expires is not None and now >= _instant(self.expires)

    def may(self, name: str, write: bool = False) -> bool:
        """Whether it may read (or write) the box ORG/NAME."""
        covers = self.scope == name or self.scope == name.split("/")[0]
        return covers and (self.access == "write" or not write)


def _instant(text: str) -> datetime.datetime:
    """An ISO 8601 date (its first instant) or time; naive means UTC."""
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise BadOption(f"--expires {text!r}: give a date or time as ISO 8601 (2027-06-30, 2027-06-30T12:00Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _get_json(store: Store, key: str) -> dict | None:
    return json_record(store, key, RECORD_LIMIT).read()


def set_visibility(store: Store, scope: str, private: bool) -> None:
    """Make an organisation (ORG) or a box (ORG/NAME) private or public."""
    json_record(store, layout.visibility_key(scope), RECORD_LIMIT).update(lambda _: {"private": private})


def said(store: Store, scope: str) -> bool | None:
    """What an organisation's (ORG) or a box's (ORG/NAME) own visibility record says: private (True), public
    (False), or nothing (None)."""
    doc = _get_json(store, layout.visibility_key(scope))
    return None if doc is None else doc.get("private") is True


def is_private(store: Store, name: str) -> bool:
    """Whether the box ORG/NAME is private: its own record, else its organisation's, else public."""
    for scope in (name, name.split("/")[0]):
        doc = _get_json(store, layout.visibility_key(scope))
        if doc is not None:
            return doc.get("private") is True
    return False


def create_token(store: Store, scope: str, access: str, expires: str | None = None,
                 client: bool = False) -> tuple[str, Token]:
    """A new token for scope (ORG or ORG/NAME), read or write; returns the token (shown once) and its record. With
    client, a client's record: the secret alone is returned, the client's id is the record's."""
    layout.scope_parts(scope)
    if access not in ("read", "write"):
        raise BadOption(f"access {access!r}: give read or write")
    if expires is not None and _instant(expires) <= _now():
        raise BadOption(f"--expires {expires}: that is in the past")
    while True:
        token_id, secret = secrets.token_hex(8), secrets.token_hex(32)
        record = Token(token_id, hashlib.sha256(secret.encode()).hexdigest(), scope, access,
                       _now().isoformat(timespec="seconds"), expires, client)

        def new(there: dict | None) -> dict:
            if there is not None:
                raise Unchanged  # an id taken already (2**-64): another one
            return asdict(record)

        if json_record(store, layout.token_key(token_id), RECORD_LIMIT).update(new) == asdict(record):
            return (secret if client else f"boxpack_{token_id}_{secret}"), record


def list_tokens(store: Store) -> list[Token]:
    """Every token's record, oldest first."""
    found = []
    for key in store.list(layout.TOKENS_PREFIX):
        doc = _get_json(store, key)
        if doc is not None:
            found.append(_record(doc, key))
    return sorted(found, key=lambda t: (t.created, t.id))


def _record(doc: dict, where: str) -> Token:
    try:
        return Token(**{k: doc[k] for k in ("id", "sha256", "scope", "access", "created")}, expires=doc.get("expires"),
                     client=doc.get("client") is True)
    except (KeyError, TypeError):
        raise BadInput(f"{where}: not a token record") from None


def revoke_token(store: Store, token_id: str) -> Token:
    """Delete a token's record: the token no longer opens anything, on every replica within seconds."""
    key = layout.token_key(token_id)
    doc = _get_json(store, key)
    if doc is None:
        raise BadOption(f"no token with id {token_id} in {store.where}")
    store.delete(key)
    return _record(doc, key)


def token_ids(store: Store) -> list[str]:
    """The ids of every token there is."""
    return [key.removeprefix(layout.TOKENS_PREFIX).removesuffix(".json") for key in store.list(layout.TOKENS_PREFIX)]


def token_record(store: Store, token_id: str) -> Token | None:
    """The record of the token with this id while it is valid (not revoked, not expired), else None."""
    doc = _get_json(store, layout.token_key(token_id))
    record = _record(doc, token_id) if doc is not None else None
    return record if record is not None and not record.expired(_now()) else None


def token_id(token: str) -> str | None:
    """The id part of what looks like a token (for logs), else None."""
    m = TOKEN.fullmatch(token) or ISSUED.fullmatch(token)
    return m.group(1) if m else None


def check_token(store: Store, token: str) -> Token | None:
    """The record of a valid token (its secret matches, not expired; or minted by a client that is), else None."""
    m, issued = TOKEN.fullmatch(token), ISSUED.fullmatch(token)
    found = m or issued
    record = token_record(store, found.group(1)) if found else None
    if record is None:
        return None
    if m and not record.client:
        given = hashlib.sha256(m.group(2).encode()).hexdigest()
        return record if hmac.compare_digest(given, record.sha256) else None
    if issued and record.client and int(issued.group(2)) > _now().timestamp():
        return record if hmac.compare_digest(issued.group(3), _mac(record, issued.group(2))) else None
    return None


def _mac(record: Token, until: str) -> str:
    return hmac.new(bytes.fromhex(record.sha256), f"{record.id}_{until}".encode(), hashlib.sha256).hexdigest()


def issue(store: Store, client_id: str, secret: str) -> tuple[str, int] | None:
    """A short-lived token for a client whose id and secret these are (OAuth2's client credentials grant), and
    how many seconds it works; None when they are not a valid client's."""
    record = token_record(store, client_id) if re.fullmatch(r"[0-9a-f]{16}", client_id) else None
    if record is None or not record.client:
        return None
    if not hmac.compare_digest(hashlib.sha256(secret.encode()).hexdigest(), record.sha256):
        return None
    seconds = ISSUED_SECONDS
    if record.expires is not None:  # never beyond the client's own end
        seconds = min(seconds, int(_instant(record.expires).timestamp() - _now().timestamp()))
    until = f"{int(_now().timestamp()) + seconds:010d}"
    return f"boxpack_{record.id}_{until}_{_mac(record, until)}", seconds
