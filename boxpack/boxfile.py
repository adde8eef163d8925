"""Reading box files: metadata.json from a box (tar, tar.gz, ...), streamed, never extracted."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path
from typing import Any

from .errors import BoxpackError

METADATA_LIMIT = 1024 * 1024  # a metadata.json larger than this is not one


def read_metadata(box: str | os.PathLike[str]) -> dict[str, Any]:
    """The box's root metadata.json, read by streaming the archive until it is found."""
    box = Path(box)
    try:
        with tarfile.open(box, "r|*") as tar:
            for member in tar:
                if member.name.removeprefix("./") != "metadata.json":
                    continue
                if not member.isfile() or member.size > METADATA_LIMIT:
                    raise BoxpackError(f"{box}: metadata.json is not a regular file of sane size")
                data = tar.extractfile(member).read()
                try:
                    meta = json.loads(data)
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    raise BoxpackError(f"{box}: metadata.json is not valid JSON: {e}") from None
                if not isinstance(meta, dict):
                    raise BoxpackError(f"{box}: metadata.json is not a JSON object")
                return meta
    except FileNotFoundError:
        raise BoxpackError(f"{box}: no such file") from None
    except IsADirectoryError:
        raise BoxpackError(f"{box}: is a directory, expected a box file") from None
    except (tarfile.TarError, EOFError, OSError) as e:
        raise BoxpackError(f"{box}: not a readable box archive ({e})") from None
    raise BoxpackError(f"{box}: has no metadata.json at its root")
