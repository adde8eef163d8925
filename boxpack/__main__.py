"""`python -m boxpack` and the `boxpack` command: Ctrl-C while the modules load is answered too."""

import sys


def run() -> int:
    try:
        from .cli import main
    except KeyboardInterrupt:
        sys.stderr.write("boxpack: interrupted\n")
        return 130
    return main()


if __name__ == "__main__":
    sys.exit(run())
