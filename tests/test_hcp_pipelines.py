"""HCP pipelines unchanged but one address (issue 50): what the real clients still hit in `boxpack serve`, each case
with both Vagrants (2.3.4 with vagrant_cloud 3.0.5, 2.4.9 with 3.1.3, whose OAuth2 path runs on Debian's
ruby-oauth2) and Packer 1.6.6, over a directory store (and S3 where the store matters)."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import MIB, Target, Vagrant, make_disk, run_boxpack, unavailable
from served import Served, get, settle, token

NAME = "acme/debian"


@pytest.fixture(scope="module")
def box(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hcp-pipelines")
    run_boxpack(make_disk.make(d / "debian.img", data=MIB), "--provider", "libvirt", "--architecture", "amd64", "-o",
                d / "debian-libvirt.box")
    return d / "debian-libvirt.box"


def said(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def cloud(vagrant: Vagrant, home: Path, served: Served, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return vagrant(home, "cloud", *args, server=served.url, env=env)


def api(served: Served, tok: str | None, method: str, path: str, body: dict | None = None,
        **headers: str) -> tuple[int, dict]:
    if tok:
        headers.setdefault("Authorization", f"Bearer {tok}")
    request = urllib.request.Request(f"{served.url}{path}", method=method, headers={**headers, "Content-Type": "application/json"},
                                     data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.mark.first_case_quick("vagrant")
def test_a_box_at_a_url_is_released_without_a_checksum_served_at_its_url_and_private_by_default(
        web: Target, vagrant: Vagrant, box: Path, tmp_path: Path) -> None:
    """`vagrant cloud publish --url` registers a box hosted elsewhere, with no checksum (as Packer's box_download_url):
    released as HCP released it, handed to Vagrant at its URL, and, created without --private, private."""
    served = Served(web, tmp_path)
    try:
        write = token(web, "acme", "--write")
        (web.root / "elsewhere" / "files").mkdir(parents=True)  # not ORG/NAME, which nginx answers with a catalog
        shutil.copy(box, web.root / "elsewhere" / "files" / "debian.box")
        url = f"{web.base_url}/elsewhere/files/debian.box"
        env = {"VAGRANT_CLOUD_TOKEN": write}
        home = tmp_path / "vagrant.d"
        done = cloud(vagrant, home, served, env, "publish", NAME, "1.0.0", "libvirt", "--url", url, "--release", "--force")
        assert done.returncode == 0, said(done)
        settle()
        doc = json.loads(get(f"{served.url}/{NAME}", write)[2])
        entry = doc["versions"][0]["providers"][0]
        assert entry["url"] == url and "checksum" not in entry, entry
        assert get(f"{served.url}/{NAME}")[0] == 404  # created without is_private: private (the API's default)
        shown = api(served, write, "GET", f"/api/v2/box/{NAME}")[1]
        assert shown["private"] is True and shown["versions"][0]["providers"][0]["checksum"] is None
        added = vagrant(home, "box", "add", NAME, "--provider", "libvirt", server=served.url, env=env)
        assert added.returncode == 0, said(added)
        page = get(f"{served.url}/{NAME}", write, Accept="text/html")[2].decode()
        assert "none given" in page
    finally:
        served.stop()


@pytest.mark.first_case_quick("vagrant")
def test_descriptions_reach_the_catalog_and_the_pages_and_box_show_lists_a_version_once(
        web: Target, vagrant: Vagrant, box: Path, tmp_path: Path) -> None:
    served = Served(web, tmp_path)
    try:
        write = token(web, "acme", "--write")
        env = {"VAGRANT_CLOUD_TOKEN": write}
        home = tmp_path / "vagrant.d"
        made = cloud(vagrant, home, served, env, "box", "create", NAME, "--short-description", "Debian for CI",
                     "--description", "Debian 12, *minimal*", "--no-private")
        assert made.returncode == 0, said(made)
        done = cloud(vagrant, home, served, env, "publish", NAME, "1.0.0", "libvirt", str(box), "--version-description",
                     "the first", "--release", "--force")
        assert done.returncode == 0, said(done)
        settle()
        doc = json.loads(get(f"{served.url}/{NAME}")[2])
        assert doc["description"] == "Debian 12, *minimal*" and doc["versions"][0]["description"] == "the first"
        page = get(f"{served.url}/{NAME}", Accept="text/html")[2].decode()
        assert "Debian 12" in page and "the first" in page
        shown = cloud(vagrant, home, served, env, "box", "show", NAME)
        versions = next(line for line in shown.stdout.splitlines() if line.startswith("Versions:"))
        assert shown.returncode == 0 and versions.split() == ["Versions:", "1.0.0"], said(shown)  # not "1.0.0, 1.0.0"
    finally:
        served.stop()


def test_an_organisation_made_public_creates_public_boxes(web: Target, vagrant: Vagrant, tmp_path: Path) -> None:
    served = Served(web, tmp_path, workers=1)
    try:
        run_boxpack("serve", "visibility", "acme", "public", "--store", web.to)
        env = {"VAGRANT_CLOUD_TOKEN": token(web, "acme", "--write")}
        made = cloud(vagrant, tmp_path / "v.d", served, env, "box", "create", NAME)
        assert made.returncode == 0, said(made)
        assert api(served, None, "GET", f"/api/v2/box/{NAME}")[1]["private"] is False
    finally:
        served.stop()


def test_a_pruned_version_is_gone_from_the_api_and_cannot_be_released_again(web: Target, vagrant: Vagrant, box: Path,
                                                                           tmp_path: Path) -> None:
    served = Served(web, tmp_path, workers=1)
    try:
        write = token(web, "acme", "--write")
        env = {"VAGRANT_CLOUD_TOKEN": write}
        home = tmp_path / "vagrant.d"
        for version in ("1.2.0", "1.3.0"):
            done = cloud(vagrant, home, served, env, "publish", NAME, version, "libvirt", str(box), "--release", "--force")
            assert done.returncode == 0, said(done)
        revoked = cloud(vagrant, home, served, env, "version", "revoke", NAME, "1.2.0", "--force")
        assert revoked.returncode == 0, said(revoked)
        cloud(vagrant, home, served, env, "version", "release", NAME, "1.2.0", "--force")  # back in the catalog
        run_boxpack("catalog", "prune", web.to, "--name", NAME, "--keep", "1")
        settle()
        versions = [v["version"] for v in api(served, write, "GET", f"/api/v2/box/{NAME}")[1]["versions"]]
        assert versions == ["1.3.0"], versions
        again = cloud(vagrant, home, served, env, "version", "release", NAME, "1.2.0", "--force")
        assert again.returncode != 0
        assert [v["version"] for v in json.loads(get(f"{served.url}/{NAME}", write)[2])["versions"]] == ["1.3.0"]
    finally:
        served.stop()


@pytest.mark.parametrize("vagrant", ["2.4.9"], indirect=True)
def test_a_service_principal_publishes_and_adds_with_the_servers_short_lived_tokens(web: Target, vagrant: Vagrant, box: Path,
                                                                                  tmp_path: Path) -> None:
    """vagrant_cloud 3.1.3 with HCP_CLIENT_ID and HCP_CLIENT_SECRET and no VAGRANT_CLOUD_TOKEN asks HCP_AUTH_URL for a
    token (OAuth2 client credentials through ruby-oauth2): here, the server."""
    served = Served(web, tmp_path)
    try:
        created = run_boxpack("serve", "token", "create", "acme", "--write", "--client", "--store", web.to)
        env = dict(line.split("=", 1) for line in created.stdout.decode().split())
        env["HCP_AUTH_URL"] = served.url
        home = tmp_path / "vagrant.d"
        done = cloud(vagrant, home, served, env, "publish", NAME, "1.0.0", "libvirt", str(box), "--release", "--force",
                     "--architecture", "amd64")
        assert done.returncode == 0, said(done)
        added = vagrant(home, "box", "add", NAME, "--provider", "libvirt", server=served.url, env=env)
        assert added.returncode == 0, said(added)  # private: its download went with a token the server gave
        wrong = cloud(vagrant, tmp_path / "w.d", served, {**env, "HCP_CLIENT_SECRET": "0" * 64}, "box", "show", NAME)
        assert wrong.returncode != 0 and "invalid_client" in said(wrong), said(wrong)
        client = env["HCP_CLIENT_ID"]
        run_boxpack("serve", "token", "revoke", client, "--store", web.to)
        settle()
        revoked = cloud(vagrant, tmp_path / "r.d", served, env, "box", "show", NAME)
        assert revoked.returncode != 0, said(revoked)
        assert env["HCP_CLIENT_SECRET"] not in served.log.read_text()
    finally:
        served.stop()


def test_tokens_in_old_places_log_out_and_no_secret_in_the_log(web: Target, box: Path, tmp_path: Path) -> None:
    served = Served(web, tmp_path, workers=1)
    try:
        write = token(web, "acme", "--write")
        assert api(served, None, "GET", "/api/v1/authenticate", **{"X-Atlas-Token": write})[0] == 200
        assert api(served, None, "GET", f"/api/v2/authenticate?access_token={write}")[0] == 200
        status, body = api(served, write, "DELETE", "/api/v1/authenticate")
        assert status == 200, body
        settle()
        assert api(served, write, "GET", "/api/v2/authenticate")[0] == 401
        assert write.split("_")[2] not in served.log.read_text()
    finally:
        served.stop()


def _with_a_terminal(command: list[str], env: dict[str, str], answers: list[bytes], seconds: float = 120) -> str:
    """command run on a terminal of its own (Vagrant asks for a password only there), each answer sent when it
    prints a prompt (a line ending in ': '); what it printed."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(command[0], command, env)
    out, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 1)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if answers and out.rstrip(b" ").endswith(b":"):
                os.write(fd, answers.pop(0) + b"\n")
    os.waitpid(pid, 0)
    return out.decode(errors="replace")


@pytest.mark.first_case_quick("vagrant")
def test_a_password_login_is_answered_in_one_line_that_says_how_to_log_in(web: Target, vagrant: Vagrant,
                                                                         tmp_path: Path) -> None:
    served = Served(web, tmp_path, workers=1)
    try:
        env = {**os.environ, "VAGRANT_HOME": str(tmp_path / "v.d"), "VAGRANT_CHECKPOINT_DISABLE": "1",
               "VAGRANT_NO_COLOR": "1", "VAGRANT_SERVER_URL": served.url}
        env.pop("VAGRANT_CLOUD_TOKEN", None)
        out = _with_a_terminal([*vagrant.command, "cloud", "auth", "login", "--username", "acme", "--description", "ci"],
                               env, [b"a password"])
        assert "boxpack serve token create ORG --write" in out, out
    finally:
        served.stop()


def test_a_port_in_use_is_named_in_one_line(tmp_path: Path) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc = run_boxpack("serve", "--store", tmp_path, "--listen", f"127.0.0.1:{port}", "--public-url", "http://x.example",
                           check=False)
    said_ = proc.stderr.decode()
    assert proc.returncode == 3 and said_.count("\n") == 1 and f"127.0.0.1:{port}" in said_ and "in use" in said_, said_


@pytest.mark.slow
def test_packer_box_download_url_is_released_without_a_checksum_and_added(web: Target, box: Path, tmp_path: Path) -> None:
    """Packer 1.6.6 with box_download_url sends the provider's name and URL only (step_create_provider.go), then
    releases: the release goes through, and Vagrant adds the box from that URL."""
    if not shutil.which("packer") or not shutil.which("vagrant"):
        unavailable("Packer 1.6.6 and Vagrant 2.3.4", "not installed (apt-get install packer vagrant)")
    served = Served(web, tmp_path)
    try:
        write = token(web, "acme", "--write")
        (web.root / "elsewhere" / "files").mkdir(parents=True)  # not ORG/NAME, which nginx answers with a catalog
        shutil.copy(box, web.root / "elsewhere" / "files" / "debian.box")
        home = tmp_path / "vagrant.d"
        vagrant = Vagrant("2.3.4", ["vagrant"])
        assert vagrant(home, "cloud", "box", "create", NAME, server=served.url,
                       env={"VAGRANT_CLOUD_TOKEN": write}).returncode == 0
        work = tmp_path / "packer"
        work.mkdir()
        shutil.copy(box, work / "debian-libvirt.box")
        template = {"builders": [{"type": "null", "communicator": "none"}],
                    "post-processors": [[{"type": "artifice", "files": ["debian-libvirt.box"]},
                                         {"type": "vagrant-cloud", "box_tag": NAME, "version": "3.0.0", "access_token": write,
                                          "vagrant_cloud_url": f"{served.url}/api/v1",
                                          "box_download_url": f"{web.base_url}/elsewhere/files/debian.box"}]]}
        (work / "t.json").write_text(json.dumps(template))
        env = {**os.environ, "HOME": str(work), "CHECKPOINT_DISABLE": "1", "PACKER_CACHE_DIR": str(work / "cache")}
        built = subprocess.run(["packer", "build", "-color=false", "t.json"], cwd=work, env=env, capture_output=True,
                               text=True, timeout=600)
        assert built.returncode == 0, said(built)
        settle()
        added = vagrant(home, "box", "add", NAME, "--provider", "libvirt", server=served.url,
                        env={"VAGRANT_CLOUD_TOKEN": write})
        assert added.returncode == 0, said(added)
    finally:
        served.stop()
