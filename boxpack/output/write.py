"""The output stage, for every provider: tar, gzip, digest, and an atomic write.

A box goes to a stream (stdout, a pipe, a FIFO or a character device, written
as they are), or to a temporary file in the target's directory that is
renamed into place only when complete: a failed or interrupted run leaves
nothing behind, and an existing file is replaced only with force.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from .. import files
from ..errors import BadOption, InternalError, OutputFailed
from ..member import Deflated, Member
from .gzip import DigestWriter, ParallelGzip
from .tar import source_date_epoch, tar_stream

Output = str | os.PathLike[str] | BinaryIO | Callable[[str, str | None], BinaryIO] | None
Target = Path | BinaryIO
COMPRESSIONS = ("gzip", "none")


def is_stream(output: Output) -> bool:
    return output == "-" or hasattr(output, "write")


def _node_kind(path: Path) -> str | None:
    """"stream" for a FIFO or character device (written as a pipe), "file", "dir", another kind, or None."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as e:
        raise OutputFailed(f"{path}: {e.strerror}") from None
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return "stream"
    return "special file"


def targets(names: Sequence[str], output: Output, sources: Sequence[Path], force: bool) -> list[Target]:
    """Where each box (by file name) goes, refusing to overwrite without force.

    output is None (the current directory), a directory (an existing one, or
    any path ending in "/", created as `mkdir -p` would), a file path (one
    box), or "-" / a binary stream (one box).
    """
    if is_stream(output):
        if len(names) > 1:
            raise BadOption("-o - writes one box to stdout; give one --provider, or -o DIR for several")
        return [output]  # type: ignore[list-item]
    if output is None:
        directory: Path | None = Path.cwd()
    else:
        out = Path(output)  # type: ignore[arg-type]
        if str(output).endswith("/") or _node_kind(out) == "dir":
            directory = out
        elif len(names) > 1:
            raise BadOption(f"{out}: is not a directory; with several providers -o names a directory (end it with /)")
        else:
            directory = None
    if directory is not None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise OutputFailed(f"{directory}: exists and is not a directory") from None
        except OSError as e:
            raise OutputFailed(f"{directory}: cannot create the output directory: {e.strerror}") from None
        paths = [directory / n for n in names]
    else:
        paths = [Path(output)]  # type: ignore[arg-type]
    result: list[Target] = []
    for t in paths:
        kind = _node_kind(t)
        if kind and any(t.resolve() == s.resolve() for s in sources):
            raise BadOption(f"{t}: is the source itself; choose another output with -o")
        if not t.parent.is_dir():
            raise OutputFailed(f"{t.parent}: no such directory for the output box")
        if kind == "dir":
            raise OutputFailed(f"{t}: is a directory")
        if kind == "special file":
            raise OutputFailed(f"{t}: is a device or socket, not a file boxpack will write a box to")
        if kind == "file" and not force:
            raise OutputFailed(f"{t}: already exists; use --force to overwrite it")
        result.append(t)
    return result


def checksum_path(box: Path, checksum_type: str) -> Path:
    """Where --checksum-file puts a box's checksum: beside it, named <box>.<type>."""
    return box.with_name(f"{box.name}.{checksum_type}")


def checksum_targets(checksum_file: bool | str | os.PathLike[str], boxes: Sequence[Target | None], checksum_type: str,
                     sources: Sequence[Path], force: bool) -> None:
    """The checksum files' rules are the boxes': never a source or a box, never an existing file without force."""
    if checksum_file is True:
        paths = [checksum_path(b, checksum_type) for b in boxes if isinstance(b, Path)]
    else:
        paths = [Path(checksum_file)]  # type: ignore[arg-type]
    taken = [p.resolve() for p in (*sources, *(b for b in boxes if isinstance(b, Path)))]
    for p in paths:
        kind = _node_kind(p)
        if p.resolve() in taken:
            raise BadOption(f"{p}: is a source or a box of this run; choose another --checksum-file")
        if not p.parent.is_dir():
            raise OutputFailed(f"{p.parent}: no such directory for the checksum file")
        if kind == "dir":
            raise OutputFailed(f"{p}: is a directory")
        if kind is not None and not force:
            raise OutputFailed(f"{p}: already exists; use --force to overwrite it")


def _write_archive(
    out: BinaryIO, members: list[Member], compression: str, gzip: Callable[[DigestWriter], ParallelGzip], checksum: str, progress=None
) -> DigestWriter:
    digest = DigestWriter(out, checksum)
    if compression == "none":
        for chunk, _ in tar_stream(members, source_date_epoch()):
            if isinstance(chunk, Deflated):
                raise InternalError("internal error: a compressed piece in a box written without gzip")
            digest.write(chunk)
            if progress:
                progress(len(chunk))
        out.flush()
        return digest
    gz = gzip(digest)
    try:
        for chunk, stored in tar_stream(members, source_date_epoch()):
            gz.write(chunk, stored)
            if progress:
                progress(len(chunk))
        gz.close()
        out.flush()
    except BaseException:
        gz.abort()
        raise
    return digest


def write_box(
    target: Target,
    members: list[Member],
    compression: str,
    gzip: Callable[[DigestWriter], ParallelGzip],
    force: bool,
    checksum: str,
    progress=None,
) -> tuple[int, str]:
    """Write the archive to a stream, or to a temporary file renamed into place when complete: (size, hex digest)."""
    if not isinstance(target, Path):
        return _write_stream(target, members, compression, gzip, checksum, progress)
    if _node_kind(target) == "stream":  # a FIFO or /dev/null: written as a pipe, never replaced
        try:
            with open(target, "wb") as out:
                return _write_stream(out, members, compression, gzip, checksum, progress)
        except OSError as e:
            raise OutputFailed(f"{target}: cannot write: {e.strerror}") from None
    box = files.AtomicFile(target, "the box")
    try:
        digest = _write_archive(box.file, members, compression, gzip, checksum, progress)
    except OSError as e:
        box.abort()
        raise OutputFailed(f"{target}: cannot write: {e.strerror}") from None
    except BaseException:
        box.abort()
        raise
    if not box.commit(replace=force):
        raise OutputFailed(f"{target}: appeared while packing; use --force to overwrite it")
    return digest.size, digest.hexdigest()


def _write_stream(out: BinaryIO, members, compression, gzip, checksum, progress) -> tuple[int, str]:
    try:
        digest = _write_archive(out, members, compression, gzip, checksum, progress)
    except BrokenPipeError:
        raise OutputFailed("output closed before the box was complete (broken pipe)") from None
    except OSError as e:
        raise OutputFailed(f"cannot write the box to the output stream: {e.strerror}") from None
    return digest.size, digest.hexdigest()


def write_text_atomically(path: Path, text: str, what: str, force: bool = True) -> None:
    """A small file (checksums), whole or not at all; without force, a file that is there (or appeared
    meanwhile) is never replaced."""
    if not files.write_atomically(path, text.encode(), f"the {what}", replace=force):
        raise OutputFailed(f"{path}: already exists; use --force to overwrite it")
