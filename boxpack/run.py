"""One run of `boxpack SOURCE...`, for a library caller as for the command: pack, then the steps after it.

The steps: record the boxes in a catalog file (--catalog), or publish them instead of writing files
(--publish: each box streamed into its upload, then the catalog there); then read each box file back as
`boxpack verify` does (--verify) and boot it as `boxpack test` does (--test). Every option of every step
is checked before any disk is read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from . import catalog
from .errors import BadOption
from .inspect.boottest import TestOptions, TestResult
from .packing import BoxResult, PackOptions, pack
from .publishing.publish import PublishOptions, PublishResult, pack_and_publish
from .report import Report


@dataclass
class CatalogEntry:
    """Where and as what the boxes are recorded: a catalog file, the entry's name and version, and the address
    the box files are served from (each box's URL is it + the box's file name)."""

    path: str | os.PathLike[str]
    name: str
    version: str
    base_url: str
    default_architecture: bool = False
    description: str | None = None
    allow_relative: bool = False


@dataclass
class Run:
    sources: Sequence[str | os.PathLike[str]]
    options: PackOptions = field(default_factory=PackOptions)
    catalog: CatalogEntry | None = None
    publish: PublishOptions | None = None  # the boxes go there instead of to files
    verify: bool = False
    test: bool = False

    def check(self) -> None:
        """The steps' options, before any disk is read."""
        if self.publish:
            clash = {"-o": self.options.output, "--catalog": self.catalog, "--checksum-file": self.options.checksum_file,
                     "--verify": self.verify, "--test": self.test}
            for flag, value in clash.items():
                if value:
                    raise BadOption(f"{flag} is for box files; with --publish the boxes go straight to {self.publish.target} "
                                    "(its catalog and checksum files included)")
        if self.catalog:
            c = self.catalog
            if self.options.output == "-" or hasattr(self.options.output, "write"):
                raise BadOption("--catalog records box files; it cannot be used with -o -")
            catalog.check_entry(c.name, c.version, box_url(c.base_url, "x.box"), c.allow_relative)
            catalog.load(c.path)  # a broken catalog is reported before the disk is packed


@dataclass
class RunResult:
    boxes: list[BoxResult]
    published: PublishResult | None = None
    reports: list[Report] = field(default_factory=list)  # verify's, one per box file
    tests: list[TestResult] = field(default_factory=list)  # boxpack test's, one per box file

    @property
    def exit_code(self) -> int:
        """1 when verify found errors, else what the first failed boot test gives, else 0."""
        if any(r.exit_code for r in self.reports):
            return 1
        return next((t.exit_code for t in self.tests if t.exit_code), 0)


def box_url(base: str, file_name: str) -> str:
    """base + the box's file name, percent-encoded: a '#' or a space in a file name must not end the URL."""
    return (base if base.endswith("/") else base + "/") + quote(file_name)


def run(r: Run, progress=None, on_box: Callable[[BoxResult], None] | None = None,
        say: Callable[[str], None] | None = None) -> RunResult:
    """Pack, then each step asked for. on_box is called with each box as soon as it is complete; say with what
    a boot test is doing. Raises BoxpackError."""
    r.check()
    if r.publish:
        boxes, published = pack_and_publish(r.sources, r.options, r.publish, progress, on_box=on_box)
        return RunResult(boxes, published)
    result = RunResult(pack(r.sources, r.options, progress, on_box=on_box))
    files = [b for b in result.boxes if b.path is not None]
    if r.catalog:
        for b in files:
            _record(r.catalog, b, r.options.force)
    if r.verify:
        from .inspect.verify import examine

        result.reports = [examine(str(b.path), checksum=f"{b.checksum_type}:{b.checksum}") for b in files]
    if r.test:
        from .inspect import boottest

        result.tests = [boottest.test(str(b.path), TestOptions(), say) for b in files]
    return result


def _record(c: CatalogEntry, b: BoxResult, force: bool) -> None:
    """One box file into the catalog, with what packing found it to be."""
    path = b.path or Path("-")  # run() records box files only
    catalog.add_box(c.path, path, name=c.name, version=c.version, url=box_url(c.base_url, path.name),
                    provider=b.provider, architecture=b.architecture, checksum=b.checksum, checksum_type=b.checksum_type,
                    default_architecture=c.default_architecture, description=c.description, force=force,
                    allow_relative=c.allow_relative)
