"""Reading box files (tar, tar.gz, ...): streamed, never extracted to disk.

compression() tells a box archive by its first bytes; read_metadata() finds
the root metadata.json; box_source() makes the box's disk a source for
packing, so a libvirt box becomes a VirtualBox box and back without unpacking
anything. The disk is found, opened and scanned in one pass over the archive,
and the boxes made from it take their data from that pass (sources/pieces.py
spools it compressed): one decompression. Only a box written without gzip
streams the disk a second time.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import shutil
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .. import accel
from ..descriptors import DISK_LISTS, names_disks
from ..descriptors.libvirt import disk_files as metadata_disks
from ..descriptors.parallels_disk import is_marker
from ..disk.bytesource import Reopen, StreamBytes
from ..disk.source import ImageSource, Reader
from ..errors import BadInput, InternalError
from ..formats import FORMATS, HEAD, RAW, detect
from ..metadata import json_object
from ..report import Report
from .zstd import zstd

METADATA_LIMIT = 1024 * 1024  # a metadata.json or box.ovf larger than this is not one
HEADER_LIMIT = 1024 * 1024  # a GNU long name or PAX header larger than this is an attack, not a name
MAX_MEMBERS = 10_000  # boxes hold a handful of files; tarfile keeps every member it has read
MAX_DISKS = Report.MAX_DISKS  # disks in one box: VirtualBox's SATA controller takes 30, and no VM boots from more
DISK_SUFFIXES = tuple(sorted({s for f in (*FORMATS, RAW) for s in f.suffixes}))
CHUNK = 1024 * 1024
ARCHIVE_ERRORS: tuple[type[BaseException], ...] = (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zstd.ZstdError, *accel.ERRORS)


class Bomb(BadInput):
    """A stream that inflates beyond its budget."""


class Budget:
    """Decompressed bytes, stopped once they pass limit(): a decompression bomb ends the read at once
    instead of taking minutes (a 10 MB zstd stream can hold 320 GiB of zeros)."""

    def __init__(self, inner: Any, limit: Callable[[], int], where: str, why: str) -> None:
        self.inner, self.limit, self.where, self.why = inner, limit, where, why
        self.total = 0

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.total += len(data)
        if self.total > self.limit():
            raise Bomb(f"{self.where}: {self.why}")
        return data

    def close(self) -> None:
        self.inner.close()


MAX_RATIO = 1000  # a qcow2 of zeros compresses about 1000:1 in a box; a box inflating more is a bomb
MIN_BUDGET = 1024**3


def box_budget(inner: Any, compressed: Callable[[], int], where: object) -> Budget:
    """The budget of a box archive: MAX_RATIO times its compressed bytes read so far, and at least MIN_BUDGET."""
    return Budget(inner, lambda: max(MIN_BUDGET, MAX_RATIO * compressed()), str(where),
                  f"inflates to more than {MAX_RATIO} times its size (a decompression bomb?)")


def compression(head: bytes) -> str | None:
    """The box archive's compression ("none" for a bare tar), or None when head is not a box archive."""
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[:3] == b"BZh":
        return "bzip2"
    # A zstd frame, or a skippable frame before one (magic 0x184D2A50-0x184D2A5F, RFC 8878 section 3.1.2;
    # pzstd writes one first), which the decoder passes over.
    if head[:4] == b"\x28\xb5\x2f\xfd" or (head[1:4] == b"\x2a\x4d\x18" and 0x50 <= head[0] <= 0x5F):
        return "zstd"
    if is_tar(head):
        return "none"
    return None


def is_tar(head: bytes) -> bool:
    """A tar header's magic (POSIX ustar and GNU): at byte 257 of the first block."""
    return head[257:262] == b"ustar"


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads a GNU long name or a PAX header whole into memory: refuse huge ones first."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE):
            if self.size > HEADER_LIMIT:
                raise tarfile.HeaderError(f"a {self.size}-byte extended header (long name or PAX record)")
        return super()._proc_member(tar)  # type: ignore[misc]  # tarfile's hook for extended headers, not in its stubs


class _EndGuard:
    """A stream that raises at a second read past its end: tarfile skips a member by reading
    its claimed size block by block, and would spin for ever on a header claiming a terabyte."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.ended = False

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        if not data and n != 0:
            if self.ended:
                raise EOFError("the archive ends inside a member (its size field claims more than there is)")
            self.ended = True
        return data

    def close(self) -> None:
        self.inner.close()


class _TarStream(tarfile.TarFile):
    """A forward-only tar reader that closes the stream it reads when it is closed."""

    source: Any = None

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.source is not None:
                self.source.close()


def read_tar(stream: Any) -> tarfile.TarFile:
    """A forward-only tar reader over a decompressed stream, safe on hostile headers; closing it closes stream."""
    guard = _EndGuard(stream)
    try:
        tar = _TarStream.open(fileobj=guard, mode="r|", tarinfo=_BoundedTarInfo)  # type: ignore[call-overload]  # read() is all "r|" calls
    except BaseException:
        stream.close()
        raise
    tar.source = guard
    return tar


def members(tar: tarfile.TarFile, where: object) -> Iterator[tuple[int, tarfile.TarInfo]]:
    """(ordinal, member), at most MAX_MEMBERS of them."""
    for ordinal, m in enumerate(tar):
        if ordinal >= MAX_MEMBERS:
            raise BadInput(f"{where}: holds more than {MAX_MEMBERS} files; not a box")
        yield ordinal, m


def member_file(tar: tarfile.TarFile, m: tarfile.TarInfo) -> IO[bytes]:
    """A regular file's bytes as a stream (the callers have tested isfile())."""
    f = tar.extractfile(m)
    if f is None:
        raise InternalError(f"internal error: {m.name} is not a regular file")
    return f


def decompressor(kind: str, raw: Any) -> Any:
    """A reader of the decompressed bytes of a box archive whose compression() is kind."""
    if kind == "gzip":
        if accel.igzip is not None:
            return accel.igzip.IGzipFile(fileobj=raw, mode="rb")
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "xz":
        return io.BufferedReader(_XzStreams(raw), CHUNK)
    if kind == "bzip2":
        return bz2.BZ2File(raw)
    if kind == "zstd":
        return zstd.ZstdFile(raw)
    return raw


class _XzStreams(io.RawIOBase):
    """An .xz file as its format has it (xz-file-format 1.0.4, section 2): streams one after another, with
    Stream Padding (null bytes, a multiple of four) between and after them, which lzma.LZMAFile refuses."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._decoder = lzma.LZMADecompressor(lzma.FORMAT_XZ)
        self._input = b""
        self._padding = 0
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        while not self._ended:
            if self._decoder.eof:
                self._input = self._decoder.unused_data + self._input
                if not self._next_stream():
                    break
            if self._decoder.needs_input and not self._input:
                self._input = self._raw.read(CHUNK)
                if not self._input:
                    raise EOFError("the xz stream is cut short")
            out = self._decoder.decompress(self._input, max_length=len(buf))
            self._input = b""
            if out:
                buf[: len(out)] = out
                return len(out)
        return 0

    def _next_stream(self) -> bool:
        """Past the padding to the next stream; False at the end of the file."""
        while True:
            stripped = self._input.lstrip(b"\0")
            self._padding += len(self._input) - len(stripped)
            self._input = stripped
            if self._input:
                break
            self._input = self._raw.read(CHUNK)
            if not self._input:
                if self._padding % 4:
                    raise lzma.LZMAError(f"{self._padding} bytes of stream padding, not a multiple of four")
                self._ended = True
                return False
        if self._padding % 4:
            raise lzma.LZMAError(f"{self._padding} bytes of stream padding, not a multiple of four")
        self._padding = 0
        self._decoder = lzma.LZMADecompressor(lzma.FORMAT_XZ)
        return True


def _first_repeat(names: list[str]) -> str | None:
    """The first name that comes a second time, in one pass (a 1 MiB metadata.json lists 50,000)."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def open_tar(box: Path) -> tarfile.TarFile:
    """The box file as a tar stream; gzip is inflated on another thread with ISA-L where it is available."""
    try:
        return _open_tar(box)
    except ARCHIVE_ERRORS as e:
        raise BadInput(f"{box}: not a readable box archive ({e})") from None


def _open_tar(box: Path) -> tarfile.TarFile:
    f = open(box, "rb")
    try:
        kind = compression(f.read(512))
        f.seek(0)
        if kind is None:
            raise BadInput(f"{box}: not a box archive")
        if kind == "gzip" and accel.igzip_threaded is not None:
            f.close()
            size = os.path.getsize(box)
            return read_tar(box_budget(accel.igzip_threaded.open(box, "rb", threads=1), lambda: size, box))
        return read_tar(box_budget(_Closing(decompressor(kind, f), f), f.tell, box))
    except BaseException:
        f.close()
        raise


class _Closing:
    """A decompressing reader that also closes the file under it."""

    def __init__(self, inner: Any, file: Any) -> None:
        self.inner, self.file = inner, file

    def read(self, n: int = -1) -> bytes:
        return self.inner.read(n)

    def close(self) -> None:
        self.inner.close()
        self.file.close()
def parse_metadata(data: bytes, where: str) -> dict[str, Any]:
    try:
        return json_object(data)
    except ValueError as e:
        raise BadInput(f"{where}: metadata.json is {e}") from None


def text(meta: Any, key: str) -> str | None:
    """metadata.json's key when it is a non-empty string (what provider and architecture must be), else None:
    a hostile box may give a list or an object."""
    value = meta.get(key) if isinstance(meta, dict) else None
    return value if isinstance(value, str) and value else None


def read_metadata(box: str | os.PathLike[str]) -> dict[str, Any]:
    """The box's root metadata.json, read by streaming the archive until it is found."""
    box = Path(box)
    try:
        with open_tar(box) as tar:
            for _, member in members(tar, box):
                if member.name.removeprefix("./") != "metadata.json":
                    continue
                if not member.isfile() or member.size > METADATA_LIMIT:
                    raise BadInput(f"{box}: metadata.json is not a regular file of sane size")
                return parse_metadata(member_file(tar, member).read(), str(box))
    except FileNotFoundError:
        raise BadInput(f"{box}: no such file") from None
    except IsADirectoryError:
        raise BadInput(f"{box}: is a directory, expected a box file") from None
    except ARCHIVE_ERRORS as e:
        raise BadInput(f"{box}: not a readable box archive ({e})") from None
    raise BadInput(f"{box}: has no metadata.json at its root")


class _BoxPass:
    """One pass over a box: the members before the disk, the disk as a reader, then the rest."""

    def __init__(self, box: Path) -> None:
        self.box = box
        self.meta: dict[str, Any] = {}
        self.listed: dict[int, list[str]] = {}  # index in DISK_LISTS -> the disks the first such member names
        self.tar = open_tar(box)

    def _note(self, m: tarfile.TarInfo, name: str) -> None:
        """Remember metadata.json and the first descriptor of each kind (box.ovf, a .vmx), which say which
        members are the disks."""
        if m.size > METADATA_LIMIT:
            return
        if name == "metadata.json":
            self.meta = parse_metadata(member_file(self.tar, m).read(), str(self.box))
            return
        for i, (matches, disk_files) in enumerate(DISK_LISTS):
            if matches(name) and i not in self.listed:
                self.listed[i] = disk_files(name, member_file(self.tar, m).read())

    def disks(self) -> list[str] | None:
        """The disks in the order the box's consumer attaches them, when the box says; else None. A list
        naming one disk twice, or more than MAX_DISKS, is refused before any disk is opened."""
        wanted = metadata_disks(self.meta) or next((d for _, d in sorted(self.listed.items()) if d), None)
        if wanted:
            twice = _first_repeat(wanted)
            if twice is not None:  # handle_box_image.rb: BoxFormatDuplicateVolume
                raise BadInput(f"{self.box}: names the disk {twice!r} twice; vagrant-libvirt refuses duplicate volumes")
            if len(wanted) > MAX_DISKS:
                raise BadInput(f"{self.box}: names {len(wanted)} disks; a VM takes at most {MAX_DISKS}")
        return wanted

    def find_disk(self) -> tuple[int, tarfile.TarInfo]:
        """(ordinal, member) of the first disk; the members before it are read on the way."""
        for ordinal, m in members(self.tar, self.box):
            name = m.name.removeprefix("./")
            if not m.isfile():
                continue
            if name == "metadata.json" or names_disks(name):
                self._note(m, name)
                continue
            wanted = self.disks()
            if (wanted and name == wanted[0]) or (wanted is None and name.lower().endswith(DISK_SUFFIXES) and not is_marker(name)):
                return ordinal, m
        raise BadInput(f"{self.box}: holds no disk image ({', '.join(DISK_SUFFIXES)})")

    def finish(self, ordinal: int, disk: str) -> list[str]:
        """Read the members after the disk (at ordinal); the disk taken must be the first the box names.
        Returns the box's other disks, in order."""
        names = {disk: 1}
        for i, m in members(self.tar, self.box):
            name = m.name.removeprefix("./")
            if i > ordinal:
                names[name] = names.get(name, 0) + 1
            if i > ordinal and m.isfile() and (name == "metadata.json" or names_disks(name)):
                self._note(m, name)
        wanted = self.disks() or [disk]
        if wanted[0] != disk:
            raise BadInput(f"{self.box}: its disk is {wanted[0]!r}, which comes after {disk!r} in the archive; repack the box")
        for name in wanted:
            if names.get(name, 0) > 1:  # tar extraction (Vagrant's) keeps the last, this pass read the first
                raise BadInput(f"{self.box}: holds two members named {name!r}; which is the disk depends on the tool, "
                                   "so the box is refused")
            if name not in names:
                raise BadInput(f"{self.box}: names the disk {name!r}, which it does not hold")
        return wanted[1:]


def _reader(data: StreamBytes, member: str, box: Path) -> Reader:
    """The reader for a disk member, chosen by its first bytes (and refused by name for formats boxpack cannot read)."""
    where = f"{box}:{member}"
    if data.size <= 0:
        raise BadInput(f"{where}: the disk member is empty")
    fmt = detect(data.pread(0, HEAD))
    if fmt is RAW:
        fmt = next((f for f in FORMATS if f.reader is None and member.lower().endswith(f.suffixes)), RAW)
    if fmt.reader is None:
        raise BadInput(f"{where}: is a {fmt.name} disk, which boxpack cannot read yet; {fmt.refusal}")
    return fmt.reader(data, where)


def read_members(box: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """The small members of those names that the box holds, in one pass that stops once all are read."""
    found: dict[str, bytes] = {}
    try:
        with open_tar(box) as tar:
            for _, m in members(tar, box):
                name = m.name.removeprefix("./")
                if name in names and m.isfile() and m.size <= METADATA_LIMIT:
                    found[name] = member_file(tar, m).read()
                    if len(found) == len(names):
                        break
    except ARCHIVE_ERRORS as e:
        raise BadInput(f"{box}: not a readable box archive ({e})") from None
    return found


def copy_disk(box: Path, dest: Path) -> str:
    """Copy the box's first disk member to dest as it is, for a reader that reads its format itself
    (boxpack test boots a Parallels image through QEMU's own driver); returns the member's name."""
    first = _BoxPass(box)
    try:
        _, member = first.find_disk()
        with open(dest, "wb") as f:
            shutil.copyfileobj(member_file(first.tar, member), f, CHUNK)
        return member.name.removeprefix("./")
    except ARCHIVE_ERRORS as e:
        raise BadInput(f"{box}: not a readable box archive ({e})") from None
    finally:
        first.tar.close()


def box_source(box: Path, threads: int) -> ImageSource:
    """The disk inside a box as a source; the first scan continues the pass that found it."""
    first = _BoxPass(box)
    try:
        ordinal, member = first.find_disk()
        name = member.name.removeprefix("./")
        reader = _reader(_member_bytes(box, name, ordinal, member, first.tar), name, box)
    except ARCHIVE_ERRORS as e:
        first.tar.close()
        raise BadInput(f"{box}: not a readable box archive ({e})") from None
    except BaseException:
        first.tar.close()
        raise

    source = ImageSource(box, reader, _guarded(lambda: _member_reader(box, name, ordinal), box), threads)
    source.format = f"{reader.format} in a box"

    def after_first_scan() -> None:
        try:
            others = first.finish(ordinal, name)
        except ARCHIVE_ERRORS as e:
            raise BadInput(f"{box}: not a readable box archive ({e})") from None
        source.architecture = text(first.meta, "architecture")
        source.format = f"{reader.format} in a {first.meta.get('provider', 'unknown')} box"
        source.others = lambda: [_member_source(box, other, threads) for other in others]

    source.after_first_scan = after_first_scan
    return source


def _member_reader(box: Path, name: str, ordinal: int | None = None) -> Reader:
    """A reader of the disk member `name` (at `ordinal` when known), streamed from a new pass over the box."""
    ordinal, m, tar = _pass_to(box, name, ordinal)
    try:
        return _reader(_member_bytes(box, name, ordinal, m, tar), name, box)
    except BaseException:
        tar.close()
        raise


def _member_bytes(box: Path, name: str, ordinal: int, m: tarfile.TarInfo, tar: tarfile.TarFile) -> StreamBytes:
    """The member's bytes from this pass, and from a new pass over the box when its reader must go back."""
    return StreamBytes(member_file(tar, m), m.size, f"{box}:{name}", owner=tar, reopen=reopener(box, name, ordinal, m.size))


def reopener(box: Path, name: str, ordinal: int, size: int) -> Reopen:
    """How StreamBytes reads the member (the ordinal-th, of size bytes) again: a new pass over the box."""

    def reopen() -> tuple[IO[bytes], tarfile.TarFile]:
        _, m, tar = _pass_to(box, name, ordinal)
        if m.size != size:
            tar.close()
            raise BadInput(f"{box}: {name} changed between two reads")
        return member_file(tar, m), tar

    return reopen


def _pass_to(box: Path, name: str, ordinal: int | None) -> tuple[int, tarfile.TarInfo, tarfile.TarFile]:
    """A new pass over the box, up to the member `name` (at `ordinal` when known): (ordinal, member, archive)."""
    tar = open_tar(box)
    try:
        for i, m in members(tar, box):
            if (i == ordinal) if ordinal is not None else (m.isfile() and m.name.removeprefix("./") == name):
                return i, m, tar
    except ARCHIVE_ERRORS as e:
        tar.close()
        raise BadInput(f"{box}: not a readable box archive ({e})") from None
    except BaseException:
        tar.close()
        raise
    tar.close()
    raise BadInput(f"{box}: {name} vanished between two reads")


def _member_source(box: Path, name: str, threads: int) -> ImageSource:
    """Another disk of a box, as a source of its own: each scan streams the box up to it."""
    reopen = _guarded(lambda: _member_reader(box, name), box)
    reader = reopen()
    source = ImageSource(box, reader, reopen, threads)
    source.format = f"{reader.format} in a box"
    return source


def _guarded(open_reader: Callable[[], Reader], box: Path) -> Callable[[], Reader]:
    def guarded() -> Reader:
        try:
            return open_reader()
        except ARCHIVE_ERRORS as e:
            raise BadInput(f"{box}: not a readable box archive ({e})") from None

    return guarded
