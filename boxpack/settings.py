"""The core options of `boxpack SOURCE...`, written once: each PackOptions field's flag, help, values and check;
and the catalog-entry options packing, publish and `catalog add` share.

The command line's arguments, PackOptions.check(), schemas/pack-options.schema.json (for image builders
that call the library, such as an osbuild stage) and the README's option table all follow these tables
of Setting rows (options.py), as do the providers' own options (providers/); the defaults are PackOptions'
own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from . import accel
from .catalog import CHECKSUM_TYPES
from .options import Setting
from .output.gzip import DEFAULT_LEVEL, LEVELS
from .output.write import COMPRESSIONS
from .providers import PROVIDERS

FIRMWARES = ("bios", "efi")
ARCHITECTURE = re.compile(r"[a-z0-9_]+")


def _level(level: int) -> str | None:
    return None if level in LEVELS else f"compression level {level} is out of range {LEVELS.start}..{LEVELS.stop - 1}"


def _threads(threads: int | None) -> str | None:
    return None if threads is None or threads >= 1 else "--threads must be at least 1"


def _fast(fast: bool) -> str | None:
    if fast and not accel.available():
        return "--fast needs the isal package (ISA-L), which has wheels for x86-64 and aarch64 only"
    return None


def _architecture(arch: str | None) -> str | None:
    if arch is None or ARCHITECTURE.fullmatch(arch):
        return None
    return f"--architecture {arch!r} is not a Vagrant architecture name (amd64, arm64, i386, ...)"


SETTINGS = (
    Setting("providers", "--provider", "box provider; repeat for several boxes from one read of the disk", kind="list",
            choices=tuple(PROVIDERS), noun="provider", required=True),
    Setting("output", "--output", "output box file, a directory for several providers, or - for stdout (default: "
            "./<stem>-<provider>.box)", metavar="PATH", short="-o"),
    Setting("force", "--force", "overwrite an existing output file", kind="switch"),
    Setting("compression", "--compression", "box compression (default: gzip)", choices=COMPRESSIONS, noun="compression"),
    Setting("level", "--level", f"gzip level 1-12 (libdeflate; default {DEFAULT_LEVEL}, a little smaller than gzip -6)",
            type=int, metavar="N", check=_level),
    Setting("fast", "--fast", "fastest gzip (ISA-L): about twice as fast as --level 1, boxes about 12%% larger than "
            "gzip -6", kind="switch", check=_fast),
    Setting("threads", "--threads", "compression threads (default: all cores)", type=int, metavar="N", check=_threads),
    Setting("vagrantfile", "--vagrantfile", "use this Vagrantfile instead of the provider's default", metavar="FILE"),
    Setting("include", "--include", "add FILE to the box (repeatable)", kind="list", metavar="FILE"),
    Setting("architecture", "--architecture", "box architecture, Vagrant's name (amd64, arm64, i386, ...); default: "
            "a source box's, else the GPT root partition type, else the EFI boot loader on the ESP", metavar="ARCH", old="--arch", check=_architecture),
    Setting("firmware", "--firmware", "firmware the box starts the VM with; default: efi for a disk that only boots "
            "with UEFI, else bios", choices=FIRMWARES, noun="firmware"),
    Setting("checksum_type", "--checksum-type", "digest computed while writing (default: sha256)",
            choices=tuple(CHECKSUM_TYPES), noun="checksum type", group="checksums and catalog"),
    Setting("checksum_file", "--checksum-file", "write <box>.<checksum-type> beside each box (sha256sum format), or "
            "all lines to PATH (needed with -o -)", kind="optional", metavar="PATH", group="checksums and catalog"),
    Setting("sign_key", "--sign-key", "sign each box with this SSH key while it is written (ssh-keygen -Y sign -n "
            "vagrant-box): the signature beside the box file as BOX.sig, or with --publish beside it at its key + .sig",
            metavar="KEY", group="checksums and catalog"),
)


# What a catalog entry is given, the same for `boxpack SOURCE --catalog/--publish`, `boxpack publish` and
# `boxpack catalog add` (each its own --help group or place; publish and catalog add require a name and version).
CATALOG_ENTRY = (
    Setting("name", "--name", "the box's name, what `vagrant box add` is given", metavar="ORG/NAME", owner="catalog"),
    Setting("box_version", "--box-version", "the version the boxes are recorded as (X.Y.Z)", metavar="VERSION",
            owner="catalog"),
    Setting("default_architecture", "--default-architecture", "make these boxes their provider's default "
            "architecture (default: amd64 if there is one, else the first)", kind="switch", old="--default-arch",
            owner="catalog"),
    Setting("description", "--description", "the catalog's description", metavar="TEXT", owner="catalog"),
)


def schema(provider_options: Sequence[Any]) -> dict[str, Any]:
    """schemas/pack-options.schema.json: PackOptions as JSON, the providers' options under settings."""
    def one(kind: str, type_: type, choices: Sequence[str] | None) -> dict[str, Any]:
        item: dict[str, Any] = {"type": "integer" if type_ is int else "string"}
        if choices is not None:
            item["enum"] = list(choices)
        if kind == "switch":
            return {"type": "boolean"}
        if kind == "list":
            return {"type": "array", "items": item}
        if kind == "optional":
            return {"type": ["boolean", "string"]}
        return item

    properties = {s.name: {**one(s.kind, s.type, s.choices), "description": f"{s.flag}: {s.help.replace('%%', '%')}"}
                  for s in SETTINGS}
    properties["name"] = {"type": "string", "description": "the name the boxes and VMs are called after"}
    properties["settings"] = {
        "type": "object",
        "additionalProperties": False,
        "description": "the providers' own options, by name",
        "properties": {o.name: {**one("value", o.type, o.choices), "description": f"{o.flag}: {o.help}"}
                       for o in provider_options},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://boxpack.invalid/schemas/pack-options.schema.json",
        "title": "boxpack.PackOptions",
        "description": "The options of boxpack.pack() (and of `boxpack SOURCE...`), for a caller that keeps them as "
                       "JSON: boxpack.PackOptions(**document). Made from boxpack/settings.py; missing keys take their defaults.",
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }
