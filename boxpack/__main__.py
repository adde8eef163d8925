"""`python -m boxpack` and the `boxpack` command: Ctrl-C, SIGTERM and SIGHUP while the modules load are
answered as later on (exit 130)."""

import signal
import sys


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run() -> int:
    try:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _interrupt)  # before the imports, which take most of the first second
        from .cli import main

        return main()
    except KeyboardInterrupt:  # while loading, or before main() set up its own answer
        sys.stderr.write("boxpack: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(run())
