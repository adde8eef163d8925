"""The Vagrant Cloud publish API of boxpack serve, driven by the real clients that call it: `vagrant cloud` of
Vagrant 2.3.4 (vagrant_cloud 3.0.5) and 2.4.9 (3.1.3), and Packer 1.6.6's vagrant-cloud post-processor, over
real stores; then Vagrant adds what they published by name."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import MIB, Target, Vagrant, make_disk, run_boxpack, unavailable
from served import Served, get, publish, settle, token

NAME = "acme/debian"


@pytest.fixture(scope="module")
def boxes(tmp_path_factory) -> dict[str, Path]:
    """Small boxes: (provider, architecture) -> file."""
    d = tmp_path_factory.mktemp("api-boxes")
    disk = make_disk.make(d / "debian.img", data=2 * MIB)
    found = {}
    for arch in ("amd64", "arm64"):
        out = d / arch
        out.mkdir()
        providers = ("libvirt", "virtualbox", "vmware_desktop", "qemu")
        run_boxpack(disk, *(a for p in providers for a in ("--provider", p)), "--architecture", arch, "-o", f"{out}/")
        found.update({(p, arch): out / f"debian-{p}.box" for p in providers})
    return found


def catalog(served: Served, tok: str | None = None) -> dict | None:
    """The catalog Vagrant reads for NAME, as the server answers it now (None: there is none)."""
    settle()
    status, _, data = get(f"{served.url}/{NAME}", tok)
    return json.loads(data) if status == 200 else None


def entries(doc: dict | None) -> set[tuple[str, str, str]]:
    return {(v["version"], p["name"], p["architecture"]) for v in (doc or {}).get("versions", []) for p in v["providers"]}


def cloud(vagrant: Vagrant, home: Path, served: Served, tok: str, *args: str) -> subprocess.CompletedProcess:
    return vagrant(home, "cloud", *args, server=served.url, env={"VAGRANT_CLOUD_TOKEN": tok})


def cloud_publish(vagrant: Vagrant, home: Path, served: Served, tok: str, box: Path, version: str, provider: str,
                  arch: str | None = None, *extra: str) -> subprocess.CompletedProcess:
    """`vagrant cloud publish ... --release --force --no-private`, with 2.4.9 the architecture (2.3.4 has no such
    option). A box created without --no-private is private, as on HCP."""
    archs = ["--architecture", arch] if arch and vagrant.version != "2.3.4" else []
    return cloud(vagrant, home, served, tok, "publish", NAME, version, provider, str(box), "--release", "--force",
                 "--no-private", *archs, *extra)


def said(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


@pytest.mark.first_case_quick("vagrant")
def test_vagrant_cloud_publish_releases_boxes_vagrant_adds_by_name_and_revoke_takes_them_back(
        target: Target, vagrant: Vagrant, boxes: dict, tmp_path: Path) -> None:
    """2.3.4 publishes a libvirt box; 2.4.9 an amd64 and an arm64 one into one version (amd64 the default); both
    then add it by name through the server, as from HCP, and a revoked version leaves the catalog."""
    served = Served(target, tmp_path)
    try:
        write = token(target, "acme", "--write")
        home = tmp_path / "vagrant.d"
        archs = ["amd64"] if vagrant.version == "2.3.4" else ["amd64", "arm64"]
        for arch in archs:
            extra = ["--default-architecture"] if vagrant.version != "2.3.4" and arch == "amd64" else []
            done = cloud_publish(vagrant, home, served, write, boxes["libvirt", arch], "1.0.0", "libvirt", arch,
                                 "--description", "Debian for acme", *extra)
            assert done.returncode == 0, said(done)
        doc = catalog(served)
        want = {("1.0.0", "libvirt", a if vagrant.version != "2.3.4" else "unknown") for a in archs}
        assert entries(doc) == want, doc
        for p in doc["versions"][0]["providers"]:
            box = boxes["libvirt", p["architecture"] if p["architecture"] != "unknown" else "amd64"]
            assert p["checksum"] == hashlib.sha256(box.read_bytes()).hexdigest() and p["url"].startswith(served.url)
        assert target.read(f"{NAME}/1.0.0/libvirt/{archs[-1] if vagrant.version != '2.3.4' else 'unknown'}/vagrant.box")
        shown = cloud(vagrant, home, served, write, "box", "show", NAME)
        assert shown.returncode == 0 and "1.0.0" in shown.stdout and "Debian for acme" in shown.stdout, said(shown)
        add = ["--architecture", "arm64"] if vagrant.version != "2.3.4" else []
        added = vagrant(home, "box", "add", NAME, "--provider", "libvirt", *add, server=served.url)
        assert added.returncode == 0, said(added)
        assert f"{NAME} (libvirt, 1.0.0" in vagrant(home, "box", "list").stdout
        revoked = cloud(vagrant, home, served, write, "version", "revoke", NAME, "1.0.0", "--force")
        assert revoked.returncode == 0, said(revoked)
        assert entries(catalog(served)) == set()
        again = vagrant(tmp_path / "again.d", "box", "add", NAME, "--provider", "libvirt", server=served.url)
        assert again.returncode != 0, said(again)
        deleted = cloud(vagrant, home, served, write, "version", "delete", NAME, "1.0.0", "--force")
        assert deleted.returncode == 0, said(deleted)
        assert not any(k.startswith(f"{NAME}/1.0.0/") for k in target.listing())  # its boxes and checksums gone
    finally:
        served.stop()


def test_auth_login_takes_a_boxpack_token_and_refuses_another(web: Target, vagrant: Vagrant, tmp_path: Path) -> None:
    served = Served(web, tmp_path, workers=1)
    try:
        write = token(web, "acme", "--write")
        home = tmp_path / "vagrant.d"
        ok = vagrant(home, "cloud", "auth", "login", "--token", write, server=served.url)
        assert ok.returncode == 0 and "You are already logged in" in ok.stdout, said(ok)  # checked with the server
        who = vagrant(home, "cloud", "auth", "whoami", server=served.url)
        assert who.returncode == 0 and "Currently logged in as acme" in who.stdout, said(who)
        bad = vagrant(tmp_path / "bad.d", "cloud", "auth", "login", "--token", "boxpack_0000000000000000_" + "0" * 64,
                      server=served.url)
        assert bad.returncode != 0 and "the token is not valid" in said(bad), said(bad)
    finally:
        served.stop()


@pytest.mark.first_case_quick("vagrant")
def test_wrong_checksum_other_provider_and_read_token_are_refused_in_the_clients_words(
        target: Target, vagrant: Vagrant, boxes: dict, tmp_path: Path) -> None:
    """Each refusal printed by the client itself, its exit non-zero, and nothing released."""
    served = Served(target, tmp_path)
    try:
        write, read = token(target, "acme", "--write"), token(target, "acme", "--read")
        home = tmp_path / "vagrant.d"
        box = boxes["libvirt", "amd64"]
        wrong = cloud_publish(vagrant, home, served, write, box, "1.0.0", "libvirt", "amd64",
                              "--checksum", "0" * 64, "--checksum-type", "sha256")
        assert wrong.returncode != 0 and refused(wrong, "but the provider's checksum is"), said(wrong)
        other = cloud_publish(vagrant, home, served, write, box, "1.0.0", "virtualbox", "amd64")
        assert other.returncode != 0 and refused(other, "says provider libvirt, not virtualbox"), said(other)
        log = served.log.read_text()  # what 2.3.4's curl does not print, the server's log says
        assert "but the provider's checksum is" in log and "says provider libvirt, not virtualbox" in log
        reader = cloud_publish(vagrant, home, served, read, box, "1.0.0", "libvirt", "amd64")
        assert reader.returncode != 0 and "may read acme/debian, not publish it" in said(reader), said(reader)
        assert entries(catalog(served, read)) == set()
        assert not any("/vagrant.box" in k for k in target.listing())  # nothing of a refused box stays
    finally:
        served.stop()


def refused(proc: subprocess.CompletedProcess, why: str) -> bool:
    """The upload refused in the client's words: both upload with `curl --fail`, which prints a status only, so the
    upload is answered 200 with the reason, and the direct upload's callback, which the gem reads, with 422 and it."""
    return why in said(proc)


def _api(served: Served, tok: str, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(f"{served.url}/api/v2{path}", method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


def _half_upload(served: Served, tok: str, box: Path) -> socket.socket:
    """A box, its version and provider made; its upload begun with half its bytes sent: the open socket."""
    _api(served, tok, "POST", "/boxes", {"box": {"username": "acme", "name": "debian", "is_private": False}})
    _api(served, tok, "POST", f"/box/{NAME}/versions", {"version": {"version": "1.0.0"}})
    _api(served, tok, "POST", f"/box/{NAME}/version/1.0.0/providers",
         {"provider": {"name": "libvirt", "architecture": "amd64"}})
    where = _api(served, tok, "GET", f"/box/{NAME}/version/1.0.0/provider/libvirt/amd64/upload/direct")
    path = where["upload_path"].removeprefix(served.url)
    data = box.read_bytes()
    s = socket.create_connection(("127.0.0.1", served.port), 30)
    s.sendall(f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data[:len(data) // 2])
    time.sleep(0.5)  # the server has the first half
    return s


def test_a_truncated_upload_is_refused_and_leaves_nothing(web: Target, boxes: dict, tmp_path: Path) -> None:
    served = Served(web, tmp_path, workers=1)
    try:
        write = token(web, "acme", "--write")
        s = _half_upload(served, write, boxes["libvirt", "amd64"])
        s.shutdown(socket.SHUT_WR)  # the client gives up after half
        s.close()
        time.sleep(0.5)
        with pytest.raises(urllib.error.HTTPError) as refused:
            _api(served, write, "PUT", f"/box/{NAME}/version/1.0.0/release")
        assert refused.value.code == 422 and b"no box" in refused.value.read()
        assert catalog(served) is None and not any("vagrant.box" in k for k in web.listing())
    finally:
        served.stop()


def _kill(served: Served) -> None:
    os.killpg(served.proc.pid, signal.SIGKILL)
    served.proc.wait()


@pytest.mark.first_case_quick
def test_the_server_killed_during_an_upload_and_a_release_leaves_the_old_catalog_or_the_new(
        target: Target, boxes: dict, tmp_path: Path) -> None:
    """SIGKILL mid-upload: no box, the old catalog; SIGKILL at moments through a release: each time the catalog
    is the old one or the whole new one; then a rerun of the client completes."""
    if not shutil.which("vagrant"):
        unavailable("Vagrant 2.3.4", "not installed (apt-get install vagrant)")
    vagrant = Vagrant("2.3.4", ["vagrant"])
    box = boxes["libvirt", "amd64"]
    digest = hashlib.sha256(box.read_bytes()).hexdigest()
    publish(target, box, NAME, "0.9.0")  # the old catalog, published the other way
    served = Served(target, tmp_path, workers=1)
    try:
        old = catalog(served)
        write = token(target, "acme", "--write")
        s = _half_upload(served, write, box)
        _kill(served)
        s.close()
        served = Served(target, tmp_path, workers=1)
        assert entries(catalog(served)) == entries(old) and not target.read(f"{NAME}/1.0.0/libvirt/amd64/vagrant.box")
        home = tmp_path / "vagrant.d"
        uploaded = cloud(vagrant, home, served, write, "publish", NAME, "1.0.0", "libvirt", str(box), "--force")
        assert uploaded.returncode == 0, said(uploaded)  # uploaded, not released
        new = entries(old) | {("1.0.0", "libvirt", "amd64")}  # the provider _half_upload made
        for delay in (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 2.0):  # a release takes 0.01 to 0.4 s here
            thread = threading.Thread(target=_release_killed, args=(served, write), daemon=True)
            thread.start()
            time.sleep(delay)
            _kill(served)
            thread.join(10)
            served = Served(target, tmp_path, workers=1)
            doc = catalog(served)
            assert entries(doc) in (entries(old), new), doc
            assert all(p["checksum"] == digest for v in doc["versions"] for p in v["providers"])
            if entries(doc) == new:
                break  # a rerun of the release completed
        assert entries(catalog(served)) == new
    finally:
        served.stop()


def _release_killed(served: Served, tok: str) -> None:
    try:
        _api(served, tok, "PUT", f"/box/{NAME}/version/1.0.0/release")
    except OSError:
        pass  # the server was killed under it


@pytest.mark.slow
def test_packer_vagrant_cloud_post_processor_publishes_through_the_server(target: Target, boxes: dict,
                                                                          tmp_path: Path) -> None:
    """Packer 1.6.6: a null builder, artifice handing a boxpack box to vagrant-cloud with vagrant_cloud_url set to
    the server: the one line a template changes. The box is made first (Packer 1.6.6 does not create boxes)."""
    if not shutil.which("packer"):
        unavailable("Packer 1.6.6", "not installed (apt-get install packer)")
    if not shutil.which("vagrant"):
        unavailable("Vagrant 2.3.4", "not installed (apt-get install vagrant)")
    vagrant = Vagrant("2.3.4", ["vagrant"])
    served = Served(target, tmp_path)
    try:
        write = token(target, "acme", "--write")
        home = tmp_path / "vagrant.d"
        made = cloud(vagrant, home, served, write, "box", "create", NAME, "--short-description", "Debian", "--no-private")
        assert made.returncode == 0, said(made)
        work = tmp_path / "packer"
        work.mkdir()
        shutil.copy(boxes["virtualbox", "amd64"], work / "debian-virtualbox.box")
        template = {
            "builders": [{"type": "null", "communicator": "none"}],
            "post-processors": [[
                {"type": "artifice", "files": ["debian-virtualbox.box"]},
                {"type": "vagrant-cloud", "box_tag": NAME, "version": "2.0.0", "access_token": write,
                 "vagrant_cloud_url": f"{served.url}/api/v1"},
            ]],
        }
        (work / "debian.json").write_text(json.dumps(template))
        env = {**os.environ, "HOME": str(work), "CHECKPOINT_DISABLE": "1", "PACKER_CACHE_DIR": str(work / "cache")}
        built = subprocess.run(["packer", "build", "-color=false", "debian.json"], cwd=work, env=env,
                               capture_output=True, text=True, timeout=600)
        assert built.returncode == 0, said(built)
        assert entries(catalog(served)) == {("2.0.0", "virtualbox", "unknown")}
        added = vagrant(home, "box", "add", NAME, "--provider", "virtualbox", server=served.url)
        assert added.returncode == 0, said(added)
        template["post-processors"][0][1]["access_token"] = token(target, "acme", "--read")
        template["post-processors"][0][1]["version"] = "2.1.0"
        (work / "debian.json").write_text(json.dumps(template))
        reader = subprocess.run(["packer", "build", "-color=false", "debian.json"], cwd=work, env=env,
                                capture_output=True, text=True, timeout=600)
        assert reader.returncode != 0 and "may read acme/debian, not publish it" in said(reader), said(reader)
    finally:
        served.stop()


@pytest.mark.slow
@pytest.mark.parametrize("vagrant", ["2.4.9"], indirect=True)
def test_eight_concurrent_publishes_through_two_replicas_all_land_in_one_version(
        target: Target, vagrant: Vagrant, boxes: dict, tmp_path: Path) -> None:
    """Four providers, two architectures, eight `vagrant cloud publish --release` at once, half through each of
    two servers over one store: the catalog holds all eight, each with its box's checksum. The box is there
    before, as in a pipeline that publishes its next version: the client reads the organisation twice (publish.rb,
    load_box) and stops on a box another run created between the two, as it did against HCP."""
    first, second = Served(target, tmp_path), Served(target, tmp_path)
    try:
        write = token(target, "acme", "--write")
        _api(first, write, "POST", "/boxes", {"box": {"username": "acme", "name": "debian", "is_private": False}})
        runs = []
        for i, ((provider, arch), box) in enumerate(sorted(boxes.items())):
            served = (first, second)[i % 2]
            args = ["cloud", "publish", NAME, "1.0.0", provider, str(box), "--release", "--force", "--architecture", arch,
                    "--default-architecture" if arch == "amd64" else "--no-default-architecture"]
            full = {**os.environ, "VAGRANT_HOME": str(tmp_path / f"v{i}.d"), "VAGRANT_CHECKPOINT_DISABLE": "1",
                    "VAGRANT_NO_COLOR": "1", "VAGRANT_SERVER_URL": served.url, "VAGRANT_CLOUD_TOKEN": write}
            runs.append(subprocess.Popen([*vagrant.command, *args], env=full, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True))
        for run in runs:
            out = run.communicate(timeout=600)[0]
            assert run.returncode == 0, out
        doc = catalog(first)
        assert entries(doc) == {("1.0.0", p, a) for p, a in boxes}, doc
        for p in doc["versions"][0]["providers"]:
            assert p["checksum"] == hashlib.sha256(boxes[p["name"], p["architecture"]].read_bytes()).hexdigest()
    finally:
        first.stop()
        second.stop()


@pytest.mark.first_case_quick
def test_prune_keeps_the_newest_and_deletes_only_what_no_catalog_names(target: Target, boxes: dict,
                                                                       tmp_path: Path) -> None:
    box = boxes["libvirt", "amd64"]
    for version in ("1.0.0", "1.1.0", "1.2.0", "2.0.0"):
        publish(target, box, NAME, version)
    before = target.listing()
    dry = run_boxpack("catalog", "prune", target.to, "--name", NAME, "--keep", "2", "--dry-run", "--json", env=target.env)
    assert json.loads(dry.stdout)["versions"] == ["1.0.0", "1.1.0"] and target.listing() == before
    done = run_boxpack("catalog", "prune", target.to, "--name", NAME, "--keep", "2", "--json", env=target.env)
    report = json.loads(done.stdout)
    doc = json.loads(target.read(f"{NAME}/catalog.json") or target.read(NAME) or b"{}")
    assert [v["version"] for v in doc["versions"]] == ["1.2.0", "2.0.0"]
    gone = before - target.listing()
    assert gone == set(report["deleted"]) and all(k.split("/")[2] in ("1.0.0", "1.1.0") for k in gone), gone
    assert all(target.read(f"{NAME}/{v}/libvirt/amd64/vagrant.box") for v in ("1.2.0", "2.0.0"))
    assert run_boxpack("catalog", "prune", target.to, "--name", NAME, "--keep-days", "1", env=target.env).returncode == 0
    assert [v["version"] for v in json.loads(target.read(f"{NAME}/catalog.json") or target.read(NAME))["versions"]] == \
        ["1.2.0", "2.0.0"]  # all younger than a day
    refused = run_boxpack("catalog", "prune", target.to, "--name", NAME, "--keep", "0", env=target.env, check=False)
    assert refused.returncode == 2 and refused.stderr.decode().count("\n") == 1
