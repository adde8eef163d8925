"""boxpack --mkosi: what to pack, found from what mkosi tells its post-output hook.

mkosi runs mkosi.postoutput (run_postoutput_scripts in mkosi/__init__.py) with
$OUTPUTDIR, the staging directory whose files mkosi moves to the output
directory afterwards; $ARCHITECTURE in mkosi's names (class Architecture in
mkosi/config.py); $IMAGE_ID and $IMAGE_VERSION when they are set; and
$MKOSI_CONFIG, a file holding the whole configuration as JSON (Config.to_dict:
"Format", "Output", "OutputExtension", "CompressOutput", ...). The disk is
$OUTPUTDIR/<Output>.<OutputExtension>[.<compression>]
(Config.output_with_compression); <Output> defaults to <ImageId or
"image">[_<ImageVersion>] (config_default_output). Older mkosi (14, Debian
12's) has no post-output hook and no $MKOSI_CONFIG; without that file the
names are derived from $IMAGE_ID and $IMAGE_VERSION the same way.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BadInput, BadOption
from .metadata import json_object

# mkosi's Architecture names that differ from Vagrant's (Vagrant::Util::Platform.architecture maps the
# host to amd64, i386 and arm64); the others lose their "-" (ppc64-le: ppc64le, as the GPT root types name them).
VAGRANT_ARCHITECTURES = {"x86-64": "amd64", "x86": "i386"}
# Compression.extension() in mkosi/config.py: the suffix each CompressOutput= value adds.
SUFFIXES = {"zstd": ".zst", "zst": ".zst", "xz": ".xz", "gz": ".gz", "gzip": ".gz", "bz2": ".bz2"}
CONFIG_LIMIT = 16 * 1024 * 1024


@dataclass(frozen=True)
class MkosiImage:
    """The disk mkosi just wrote and what the boxes are called after it."""

    disk: Path
    output_dir: Path
    name: str  # mkosi's Output=: the boxes are <name>-<provider>.box
    architecture: str | None  # Vagrant's name
    version: str | None  # ImageVersion=: the catalog version


def vagrant_architecture(mkosi_name: str) -> str:
    return VAGRANT_ARCHITECTURES.get(mkosi_name, mkosi_name.replace("-", ""))


def from_environment(env: Mapping[str, str]) -> MkosiImage:
    """The image of the mkosi build whose post-output hook this is; BoxpackError when there is none."""
    if not env.get("OUTPUTDIR"):
        raise BadOption("--mkosi: $OUTPUTDIR is not set; run boxpack --mkosi from an mkosi.postoutput script")
    output_dir = Path(env["OUTPUTDIR"])
    config = _config(env.get("MKOSI_CONFIG"))
    fmt = _text(config, "Format") or "disk"
    if fmt != "disk":
        raise BadInput(f"--mkosi: mkosi's Format={fmt} makes no disk image; boxpack needs Format=disk")
    image_id = _text(config, "ImageId") or env.get("IMAGE_ID")
    version = _text(config, "ImageVersion") or env.get("IMAGE_VERSION") or None
    arch = _text(config, "Architecture") or env.get("ARCHITECTURE")
    for what, value in (("ImageId", image_id), ("ImageVersion", version), ("Output", _text(config, "Output")),
                        ("OutputExtension", _text(config, "OutputExtension"))):
        if value and ("/" in value or value in (".", "..") or len(value.encode()) > 200):
            # mkosi refuses '/' in these: the boxes stay in $OUTPUTDIR, under a name a file system takes
            raise BadInput(f"--mkosi: {what}={value[:60]!r} is not a file name (mkosi refuses '/' in it)")
    if "Output" in config:
        compression = _text(config, "CompressOutput") or "none"
        names = [f"{_text(config, 'Output')}.{_text(config, 'OutputExtension') or 'raw'}{SUFFIXES.get(compression, '')}"]
    else:
        stems = dict.fromkeys(f"{base}_{version}" if version else base for base in (image_id or "image", "image"))
        names = [f"{stem}.raw{suffix}" for stem in stems for suffix in ("", *dict.fromkeys(SUFFIXES.values()))]
    for name in names:
        disk = output_dir / name
        try:
            found = disk.is_file()
        except OSError as e:
            raise BadInput(f"--mkosi: {disk}: {e.strerror}") from None
        if found:
            stem = name.removesuffix(next((s for s in SUFFIXES.values() if name.endswith(s)), ""))
            return MkosiImage(disk, output_dir, stem.rpartition(".")[0], vagrant_architecture(arch) if arch else None, version)
    raise BadInput(f"--mkosi: no disk image in {output_dir} (looked for {', '.join(names)})")


def _text(config: dict[str, Any], key: str) -> str | None:
    """A setting that must be a string (a name, a version); BoxpackError for a number, list or object."""
    value = config.get(key)
    if value is not None and not isinstance(value, str):  # Config.to_dict writes these as strings (or null)
        raise BadInput(f"--mkosi: $MKOSI_CONFIG's {key} is {json.dumps(value)[:60]}, not a string")
    return value or None


def _config(path: str | None) -> dict[str, Any]:
    """$MKOSI_CONFIG's settings, or none when mkosi set no such file."""
    if not path:
        return {}
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block open() until someone writes to it
            raise BadInput(f"--mkosi: $MKOSI_CONFIG {path}: not a regular file")
        with open(path, "rb") as f:
            data = f.read(CONFIG_LIMIT + 1)
    except OSError as e:
        raise BadInput(f"--mkosi: $MKOSI_CONFIG {path}: cannot read: {e.strerror}") from None
    try:
        if len(data) > CONFIG_LIMIT:
            raise ValueError("larger than 16 MiB")
        return json_object(data)
    except ValueError as e:
        raise BadInput(f"--mkosi: $MKOSI_CONFIG {path}: not mkosi's JSON configuration ({e})") from None
