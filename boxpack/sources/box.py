"""A box as a source: its metadata.json, the disks it names, and its first disk read straight from the archive.

read_metadata() finds the root metadata.json; DiskList says which members are the box's disks, in the
order its consumer attaches them (what packing takes and what verify checks); box_source() makes the
box's disk a source for packing, so a libvirt box becomes a VirtualBox box and back without unpacking
anything. The disk is found, opened and scanned in one pass over the archive (archive.py reads it), and
the boxes made from it take their data from that pass (disk/pieces.py spools it compressed): one
decompression. Only a box written without gzip streams the disk a second time.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ..descriptors import DISK_LISTS, names_disks
from ..descriptors.libvirt import disk_files as metadata_disks
from ..descriptors.parallels_disk import is_marker
from ..disk.bytesource import Reopen, StreamBytes
from ..disk.source import ImageSource, Reader
from ..errors import BadInput
from ..formats import FORMATS, HEAD, RAW, detect
from ..metadata import parse_metadata, text
from ..report import Report
from .archive import CHUNK, damaged, member_file, members, open_tar

METADATA_LIMIT = 1024 * 1024  # a metadata.json or box.ovf larger than this is not one
MAX_DISKS = Report.MAX_DISKS  # disks in one box: VirtualBox's SATA controller takes 30, and no VM boots from more
DISK_SUFFIXES = tuple(sorted({s for f in (*FORMATS, RAW) for s in f.suffixes}))


def _first_repeat(names: list[str]) -> str | None:
    """The first name that comes a second time, in one pass (a 1 MiB metadata.json lists 50,000)."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def read_metadata(box: str | os.PathLike[str]) -> dict[str, Any]:
    """The box's root metadata.json, read by streaming the archive until it is found."""
    box = Path(box)
    with damaged(box), open_tar(box) as tar:
        for _, member in members(tar, box):
            if member.name.removeprefix("./") != "metadata.json":
                continue
            if not member.isfile() or member.size > METADATA_LIMIT:
                raise BadInput(f"{box}: metadata.json is not a regular file of sane size")
            return parse_metadata(member_file(tar, member).read(), str(box))
    raise BadInput(f"{box}: has no metadata.json at its root")


class DiskList:
    """Which members of a box are its disks, in the order its consumer attaches them, learnt as the archive
    is read: metadata.json's `disks` (vagrant-libvirt), else the first descriptor of each kind that names
    them (box.ovf, a .vmx, DiskDescriptor.xml, config.plist), else any member named like a disk image."""

    def __init__(self, box: object) -> None:
        self.box = box
        self.meta: dict[str, Any] = {}
        self.listed: dict[int, list[str]] = {}  # index in DISK_LISTS -> the disks the first such member names

    @staticmethod
    def lists(name: str) -> bool:
        """Whether the member is one that says which are the disks (note() reads it)."""
        return name == "metadata.json" or names_disks(name)

    def note(self, name: str, data: bytes) -> None:
        """metadata.json, or a descriptor: remember the disks it names."""
        if name == "metadata.json":
            self.meta = parse_metadata(data, str(self.box))
            return
        for i, (matches, disk_files) in enumerate(DISK_LISTS):
            if matches(name) and i not in self.listed:
                self.listed[i] = disk_files(name, data)

    def wanted(self) -> list[str] | None:
        """The disks in order, when the box says so far; else None. A list naming one disk twice, or more
        than MAX_DISKS, is refused before any disk is opened."""
        wanted = metadata_disks(self.meta) or next((d for _, d in sorted(self.listed.items()) if d), None)
        if wanted:
            twice = _first_repeat(wanted)
            if twice is not None:  # handle_box_image.rb: BoxFormatDuplicateVolume
                raise BadInput(f"{self.box}: names the disk {twice!r} twice; vagrant-libvirt refuses duplicate volumes")
            if len(wanted) > MAX_DISKS:
                raise BadInput(f"{self.box}: names {len(wanted)} disks; a VM takes at most {MAX_DISKS}")
        return wanted

    def is_disk(self, name: str) -> bool:
        """Whether the member is one of the box's disks, by what has been read so far."""
        wanted = self.wanted()
        return name in wanted if wanted else name.lower().endswith(DISK_SUFFIXES) and not is_marker(name)


class _BoxPass:
    """One pass over a box: the members before the disk, the disk as a reader, then the rest."""

    def __init__(self, box: Path) -> None:
        self.box = box
        self.disks = DiskList(box)
        self.tar = open_tar(box)

    def _note(self, m: tarfile.TarInfo, name: str) -> None:
        if m.size <= METADATA_LIMIT:
            self.disks.note(name, member_file(self.tar, m).read())

    def find_disk(self) -> tuple[int, tarfile.TarInfo]:
        """(ordinal, member) of the first disk; the members before it are read on the way."""
        for ordinal, m in members(self.tar, self.box):
            name = m.name.removeprefix("./")
            if not m.isfile():
                continue
            if DiskList.lists(name):
                self._note(m, name)
                continue
            if self.disks.is_disk(name):
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
            if i > ordinal and m.isfile() and DiskList.lists(name):
                self._note(m, name)
        wanted = self.disks.wanted() or [disk]
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
    with damaged(box), open_tar(box) as tar:
        for _, m in members(tar, box):
            name = m.name.removeprefix("./")
            if name in names and m.isfile() and m.size <= METADATA_LIMIT:
                found[name] = member_file(tar, m).read()
                if len(found) == len(names):
                    break
    return found


def copy_disk(box: Path, dest: Path) -> str:
    """Copy the box's first disk member to dest as it is, for a reader that reads its format itself
    (boxpack test boots a Parallels image through QEMU's own driver); returns the member's name."""
    first = _BoxPass(box)
    try:
        with damaged(box):
            _, member = first.find_disk()
            with open(dest, "wb") as f:
                shutil.copyfileobj(member_file(first.tar, member), f, CHUNK)
        return member.name.removeprefix("./")
    finally:
        first.tar.close()


def box_source(box: Path, threads: int) -> ImageSource:
    """The disk inside a box as a source; the first scan continues the pass that found it."""
    first = _BoxPass(box)
    try:
        with damaged(box):
            ordinal, member = first.find_disk()
            name = member.name.removeprefix("./")
            reader = _reader(_member_bytes(box, name, ordinal, member, first.tar), name, box)
    except BaseException:
        first.tar.close()
        raise

    source = ImageSource(box, reader, _guarded(lambda: _member_reader(box, name, ordinal), box), threads)
    source.format = f"{reader.format} in a box"

    def after_first_scan() -> None:
        with damaged(box):
            others = first.finish(ordinal, name)
        source.architecture = text(first.disks.meta, "architecture")
        source.format = f"{reader.format} in a {first.disks.meta.get('provider', 'unknown')} box"
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
        with damaged(box):
            for i, m in members(tar, box):
                if (i == ordinal) if ordinal is not None else (m.isfile() and m.name.removeprefix("./") == name):
                    return i, m, tar
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
        with damaged(box):
            return open_reader()

    return guarded
