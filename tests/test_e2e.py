"""The end-to-end stages (bin/e2e, amd64 then arm64) through pytest: `python3 -m pytest -m e2e`. Needs root."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.e2e
def test_boxes_boot_under_vagrant_and_qemu() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bin" / "e2e")], capture_output=True, text=True, timeout=5400)
    print(proc.stdout[-6000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "e2e: PASS" in proc.stdout
