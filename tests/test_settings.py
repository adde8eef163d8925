"""One table of core options (boxpack/settings.py): the CLI, PackOptions' checks, the JSON schema for
library callers and the README's option table all follow it."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from conftest import ROOT, run_boxpack

import boxpack
from boxpack.metadata import validate
from boxpack.providers import options
from boxpack.settings import SETTINGS, schema


def test_the_schema_file_is_the_one_the_table_makes() -> None:
    """Regenerate with: python3 -c 'import json, boxpack.settings as s, boxpack.providers as p;
    print(json.dumps(s.schema(p.options()), indent=2))' > schemas/pack-options.schema.json"""
    committed = json.loads((ROOT / "schemas" / "pack-options.schema.json").read_text())
    assert committed == schema(options())


def test_every_option_field_has_one_row_and_a_json_document_makes_options() -> None:
    fields = {f.name for f in dataclasses.fields(boxpack.PackOptions)}
    assert {s.name for s in SETTINGS} == fields - {"name", "settings"}
    doc = {"providers": ["libvirt", "hyperv"], "output": "out/", "force": True, "compression": "gzip", "level": 9,
           "fast": False, "threads": 2, "vagrantfile": None, "include": [], "architecture": "arm64", "firmware": "efi",
           "checksum_type": "sha512", "checksum_file": True, "name": "debian", "settings": {"cpus": 4, "vhdx_block_size": 32}}
    doc = {k: v for k, v in doc.items() if v is not None}
    validate(doc, "pack-options.schema.json", "options")
    boxpack.PackOptions(**doc).check()
    with pytest.raises(boxpack.BoxpackError, match="invalid at level"):
        validate({**doc, "level": "9"}, "pack-options.schema.json", "options")
    with pytest.raises(boxpack.BoxpackError, match="invalid at settings"):
        validate({**doc, "settings": {"cpu": 4}}, "pack-options.schema.json", "options")


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_each_row_reaches_help_checks_and_readme(setting) -> None:
    """--help lists the flag, the README's option table has a row for it, and a value the row refuses is
    refused with exit 2 before any disk is read."""
    help_text = run_boxpack("--help").stdout.decode()
    assert re.search(rf"(^|\s){re.escape(setting.flag)}\b", help_text), setting.flag
    readme = (ROOT / "README.md").read_text()
    assert re.search(rf"^\| `({re.escape(setting.short or setting.flag)}|{re.escape(setting.flag)})[ `\\[]", readme, re.M), setting.flag
    bad = {"level": "13", "threads": "0", "architecture": "Not-An-Arch"}.get(setting.name)
    if bad is not None:
        proc = run_boxpack("/nonexistent.img", "--provider", "libvirt", setting.flag, bad, check=False)
        assert proc.returncode == 2 and proc.stderr.decode().count("\n") == 1, proc.stderr
