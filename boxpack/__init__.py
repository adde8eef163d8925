"""boxpack: turn a disk image into Vagrant boxes.

The names below are imported when first used: `boxpack` (the command) sets its signal handlers before
the heavy modules load, so that SIGTERM in the first second is answered as later on.
"""

from typing import Any

ERRORS = ("BoxpackError", "BadInput", "BadOption", "OutputFailed", "CannotRun", "InternalError")
__all__ = ["BoxResult", *ERRORS, "PackOptions", "TestOptions", "TestResult", "pack", "test"]
__version__ = "0.1.0"

_WHERE = {"BoxResult": "packing", "PackOptions": "packing", "pack": "packing", **dict.fromkeys(ERRORS, "errors"),
          "TestOptions": "inspect.boottest", "TestResult": "inspect.boottest", "test": "inspect.boottest"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'boxpack' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{_WHERE[name]}", __name__), name)
