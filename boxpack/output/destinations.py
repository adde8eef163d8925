"""Where boxes go: pack() writes each box to a destination that opens one box, finishes it and aborts it,
whatever is behind it: files (placed whole, files.py), a stream (stdout, a pipe), or uploads
(publishing/publish.py). The files' rules are checked before any disk is read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

from .. import files, signatures
from ..errors import BadOption, BoxpackError, OutputFailed

Output = str | os.PathLike[str] | BinaryIO | None
Target = Path | BinaryIO


class Stream(Protocol):
    """What a box's bytes are written to: a file, a pipe, an upload."""

    def write(self, data: bytes | memoryview, /) -> object: ...

    def flush(self) -> None: ...


class Box(Protocol):
    """One box on its way: its archive is written to out; finish() makes it whole where it goes."""

    @property
    def out(self) -> Stream: ...

    def finish(self, size: int, checksum_type: str, digest: str) -> Path | None:
        """The box is complete (size bytes, its digest); returns the file it is, if it is one."""

    def abort(self) -> None:
        """The box will not be complete: nothing of it stays."""

    def failed(self, e: OSError) -> BoxpackError:
        """What a failed write to out means, in one line."""


class Destination(Protocol):
    spool_dir: Path | None  # where a run may keep temporary files beside the boxes (the same file system)

    def open(self, provider: str, architecture: str | None) -> Box: ...

    def done(self, boxes: Sequence[tuple[Path | None, str, str]]) -> None:
        """After the last box: (file or None, checksum type, digest) of each, for what follows them."""


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
    _beside_targets(paths, boxes, sources, force, "the checksum file", "choose another --checksum-file")


def _beside_targets(paths: Sequence[Path], boxes: Sequence[Target | None], sources: Sequence[Path], force: bool,
                    what: str, instead: str) -> None:
    """A file written beside the boxes (a checksum file, a signature) is never a source or a box, never an existing
    file without force."""
    taken = [p.resolve() for p in (*sources, *(b for b in boxes if isinstance(b, Path)))]
    for p in paths:
        kind = _node_kind(p)
        if p.resolve() in taken:
            raise BadOption(f"{p}: is a source or a box of this run; {instead}")
        if not p.parent.is_dir():
            raise OutputFailed(f"{p.parent}: no such directory for {what}")
        if kind == "dir":
            raise OutputFailed(f"{p}: is a directory")
        if kind is not None and not force:
            raise OutputFailed(f"{p}: already exists; use --force to overwrite it")


class _Signed:
    """A box file's stream whose bytes also go to the signature being made of them."""

    def __init__(self, out: Stream, signing: signatures.Signing) -> None:
        self.out, self.signing = out, signing

    def write(self, data: bytes | memoryview, /) -> None:
        self.out.write(data)
        self.signing.write(data)

    def flush(self) -> None:
        self.out.flush()


class _FileBox:
    def __init__(self, target: Path, force: bool, sign_key: str | os.PathLike[str] | None = None) -> None:
        self.target, self.force = target, force
        self.file = files.AtomicFile(target, "the box")
        self.signing = signatures.Signing(sign_key) if sign_key else None
        self.out: Stream = _Signed(self.file.file, self.signing) if self.signing else self.file.file

    def finish(self, size: int, checksum_type: str, digest: str) -> Path:
        signature = self.signing.finish() if self.signing else None  # made before the box is placed: no box unsigned
        if not self.file.commit(replace=self.force):
            raise OutputFailed(f"{self.target}: appeared while packing; use --force to overwrite it")
        sig = self.target.with_name(self.target.name + signatures.SUFFIX)
        if signature and not files.write_atomically(sig, signature, "the box's signature", replace=self.force):
            raise OutputFailed(f"{sig}: appeared while packing; use --force to overwrite it")
        return self.target

    def abort(self) -> None:
        if self.signing:
            self.signing.abort()
        self.file.abort()

    def failed(self, e: OSError) -> BoxpackError:
        return OutputFailed(f"{self.target}: cannot write: {e.strerror}")


class _StreamBox:
    """A box written as a stream: stdout, a pipe, a FIFO or /dev/null, never replaced."""

    def __init__(self, out: BinaryIO, close: bool = False) -> None:
        self.out, self.close = out, close

    def finish(self, size: int, checksum_type: str, digest: str) -> None:
        if self.close:
            self.out.close()

    def abort(self) -> None:
        if self.close:
            self.out.close()

    def failed(self, e: OSError) -> BoxpackError:
        if isinstance(e, BrokenPipeError):
            return OutputFailed("output closed before the box was complete (broken pipe)")
        return OutputFailed(f"cannot write the box to the output stream: {e.strerror}")


class Files:
    """Boxes as files (or one box on a stream), at the targets() checked when this is made, and their checksum
    files: beside each box (checksum_file True) or all lines in one file, written after the last box."""

    def __init__(self, providers: Sequence[str], stem: str, output: Output, sources: Sequence[Path], force: bool,
                 checksum_file: bool | str | os.PathLike[str] = False, checksum_type: str = "sha256",
                 sign_key: str | os.PathLike[str] | None = None) -> None:
        names = [f"{stem}-{p}.box" for p in providers]
        self.where = dict(zip(providers, targets(names, output, sources, force)))
        self.force, self.checksum_file, self.sign_key = force, checksum_file, sign_key
        boxes = list(self.where.values())
        if checksum_file:  # checked now, like the boxes: never a source, a box, or a file there without force
            checksum_targets(checksum_file, boxes, checksum_type, sources, force)
        if sign_key:  # the signatures' places, and a key that cannot sign, before any disk is read
            if any(isinstance(b, Path) and _node_kind(b) == "stream" for b in boxes):
                raise BadOption("a box written to a pipe or device has no file to put its signature beside")
            _beside_targets([b.with_name(b.name + signatures.SUFFIX) for b in boxes if isinstance(b, Path)], boxes, sources,
                            force, "the box's signature", "choose another -o")
            signatures.check_key(sign_key)
        self.spool_dir = next((t.parent for t in self.where.values() if isinstance(t, Path)), None)

    def open(self, provider: str, architecture: str | None) -> Box:
        target = self.where[provider]
        if not isinstance(target, Path):
            return _StreamBox(target)
        if _node_kind(target) == "stream":  # a FIFO or /dev/null: written as a pipe, never replaced
            try:
                return _StreamBox(open(target, "wb"), close=True)
            except OSError as e:
                raise OutputFailed(f"{target}: cannot write: {e.strerror}") from None
        return _FileBox(target, self.force, self.sign_key)

    def done(self, boxes: Sequence[tuple[Path | None, str, str]]) -> None:
        """sha256sum-format lines: `<hex>  <box file name>`, "-" for a box written to a stream."""
        if not self.checksum_file:
            return
        lines = [(path, kind, f"{digest}  {path.name if path else '-'}\n") for path, kind, digest in boxes]
        if self.checksum_file is True:
            written = {checksum_path(path, kind): line for path, kind, line in lines if path}
        else:
            written = {Path(self.checksum_file): "".join(line for _, _, line in lines)}
        for path, text in written.items():
            if not files.write_atomically(path, text.encode(), "the checksum file", replace=self.force):
                raise OutputFailed(f"{path}: already exists; use --force to overwrite it")
