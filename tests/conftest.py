"""Shared helpers: run boxpack as users do, and read its output with real tools."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fixtures"))

import make_disk  # noqa: E402

MIB = 1024 * 1024
GIB = 1024 * MIB


def run_boxpack(*args: str | os.PathLike, env: dict | None = None, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """boxpack as a subprocess, the way a user or an mkosi script runs it."""
    full_env = {**os.environ, **(env or {})}
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    proc = subprocess.run([sys.executable, "-m", "boxpack", *map(str, args)], env=full_env, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"boxpack failed ({proc.returncode}): {proc.stderr.decode()}")
    return proc


def bsdtar_list(box: Path) -> list[str]:
    out = subprocess.run(["bsdtar", "-tf", str(box)], capture_output=True, check=True, text=True)
    return out.stdout.split()


def extract(box: Path, dest: Path) -> Path:
    """Extract with bsdtar exactly as Vagrant does."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["bsdtar", "--no-same-owner", "--no-same-permissions", "-x", "-m", "-S", "-C", str(dest), "-f", str(box)],
        check=True,
    )
    return dest


def qemu_check(image: Path, fmt: str) -> dict:
    """`qemu-img check` as JSON; fails the test on any corruption or leak."""
    proc = subprocess.run(
        ["qemu-img", "check", "-f", fmt, "--output=json", str(image)], capture_output=True, text=True
    )
    assert proc.returncode == 0, f"qemu-img check rc={proc.returncode}: {proc.stdout}{proc.stderr}"
    report = json.loads(proc.stdout)
    assert report.get("corruptions", 0) == 0 and report.get("leaks", 0) == 0, report
    return report


def qemu_compare(image: Path, fmt: str, raw: Path) -> None:
    proc = subprocess.run(
        ["qemu-img", "compare", "-f", fmt, "-F", "raw", str(image), str(raw)], capture_output=True, text=True
    )
    assert proc.returncode == 0, f"qemu-img compare: {proc.stdout}{proc.stderr}"


def qemu_info(image: Path) -> dict:
    out = subprocess.run(["qemu-img", "info", "--output=json", str(image)], capture_output=True, check=True, text=True)
    return json.loads(out.stdout)


def write_box(path: Path, members: Iterable[tuple[str, bytes]]) -> Path:
    """A hand-made box: a GNU tar of members (name, bytes), in the order given, gzipped."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buf.getvalue()))
    return path


def box_members(box: Path) -> dict[str, bytes]:
    """A box's regular files by name."""
    with tarfile.open(box) as t:
        return {m.name: t.extractfile(m).read() for m in t if m.isfile()}


def verify_codes(box: Path) -> set[str]:
    """The finding codes `boxpack verify --json` reports for a box."""
    return {f["code"] for f in json.loads(run_boxpack("verify", box, "--json", check=False).stdout)["findings"]}


@pytest.fixture
def sample_disk(tmp_path: Path) -> Path:
    return make_disk.make(tmp_path / "sample.img", data=4 * MIB)
