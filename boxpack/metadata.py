"""metadata.json: built per provider and checked against schemas/metadata.schema.json."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from .errors import BadInput

GIB = 1024**3


def json_object(data: bytes) -> dict[str, Any]:
    """data as a JSON object; ValueError saying why not. Hostile nesting is a RecursionError in json,
    and reported here like any other bad JSON."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise ValueError(f"not valid JSON: {str(e)[:200]}") from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def parse_metadata(data: bytes, where: str) -> dict[str, Any]:
    """A box's metadata.json; BadInput naming where when it is not a JSON object."""
    try:
        return json_object(data)
    except ValueError as e:
        raise BadInput(f"{where}: metadata.json is {e}") from None


def text(meta: Any, key: str) -> str | None:
    """metadata.json's key when it is a non-empty string (what provider and architecture must be), else None:
    a hostile box may give a list or an object."""
    value = meta.get(key) if isinstance(meta, dict) else None
    return value if isinstance(value, str) and value else None


@cache
def load_schema(name: str) -> dict[str, Any]:
    """A schema from the schemas/ folder (boxpack/schemas links to it)."""
    return json.loads(resources.files("boxpack").joinpath("schemas", name).read_text())


def validate(document: Any, schema_name: str, what: str) -> None:
    """Raise BoxpackError naming the first rule document breaks."""
    schema = load_schema(schema_name)
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(document))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "top level"
        raise BadInput(f"{what} is invalid at {where}: {error.message}")


def virtual_size_gib(size_bytes: int) -> int:
    """The disk size in whole GiB, rounded up: vagrant-libvirt sizes the volume from it."""
    return max(1, -(-size_bytes // GIB))


def metadata_json(metadata: dict[str, Any]) -> bytes:
    """The validated metadata.json bytes, keys in the order given."""
    validate(metadata, "metadata.schema.json", "metadata.json")
    return (json.dumps(metadata, indent=2) + "\n").encode()
