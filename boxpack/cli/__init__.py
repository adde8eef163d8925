"""The boxpack command line: one module per verb (pack.py is `boxpack SOURCE...`), each imported only when
its verb runs, so that `boxpack verify` never loads the S3 client or the boot test."""

from __future__ import annotations

import ctypes
import importlib
import os
import signal
import sys

from .common import VERBS


def _keep_freed_memory() -> None:
    """Let glibc keep freed buffers instead of unmapping them.

    The MiB-sized pieces passed between threads are otherwise returned to the
    kernel and faulted back in: 426,000 page faults for 1.6 GB of data, a fifth
    of a --fast run. Peak RSS stays under 75 MiB with this.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return
    libc.mallopt(-3, 64 * 1024 * 1024)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 256 * 1024 * 1024)  # M_TRIM_THRESHOLD


def main(argv: list[str] | None = None) -> int:
    """The boxpack command; anything unexpected is reported in one line (BOXPACK_DEBUG=1 shows the traceback)."""
    _keep_freed_memory()
    try:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _interrupt)
    except ValueError:  # not the main thread: an embedding program handles signals
        pass
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:  # before a run started (or in inspect/verify)
        print("boxpack: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (`boxpack ... --json | head`): what was done stays done
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes it
        return 1
    except Exception as e:  # a bug: still one line, and a distinct exit code
        if os.environ.get("BOXPACK_DEBUG"):
            raise
        print(f"boxpack: internal error: {type(e).__name__}: {e} (set BOXPACK_DEBUG=1 for details)", file=sys.stderr)
        return 70


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM and SIGHUP stop a run as Ctrl-C does: temporary files are removed on the way out."""
    raise KeyboardInterrupt


def _main(argv: list[str]) -> int:
    from .oneline import show_warnings  # after the signal handlers: logging takes a while to import

    show_warnings()
    verb = argv[0] if argv[:1] and argv[0] in VERBS else None
    module, function = VERBS[verb].split(":") if verb else ("pack", "run")
    run = getattr(importlib.import_module(f".{module}", __name__), function)
    return int(run(argv[1:] if verb else argv))
