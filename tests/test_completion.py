"""Shell completion and the man page, generated from the same parser as --help, so they cannot fall behind it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, run_boxpack

from boxpack.providers import PROVIDERS


def complete_bash(script: Path, *words: str) -> list[str]:
    """What bash offers for the last of words, through the generated completion function."""
    line = " ".join(("boxpack", *words))
    code = (f"source {script}; COMP_WORDS=(boxpack {' '.join(repr(w) for w in words)}); COMP_CWORD={len(words)}; "
            f"COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}; _shtab_boxpack; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    return subprocess.run(["bash", "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()


def test_bash_completion_offers_options_choices_subcommands_and_files(tmp_path: Path) -> None:
    script = tmp_path / "boxpack.bash"
    script.write_bytes(run_boxpack("--print-completion", "bash").stdout)
    assert complete_bash(script, "--prov") == ["--provider"]
    assert sorted(complete_bash(script, "disk.img", "--provider", "")) == sorted(PROVIDERS)
    assert complete_bash(script, "ver") == ["verify"]
    assert "pyproject.toml" in complete_bash(script, "pypro")
    assert "--mkosi" in complete_bash(script, "--mk")


def test_zsh_completion_is_generated() -> None:
    script = run_boxpack("--print-completion", "zsh").stdout.decode()
    assert script.startswith("#compdef boxpack") and "--vhdx-block-size" in script
    if shutil.which("zsh"):
        subprocess.run(["zsh", "-n"], input=script, text=True, check=True)


def test_man_page_is_generated_from_the_parser() -> None:
    page = run_boxpack("--print-man").stdout.decode()
    assert page.startswith(".TH BOXPACK")
    assert "\n.SH NAME\nboxpack \\- turn a disk image into Vagrant boxes" in page  # what whatis and apropos read
    for flag in ("mkosi", "provider", "checksum\\-file", "print\\-completion"):
        assert f"\\fB\\-\\-{flag}\\fR" in page, flag
    if shutil.which("groff"):
        proc = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z"], input=page, capture_output=True, text=True)
        assert proc.returncode == 0 and not proc.stderr, proc.stderr


@pytest.mark.parametrize("flag", ["--print-completion", "--print-man"])
def test_they_need_no_source_or_provider(flag: str) -> None:
    args = [flag, "bash"] if flag == "--print-completion" else [flag]
    assert run_boxpack(*args).returncode == 0
