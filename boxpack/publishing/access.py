"""Who may read and write which boxes: visibility and tokens, kept in the store beside the boxes, so that
every `boxpack serve` replica over the same store agrees (layout.py has the keys, under .boxpack/).

An organisation or a single box is public or private; a box's own record wins over its organisation's,
and with neither it is public. A token may read, or read and write, an organisation's boxes or one box.
A token is `boxpack_<id>_<secret>`: the id (64 bits) names its record and is what logs show; the secret
(256 bits, from the system's CSPRNG) is shown once when the token is made, and only its SHA-256 is kept
(a secret this long needs no slow hash), compared in constant time.
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


def is_private(store: Store, name: str) -> bool:
    """Whether the box ORG/NAME is private: its own record, else its organisation's, else public."""
    for scope in (name, name.split("/")[0]):
        doc = _get_json(store, layout.visibility_key(scope))
        if doc is not None:
            return doc.get("private") is True
    return False


def create_token(store: Store, scope: str, access: str, expires: str | None = None) -> tuple[str, Token]:
    """A new token for scope (ORG or ORG/NAME), read or write; returns the token (shown once) and its record."""
    layout.scope_parts(scope)
    if access not in ("read", "write"):
        raise BadOption(f"access {access!r}: give read or write")
    if expires is not None and _instant(expires) <= _now():
        raise BadOption(f"--expires {expires}: that is in the past")
    while True:
        token_id, secret = secrets.token_hex(8), secrets.token_hex(32)
        record = Token(token_id, hashlib.sha256(secret.encode()).hexdigest(), scope, access,
                       _now().isoformat(timespec="seconds"), expires)

        def new(there: dict | None) -> dict:
            if there is not None:
                raise Unchanged  # an id taken already (2**-64): another one
            return asdict(record)

        if json_record(store, layout.token_key(token_id), RECORD_LIMIT).update(new) == asdict(record):
            return f"boxpack_{token_id}_{secret}", record


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
        return Token(**{k: doc[k] for k in ("id", "sha256", "scope", "access", "created")}, expires=doc.get("expires"))
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
    m = TOKEN.fullmatch(token)
    return m.group(1) if m else None


def check_token(store: Store, token: str) -> Token | None:
    """The record of a valid token (its secret matches, not expired), else None."""
    m = TOKEN.fullmatch(token)
    if not m:
        return None
    doc = _get_json(store, layout.token_key(m.group(1)))
    if doc is None:
        return None
    record = _record(doc, m.group(1))
    given = hashlib.sha256(m.group(2).encode()).hexdigest()
    if not hmac.compare_digest(given, record.sha256) or record.expired(_now()):
        return None
    return record
