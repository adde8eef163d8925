"""The one kind of option boxpack has: a flag, its help, its values and their check, and who owns it.

The core options of packing (settings.py), the catalog-entry options that packing, publish and `catalog
add` share (settings.py), and each provider's own (providers/) are Setting rows; every parser is built
from them (add_arguments), every value checked by them (problem), as mkosi's ConfigSetting table makes
mkosi's (mkosi/config.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Setting:
    name: str  # the PackOptions field
    flag: str
    help: str
    kind: str = "value"  # "value"; "switch" (--flag alone); "list" (repeatable); "optional" (--flag or --flag VALUE)
    type: type = str
    choices: Sequence[str] | None = None
    metavar: str | None = None
    old: str | None = None  # an older spelling that still parses, hidden from --help
    noun: str = ""  # what a value is, for "unknown <noun> 'x'; choose from ..."
    short: str | None = None  # a one-letter flag
    required: bool = False  # on the command line (the library has a default)
    group: str = ""  # the --help section it is listed in, after the general ones
    check: Callable[[Any], str | None] | None = None  # what is wrong with a value (the whole message), None when it can work
    default: Any = None  # the library's default, where PackOptions has no field for it (a provider's options)
    owner: str = "core"  # "core" (packing), "catalog" (a catalog entry's), or "provider" (some providers' own)


def provider_option(name: str, flag: str, help: str, *, check: Callable[[Any], str | None] | None = None,
                    **kw: Any) -> Setting:
    """A provider's own option (providers/ says which read it): what its check finds wrong is said after the
    flag and the value given ("--cpus 100: is out of range 1..64")."""
    def said(value: Any) -> str | None:
        wrong = check(value) if check else None
        return f"{flag} {value!r}: {wrong}" if wrong else None

    return Setting(name, flag, help, check=said if check else None, owner="provider", **kw)


def add_arguments(where: argparse._ActionsContainer, settings: Sequence[Setting], defaults: dict[str, Any],
                  option: Callable[..., None], required: Collection[str] = ()) -> None:
    """Settings as argparse arguments, with the library's defaults (else each setting's own); option(container,
    flag, old, **kw) adds one with a hidden older spelling. required: the names this parser requires too."""
    for s in settings:
        kw: dict[str, Any] = {"dest": s.name, "help": s.help}
        if s.kind == "switch":
            kw["action"] = "store_true"
        elif s.kind == "list":
            kw.update(action="append", choices=s.choices, metavar=s.metavar, required=s.required)
            if not s.required:
                kw["default"] = []
        elif s.kind == "optional":
            kw.update(nargs="?", const=True, default=False, metavar=s.metavar)
        else:
            kw.update(type=s.type, choices=s.choices, metavar=s.metavar, default=defaults.get(s.name, s.default))
            if s.required or s.name in required:
                kw["required"] = True
        if s.old:
            option(where, s.flag, s.old, **kw)
        else:
            where.add_argument(*([s.short] if s.short else []), s.flag, **kw)


def problem(setting: Setting, value: Any) -> str | None:
    """What is wrong with value for setting, in one line; None when it can work."""
    values = value if setting.kind == "list" else [value]
    if setting.choices is not None:
        for v in values:
            if v is not None and v not in setting.choices:
                choose = f"choose from {', '.join(setting.choices)}"
                return f"unknown {setting.noun} {v!r}; {choose}" if setting.noun else f"{setting.flag} {v!r}: {choose}"
    return setting.check(value) if setting.check and value is not None else None


