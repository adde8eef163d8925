"""inspect --json and verify --json keep one documented shape (schemas/report.schema.json) for every kind of
input: boxes of every provider, bare and compressed disks, a box with findings, and input that cannot be read."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import MIB, make_disk, run_boxpack, write_box

from boxpack.metadata import validate
from boxpack.providers import PROVIDERS


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("json")
    disk = make_disk.make(d / "d.raw", size=64 * MIB, data=2 * MIB)
    run_boxpack(disk, *(a for p in PROVIDERS for a in ("--provider", p)), "-o", f"{d}/boxes/")
    subprocess.run(["zstd", "-q", "-k", str(disk)], check=True)
    broken = write_box(d / "broken.box", [("metadata.json", b'{"provider": "libvirt", "virtual_size": "x"}'), ("box.img", b"x" * 512)])
    cut = d / "cut.box"
    cut.write_bytes((d / "boxes" / "d-libvirt.box").read_bytes()[:5000])
    return [*sorted((d / "boxes").iterdir()), disk, d / "d.raw.zst", broken, cut, d / "missing.box"]


@pytest.mark.first_case_quick
@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_reports_validate_against_their_schema(inputs: list[Path], command: str) -> None:
    codes, unreadable = set(), False
    for path in inputs:
        proc = run_boxpack(command, path, "--json", check=False)
        doc = json.loads(proc.stdout)
        validate(doc, "report.schema.json", f"boxpack {command} --json of {path.name}")
        if command == "verify":
            assert proc.returncode == doc["exit_code"]
        codes.add(doc["exit_code"])
        unreadable = unreadable or bool(doc["unreadable"])
    assert codes >= {0, 1} and unreadable  # clean, problems and unreadable all covered
