"""The type hints hold: mypy, with the settings in pyproject.toml, finds nothing in boxpack/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_finds_no_errors() -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]


def test_the_package_says_it_is_typed() -> None:
    """PEP 561: without py.typed, the type checkers of boxpack's users ignore its hints."""
    assert (ROOT / "boxpack" / "py.typed").is_file()
