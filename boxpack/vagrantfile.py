"""Vagrantfiles are Ruby that Vagrant loads when a box is used: checked with `ruby -c` where Ruby is installed."""

from __future__ import annotations

import shutil
import subprocess


def ruby_available() -> bool:
    return shutil.which("ruby") is not None


def ruby_syntax(source: bytes) -> str | None:
    """What `ruby -c` finds wrong with source, or None (also None when ruby is not installed)."""
    ruby = shutil.which("ruby")
    if ruby is None:
        return None
    try:
        source.decode("utf-8")
    except UnicodeDecodeError:
        return "is not UTF-8 text, so not a Vagrantfile"
    try:
        proc = subprocess.run([ruby, "-c"], input=source, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"could not be checked with ruby -c ({e})"
    if proc.returncode:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        return "is not valid Ruby (ruby -c: " + (lines[0][:200] if lines else f"exit {proc.returncode}") + ")"
    return None
