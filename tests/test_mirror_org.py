"""A whole HCP organisation moved in one command (issue 51): `boxpack mirror --org`, against a stand-in for HCP that
answers the shapes its API documents (hcp_org.py): 30 boxes and 300 provider entries, private boxes behind a token,
descriptions, unreleased and revoked versions, aliases, entries without a checksum, downloads that redirect to
storage on another host name, 429s and transfers cut midway. Then both Vagrants add a public and a private box by
name through boxpack serve over the mirrored store, and a box is fetched by its hard-coded HCP path."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import make_disk
import pytest
from conftest import Target, Vagrant, run_boxpack, writing
from hcp_org import Entry, Org, OrgBox
from served import Served, get

from boxpack.metadata import validate

TOKEN = "hcp-organisation-token"
PROVIDERS = ("libvirt", "virtualbox", "vmware_desktop", "hyperv", "qemu")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Four small boxes (libvirt's is what Vagrant adds); every entry of the organisation is one of them."""
    d = tmp_path_factory.mktemp("org-files")
    found = {}
    for i in range(4):
        disk = make_disk.make(d / f"{i}.img", size=64 * 2**20, data=(128 + 64 * i) * 1024)
        run_boxpack(disk, "--provider", "libvirt", "--architecture", "amd64", "-o", d / f"{i}.box")
        found[f"{i}.box"] = d / f"{i}.box"
    return found


def _organisation(files: dict[str, Path]) -> list[OrgBox]:
    boxes = []
    for i in range(30):
        entries = [Entry(v, p, "amd64", f"{(i + j) % 4}.box") for v in ("1.0.0", "1.1.0") for j, p in enumerate(PROVIDERS)]
        boxes.append(OrgBox(f"box{i:02d}", private=i % 3 == 1, entries=entries, short=f"box {i}",
                            description=f"Box number **{i}**"))
    boxes[0].entries += [Entry("1.2.0", "libvirt", "amd64", "0.box")]
    boxes[0].statuses["1.2.0"] = "unreleased"
    boxes[1].statuses["1.0.0"] = "revoked"
    for e in boxes[2].entries:
        e.checksum = False
    for e in boxes[3].entries:  # an alias of box04: its entries name box04's files
        e.alias = ("box04", e.version, e.provider, e.arch)
        e.file = next(f.file for f in boxes[4].entries if (f.version, f.provider) == (e.version, e.provider))
    return boxes


@pytest.fixture
def org(files: dict[str, Path]):
    stand_in = Org("acme", _organisation(files), files, TOKEN)
    stand_in.cut = {"1.box", "3.box"}
    yield stand_in
    stand_in.close()


def _mirror(target: Target, org: Org, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = run_boxpack("mirror", "--org", "acme", "--server", org.url, "--to", target.to, "--base-url", target.base_url,
                       "--json", *extra, env={**target.env, "VAGRANT_CLOUD_TOKEN": TOKEN}, check=False)
    if check:
        assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return proc


def _vagrant(request, version: str) -> Vagrant:
    """The conftest's `vagrant` fixture's Vagrant of this version (the organisation is mirrored once for both)."""
    import conftest

    if version == "2.3.4":
        return conftest.Vagrant("2.3.4", ["vagrant"]) if shutil.which("vagrant") else conftest.unavailable(
            "Vagrant 2.3.4", "not installed (apt-get install vagrant)")
    source = request.getfixturevalue("_vagrant_source")
    if isinstance(source, str):
        conftest.unavailable("Vagrant 2.4.9", source)
    return conftest.Vagrant("2.4.9", ["ruby", "-I", str(source / "vagrant_cloud-3.1.3" / "lib"), "-I",
                                      str(source / "vagrant-2.4.9" / "lib"), str(source / "vagrant-2.4.9" / "bin" / "vagrant")])


def test_an_organisation_moves_in_one_command_with_everything_hcp_held(web: Target, org: Org, tmp_path: Path,
                                                                       request) -> None:
    proc = _mirror(web, org)
    report = json.loads(proc.stdout)
    validate(report, "mirror-result.schema.json", "boxpack mirror --json")
    said = proc.stderr.decode()
    assert len(report["boxes"]) == 301 and all(b["action"] == "copied" for b in report["boxes"]), said[-2000:]
    assert f'config.vm.box_server_url = "{web.base_url}"' in said and "30 box(es)" in said
    assert {n for n, why in report["private"].items()} == {f"acme/box{i:02d}" for i in range(30) if i % 3 == 1}
    for h in org.storage_headers:
        assert "Authorization" not in h, h  # the token went to HCP's host only, never to its storage
    catalogs = {p.parent.name: p.read_text() for p in web.root.glob("acme/*/catalog.json")}
    assert len(catalogs) == 30 and not any(org.url in c or "localhost" in c for c in catalogs.values())
    alias = next(p for p in json.loads(catalogs["box03"])["versions"][0]["providers"] if p["name"] == "libvirt")
    assert alias["url"] == f"{web.base_url}/acme/box04/1.0.0/libvirt/amd64/vagrant.box"  # box04's copy, named
    assert not (web.root / "acme/box03/1.0.0").exists()  # copied once
    served = Served(web, tmp_path)
    try:
        api = lambda path: json.loads(get(f"{served.url}/api/v2{path}", _read_token(web))[2])  # noqa: E731
        box0 = api("/box/acme/box00")
        assert box0["short_description"] == "box 0" and box0["description"] == "Box number **0**"
        assert [v["status"] for v in box0["versions"]] == ["unreleased", "active", "active"]
        assert [v["status"] for v in api("/box/acme/box01")["versions"]] == ["active", "revoked"]
        assert get(f"{served.url}/acme/box01")[0] == 404  # private, as on HCP
        for vagrant in (_vagrant(request, "2.3.4"), _vagrant(request, "2.4.9")):
            home = tmp_path / f"vagrant-{vagrant.version}.d"
            for name, env in (("acme/box00", {}), ("acme/box01", {"VAGRANT_CLOUD_TOKEN": _read_token(web)})):
                added = vagrant(home, "box", "add", name, "--provider", "libvirt", server=served.url, env=env)
                assert added.returncode == 0, added.stdout + added.stderr
        legacy = get(f"{served.url}/acme/boxes/box00/versions/1.1.0/providers/libvirt/amd64/vagrant.box")
        assert legacy[0] == 200 and legacy[2] == _entry_bytes(org, 0, "1.1.0")  # a hard-coded HCP path, host changed
        assert get(f"{served.url}/acme/boxes/box00/versions/1.1.0/providers/libvirt.box")[2] == legacy[2]
    finally:
        served.stop()


def _entry_bytes(org: Org, box: int, version: str) -> bytes:
    entry = next(e for e in org.boxes[f"box{box:02d}"].entries if (e.version, e.provider) == (version, "libvirt"))
    return org.files[entry.file].read_bytes()


def _read_token(web: Target) -> str:
    tokens = web.root / ".read-token"
    if not tokens.exists():
        made = run_boxpack("serve", "token", "create", "acme", "--read", "--store", web.to)
        tokens.write_text(made.stdout.decode().strip())
    return tokens.read_text()


def test_a_dry_run_lists_the_organisation_and_copies_nothing(web: Target, org: Org) -> None:
    proc = run_boxpack("mirror", "--org", "acme", "--server", org.url, "--to", web.to, "--base-url", web.base_url,
                       "--dry-run", env={"VAGRANT_CLOUD_TOKEN": TOKEN})
    listing = proc.stdout.decode()
    assert "acme/box29" in listing and "would copy 301 box(es)" in proc.stderr.decode() + listing
    assert not org.storage_gets and not list(web.root.glob("acme/*"))


@pytest.mark.slow
def test_a_killed_org_mirror_and_a_rerun_give_what_one_run_gives(web: Target, org: Org, tmp_path: Path) -> None:
    """SIGKILL while a box is being written, then a rerun: the result is an uninterrupted run's, and the rerun
    downloads only what was not complete."""
    env = {**web.env, "VAGRANT_CLOUD_TOKEN": TOKEN}
    args = [sys.executable, "-m", "boxpack", "mirror", "--org", "acme", "--server", org.url, "--to", web.to,
            "--base-url", web.base_url, "--jobs", "1"]
    proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = 0
    while proc.poll() is None:  # the tenth box being written
        if writing(proc.pid, web.root):
            seen += 1
            if seen > 10:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = len(org.storage_gets)
    _mirror(web, org)
    assert len(org.storage_gets) - before < 301 - 5, (before, len(org.storage_gets))  # not everything again
    once = tmp_path / "once"
    once.mkdir()
    fresh = Target("nginx", str(once), web.base_url, {}, web.server, root=once)
    _mirror(fresh, org)
    for catalog in web.root.glob("acme/*/catalog.json"):
        assert catalog.read_text() == (once / catalog.relative_to(web.root)).read_text()
