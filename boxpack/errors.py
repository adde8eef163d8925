"""The errors boxpack raises, one type per thing a caller can do about it. Each message is one line, what
the command prints; each type carries the command's exit status (the table in the README and `--help`)."""

from __future__ import annotations


class BoxpackError(Exception):
    """Any problem boxpack describes in one line: catch this to catch them all."""

    exit_code = 1


class BadInput(BoxpackError):
    """A disk, box or catalog that cannot be read or breaks a rule: fix or replace the input."""

    exit_code = 1


class BadOption(BoxpackError):
    """An option or argument that cannot work, found before any disk is read: change the command."""

    exit_code = 2


class OutputFailed(BoxpackError):
    """The result cannot be written: a file or object is already there (without --force), the disk is
    full, or the store refuses or cannot be reached. Nothing half-written is left."""

    exit_code = 3


class NotFound(BadInput):
    """A box, version, provider, upload or URL that is not there (or, on a server, not there for who asks)."""


class Invalid(BadInput):
    """A value a client sent that breaks a rule: a version Vagrant cannot read, a field of the wrong type."""


class Conflict(OutputFailed):
    """Not now: what was asked for clashes with the state the thing is in (released, being changed by another)."""


class CannotRun(BoxpackError):
    """This machine lacks what the step needs (QEMU, firmware, ssh): install it, or run elsewhere."""

    exit_code = 4


class InternalError(BoxpackError):
    """A bug in boxpack: a rule it broke itself, caught before it wrote a wrong box."""

    exit_code = 70


EXIT_CODES = (
    (0, "done (verify: no errors; warnings alone are 0 unless --strict)"),
    (BadInput.exit_code, "the input is bad: a disk, box or catalog that cannot be read or breaks a rule; "
                         "verify found errors; a boot test check failed"),
    (BadOption.exit_code, "usage: an unknown option, a value that cannot work, options that conflict"),
    (OutputFailed.exit_code, "the output failed: a file or object already there (without --force), "
                             "a full disk, a store that refuses or cannot be reached"),
    (CannotRun.exit_code, "cannot run here: QEMU, firmware or ssh missing (the message says what to install)"),
    (InternalError.exit_code, "internal error: a bug in boxpack (BOXPACK_DEBUG=1 shows where)"),
    (130, "interrupted (Ctrl-C, SIGTERM, SIGHUP): nothing half-written is left"),
)
