"""boxpack publish, against real stores: Ceph radosgw and SeaweedFS (S3), and a directory behind nginx
with the README's configuration; the real Vagrant adds what was published, by name."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import make_disk
import pytest
from conftest import MIB, ROOT, Target, Vagrant, run_boxpack, unavailable

from boxpack import catalog
from boxpack.metadata import validate

NAME = "org/sample"
PROVIDERS = ("libvirt", "virtualbox", "vmware_desktop", "hyperv")


def publish(target: Target, *args, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return run_boxpack("publish", *args, "--to", target.to, "--name", kw.pop("name", NAME), "--base-url",
                       target.base_url, env=target.env, check=check, **kw)


def http(url: str, method: str = "GET", accept_json: bool = False) -> tuple[int, dict[str, str], bytes]:
    """An anonymous request, as Vagrant's curl makes it."""
    headers = {"Accept": "application/json"} if accept_json else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method, headers=headers), timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, b""


def served_catalog(target: Target, name: str = NAME) -> dict:
    status, headers, body = http(f"{target.base_url}/{name}", accept_json=True)
    assert status == 200 and headers["content-type"].startswith("application/json"), (status, headers)
    return json.loads(body)


def assert_catalog_true(target: Target, name: str = NAME, same: bool = True) -> dict:
    """The catalog is whole and valid at both names Vagrant asks for, every URL in each downloads exactly
    the bytes its checksum names, and (same) both are one catalog. Returns the first."""
    docs = [served_catalog(target, n) for n in (name, f"api/v2/vagrant/{name}")]
    for doc in docs:
        assert catalog.check(doc) == []
        for v in doc["versions"]:
            for p in v["providers"]:
                status, _, body = http(p["url"])
                assert status == 200, p["url"]
                assert hashlib.new(p["checksum_type"], body).hexdigest() == p["checksum"], p["url"]
    if same:
        assert docs[0] == docs[1]
    return docs[0]


@pytest.fixture(scope="module")
def boxes(tmp_path_factory) -> dict[str, Path]:
    """A small box for each of four providers, from one disk."""
    d = tmp_path_factory.mktemp("boxes")
    disk = make_disk.make(d / "sample.img", data=4 * MIB)
    run_boxpack(disk, *[x for p in PROVIDERS for x in ("--provider", p)], "-o", f"{d}/", "--arch", "amd64")
    return {p: d / f"sample-{p}.box" for p in PROVIDERS}


@pytest.mark.first_case_quick
def test_layout_headers_and_checksum_files(target: Target, boxes: dict[str, Path]) -> None:
    proc = publish(target, boxes["libvirt"], boxes["virtualbox"], "--box-version", "1.0.0", "--json")
    result = json.loads(proc.stdout)
    validate(result, "publish-result.schema.json", "boxpack publish --json")
    assert {b["action"] for b in result["boxes"]} == {"uploaded"}
    layout = {f"{NAME}/1.0.0/{p}/amd64/vagrant.box" for p in ("libvirt", "virtualbox")}
    catalogs = {f"{NAME}/catalog.json"} if target.kind == "nginx" else {NAME, f"api/v2/vagrant/{NAME}"}
    assert target.listing() == layout | {k + ".sha256" for k in layout} | catalogs
    for key in layout:
        box = boxes[key.split("/")[3]]
        assert target.read(key) == box.read_bytes()
        sidecar = target.read(key + ".sha256").decode()
        assert sidecar == f"{hashlib.sha256(box.read_bytes()).hexdigest()}  vagrant.box\n"  # sha256sum -c reads it
        status, headers, _ = http(f"{target.base_url}/{key}", "HEAD")
        assert status == 200 and headers["content-type"] in ("application/octet-stream", "application/x-virtualbox-box")
        assert "immutable" in headers.get("cache-control", ""), headers
    for name in (NAME, f"api/v2/vagrant/{NAME}"):  # what Vagrant 2.3 and 2.4 ask for, with HEAD first
        status, headers, _ = http(f"{target.base_url}/{name}", "HEAD", accept_json=True)
        assert status == 200 and headers["content-type"].startswith("application/json"), (name, headers)
        assert headers.get("cache-control") == "public, max-age=60", headers
    doc = assert_catalog_true(target)
    assert result["catalog"] == doc and [p["name"] for p in doc["versions"][0]["providers"]] == ["libvirt", "virtualbox"]
    assert result["catalog_urls"][0] == f"{target.base_url}/{NAME}" + ("/catalog.json" if target.kind == "nginx" else "")


@pytest.mark.first_case_quick
def test_republishing_is_refused_unless_forced_and_the_same_box_is_unchanged(target: Target, boxes: dict[str, Path],
                                                                             tmp_path: Path) -> None:
    first = publish(target, boxes["libvirt"], "--box-version", "1.0.0").stderr.decode()
    assert f"vagrant.box: {'uploaded' if target.bucket else 'written'}, " in first and "recorded 1 box(es)" in first
    again = publish(target, boxes["libvirt"], "--box-version", "1.0.0", "--json")
    assert json.loads(again.stdout)["boxes"][0]["action"] == "unchanged"
    said = again.stderr.decode()  # nothing changed, and it says so
    assert "vagrant.box: already there" in said and "catalog unchanged: org/sample 1.0.0" in said and "recorded" not in said
    other = tmp_path / "other-libvirt.box"
    run_boxpack(make_disk.make(tmp_path / "other.img", data=2 * MIB), "--provider", "libvirt", "-o", other, "--arch", "amd64")
    refused = publish(target, other, "--box-version", "1.0.0", check=False)
    assert refused.returncode == 3 and "already has a libvirt box for amd64" in refused.stderr.decode()
    assert assert_catalog_true(target)["versions"][0]["providers"][0]["checksum"] == hashlib.sha256(boxes["libvirt"].read_bytes()).hexdigest()
    publish(target, other, "--box-version", "1.0.0", "--force")
    doc = assert_catalog_true(target)
    assert doc["versions"][0]["providers"][0]["checksum"] == hashlib.sha256(other.read_bytes()).hexdigest()


@pytest.mark.first_case_quick
def test_dry_run_writes_nothing_and_prints_the_catalog(target: Target, boxes: dict[str, Path]) -> None:
    publish(target, boxes["libvirt"], "--box-version", "1.0.0")
    before = {k: target.read(k) for k in target.listing()}
    proc = publish(target, boxes["virtualbox"], "--box-version", "1.1.0", "--dry-run")
    doc = json.loads(proc.stdout)
    assert [v["version"] for v in doc["versions"]] == ["1.0.0", "1.1.0"] and catalog.check(doc) == []
    assert ("would upload" if target.bucket else "would write") in proc.stderr.decode()
    assert {k: target.read(k) for k in target.listing()} == before


@pytest.mark.first_case_quick
def test_yank_keeps_the_boxes_unless_asked(target: Target, boxes: dict[str, Path]) -> None:
    publish(target, boxes["libvirt"], boxes["virtualbox"], "--box-version", "1.0.0")
    location = f"{target.to}/{NAME}" + ("/catalog.json" if target.kind == "nginx" else "")
    run_boxpack("catalog", "remove", location, "--box-version", "1.0.0", "--provider", "virtualbox", env=target.env)
    assert [p["name"] for p in assert_catalog_true(target)["versions"][0]["providers"]] == ["libvirt"]
    assert target.read(f"{NAME}/1.0.0/virtualbox/amd64/vagrant.box") is not None
    proc = run_boxpack("catalog", "remove", location, "--box-version", "1.0.0", "--delete-boxes", env=target.env)
    assert "deleted org/sample/1.0.0/libvirt/amd64/vagrant.box" in proc.stderr.decode()
    assert assert_catalog_true(target)["versions"] == []
    assert not any(k.endswith("libvirt/amd64/vagrant.box") for k in target.listing())
    shown = run_boxpack("catalog", "show", location, env=target.env).stdout.decode()
    assert shown.startswith("org/sample\n")
    # What Vagrant is given, its URL, reads the same (HTTP(S) catalogs are read as mirror reads them).
    assert run_boxpack("catalog", "show", f"{target.base_url}/{NAME}").stdout.decode() == shown


# --- the real clients: Vagrant 2.3.4 and 2.4.9 add by name through VAGRANT_SERVER_URL --------------

@pytest.mark.first_case_quick("vagrant")
def test_vagrant_adds_by_name_refuses_a_changed_box_and_sees_a_new_version(target: Target, boxes: dict[str, Path],
                                                                          tmp_path: Path, vagrant: Vagrant) -> None:
    publish(target, boxes["libvirt"], "--box-version", "1.0.0")
    home = tmp_path / "vagrant.d"
    added = vagrant(home, "box", "add", NAME, "--provider", "libvirt", server=target.base_url)
    assert added.returncode == 0, added.stdout + added.stderr
    assert f"{NAME} (libvirt, 1.0.0" in vagrant(home, "box", "list").stdout
    if target.kind == "nginx":  # 2.4 asks for the v2 path first (box_add.rb, BoxAdd#call), 2.3 only for ORG/NAME
        asked = target.server.access_log.read_text()
        assert (f'"HEAD /api/v2/vagrant/{NAME} ' in asked) is (vagrant.version == "2.4.9") and f'"HEAD /{NAME} ' in asked
    # A second version: `vagrant box outdated --global` finds it through the catalog URL recorded at add time.
    publish(target, boxes["libvirt"], "--box-version", "1.1.0")
    outdated = vagrant(home, "box", "outdated", "--global", server=target.base_url)
    assert "1.1.0" in outdated.stdout and "outdated" in outdated.stdout, outdated.stdout + outdated.stderr
    # The box behind 1.1.0 changed after publishing: Vagrant refuses it on its checksum.
    key = f"{NAME}/1.1.0/libvirt/amd64/vagrant.box"
    data = bytearray(target.read(key))
    data[len(data) // 2] ^= 0xFF
    target.write(key, bytes(data))
    refused = vagrant(tmp_path / "fresh.d", "box", "add", NAME, "--provider", "libvirt", "--box-version", "1.1.0",
                      server=target.base_url)
    assert refused.returncode != 0 and "checksum" in (refused.stdout + refused.stderr).lower(), refused.stdout + refused.stderr


@pytest.mark.first_case_quick("vagrant")
def test_the_readme_site_on_stock_debian_answers_its_name_beside_the_default_site(tmp_path: Path, boxes: dict[str, Path],
                                                                                vagrant: Vagrant) -> None:
    """The README's server block where its section puts it, /etc/nginx/sites-enabled/boxes beside Debian's default
    site: asked by its server_name it serves the catalog; by any other name the default site answers (a 404)."""
    import servers

    if not Path("/etc/nginx/nginx.conf").is_file():
        unavailable("Debian's nginx", "not installed (apt-get install nginx)")
    root = tmp_path / "srv"
    root.mkdir()
    server = servers.debian_nginx(tmp_path / "nginx", root, servers.readme_nginx_block())
    try:
        name = "boxes.example.org"  # the README's server_name
        base = f"http://{name}:{server.url.rsplit(':', 1)[1]}"
        run_boxpack("publish", boxes["libvirt"], "--to", root, "--name", NAME, "--box-version", "1.0.0", "--base-url", base)
        asked = urllib.request.Request(f"{server.url}/{NAME}", method="HEAD", headers={"Host": base.removeprefix("http://")})
        with urllib.request.urlopen(asked) as r:
            assert r.headers["Content-Type"] == "application/json"
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(f"{server.url}/{NAME}")
        # Vagrant by name: boxes.example.org is reached through this machine's address (curl's proxy variable: no DNS).
        added = vagrant(tmp_path / "vagrant.d", "box", "add", NAME, "--provider", "libvirt", server=base,
                        env={"http_proxy": server.url, "no_proxy": ""})
        assert added.returncode == 0, added.stdout + added.stderr
    finally:
        server.stop()


# --- concurrent publishers, kills, resumed uploads --------------------------------------------

@pytest.mark.slow
def test_eight_concurrent_publishers_keep_every_entry(target: Target, boxes: dict[str, Path]) -> None:
    """A CI matrix: one job per provider and architecture, all publishing one version at once."""
    jobs = [(p, a) for p in PROVIDERS for a in ("amd64", "arm64")]
    with ThreadPoolExecutor(len(jobs)) as pool:
        procs = list(pool.map(lambda j: publish(target, boxes[j[0]], "--box-version", "2.0.0", "--architecture", j[1],
                                                check=False), jobs))
    assert [p.returncode for p in procs] == [0] * len(jobs), [p.stderr.decode() for p in procs if p.returncode]
    doc = assert_catalog_true(target)
    entries = [(p["name"], p["architecture"], p["default_architecture"]) for p in doc["versions"][0]["providers"]]
    # Whatever order they landed in, amd64 is every provider's default, placed last.
    assert entries == [(p, a, a == "amd64") for p in sorted(PROVIDERS) for a in ("arm64", "amd64")]


def _big_box(path: Path, size: int) -> Path:
    """A box of incompressible bytes (several upload parts), with the metadata.json publish reads."""
    import io
    import tarfile

    with tarfile.open(path, "w") as t:
        meta = json.dumps({"provider": "libvirt", "format": "qcow2", "virtual_size": 1, "architecture": "amd64"}).encode()
        for name, data in (("metadata.json", meta), ("box.img", os.urandom(size))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def _start_publish(target: Target, box: Path, version: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "boxpack", "publish", str(box), "--to", target.to, "--name", NAME, "--base-url",
         target.base_url, "--box-version", version, "--json"],
        env={**os.environ, **target.env, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


@pytest.mark.first_case_quick
def test_kill_during_an_upload_then_a_rerun_resumes(s3: Target, tmp_path: Path) -> None:
    from netproxy import Proxy

    box = _big_box(tmp_path / "big-libvirt.box", 80 * MIB)  # five 16 MiB parts and a short one
    host, port = s3.server.endpoint.removeprefix("http://").split(":")
    slow = Proxy(host, int(port), rate=24 * MIB)
    proc = _start_publish(s3, box, "1.0.0", {"AWS_ENDPOINT_URL": slow.url})
    key = s3.key(f"{NAME}/1.0.0/libvirt/amd64/vagrant.box")
    client = s3.server.client()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        uploads = client.list_multipart_uploads(Bucket=s3.bucket, Prefix=key).get("Uploads", [])
        if uploads and len(client.list_parts(Bucket=s3.bucket, Key=key, UploadId=uploads[0]["UploadId"]).get("Parts", [])) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    slow.close()
    assert proc.returncode == -signal.SIGKILL
    # Nothing is visible: no box at its key, and the catalog (made empty before the first box) names none.
    assert s3.read(f"{NAME}/1.0.0/libvirt/amd64/vagrant.box") is None
    assert assert_catalog_true(s3)["versions"] == []
    counting = Proxy(host, int(port))
    rerun = _start_publish(s3, box, "1.0.0", {"AWS_ENDPOINT_URL": counting.url})
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err.decode()
    [published] = json.loads(out)["boxes"]
    assert published["action"] == "resumed" and published["resumed_bytes"] >= 2 * 16 * MIB, published
    # Only what the interrupted run had not sent went over the network again.
    assert counting.sent_to_server < box.stat().st_size - published["resumed_bytes"] + 2 * MIB, counting.sent_to_server
    assert s3.read(f"{NAME}/1.0.0/libvirt/amd64/vagrant.box") == box.read_bytes()
    assert_catalog_true(s3)
    assert client.list_multipart_uploads(Bucket=s3.bucket, Prefix=key).get("Uploads", []) == []


@pytest.mark.first_case_quick
@pytest.mark.parametrize("which", ["catalog", "its copy"])
def test_kill_during_the_catalog_write_leaves_a_whole_catalog(s3: Target, boxes: dict[str, Path], which: str) -> None:
    from netproxy import Proxy

    publish(s3, boxes["libvirt"], "--box-version", "1.0.0")
    path = f"/{s3.bucket}/vagrant/" + (NAME if which == "catalog" else f"api/v2/vagrant/{NAME}")
    host, port = s3.server.endpoint.removeprefix("http://").split(":")
    # The store gets the request's head and 100 bytes of the new catalog, then nothing more.
    stall = Proxy(host, int(port), hold=rb"PUT " + path.encode() + rb"(\?[^ ]*)? HTTP/1\.1\r\n", hold_after=100)
    proc = _start_publish(s3, boxes["virtualbox"], "1.1.0", {"AWS_ENDPOINT_URL": stall.url})
    assert stall.held.wait(60), proc.communicate(timeout=5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stall.close()
    doc = assert_catalog_true(s3, same=which == "catalog")  # whole, and every entry downloads with its checksum
    versions = [v["version"] for v in doc["versions"]]
    assert versions == (["1.0.0"] if which == "catalog" else ["1.0.0", "1.1.0"])
    if which == "its copy":  # the copy lags behind (still true), and the next publish brings it level
        copy = json.loads(http(f"{s3.base_url}/api/v2/vagrant/{NAME}")[2])
        assert [v["version"] for v in copy["versions"]] == ["1.0.0"]
        assert json.loads(publish(s3, boxes["virtualbox"], "--box-version", "1.1.0", "--json").stdout)["boxes"][0]["action"] == "unchanged"
    else:
        publish(s3, boxes["virtualbox"], "--box-version", "1.1.0")
    assert [v["version"] for v in assert_catalog_true(s3)["versions"]] == ["1.0.0", "1.1.0"]


@pytest.mark.slow
def test_kills_at_any_moment_never_leave_a_lie(target: Target, tmp_path: Path) -> None:
    """SIGKILL a publisher at evenly spread moments of its run; after each, the catalog is whole and every
    entry in it downloads with its checksum. A last run finishes the job."""
    box = _big_box(tmp_path / "big-libvirt.box", 40 * MIB)
    started = time.monotonic()
    publish(target, box, "--box-version", "0.9.0")
    whole = time.monotonic() - started
    first = assert_catalog_true(target)
    for i in range(6):
        proc = _start_publish(target, box, "1.0.0")
        time.sleep(whole * (i + 0.5) / 6)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        doc = assert_catalog_true(target, same=False)
        assert [v["version"] for v in doc["versions"]][:1] == ["0.9.0"]
        copy = served_catalog(target, f"api/v2/vagrant/{NAME}")
        # S3 writes one object at a time: a kill between the catalog and its copy leaves the copy one
        # update behind (still true), and the next run brings it up before it sends anything.
        assert copy == doc or (copy == first and target.kind != "nginx"), (doc, copy)
    publish(target, box, "--box-version", "1.0.0")
    assert [v["version"] for v in assert_catalog_true(target)["versions"]] == ["0.9.0", "1.0.0"]


@pytest.mark.first_case_quick
def test_a_copy_left_behind_by_a_kill_is_brought_up_before_anything_is_sent(s3: Target, boxes: dict[str, Path]) -> None:
    """The state a kill between the catalog and its api/v2 copy leaves; the next run fixes it even when
    that run fails later (here: its key holds an object boxpack did not write)."""
    publish(s3, boxes["libvirt"], "--box-version", "0.9.0")
    stale = s3.read(NAME)
    publish(s3, boxes["libvirt"], "--box-version", "1.0.0")
    s3.write(f"api/v2/vagrant/{NAME}", stale)
    s3.write(f"{NAME}/2.0.0/libvirt/amd64/vagrant.box", b"not a box")
    failed = publish(s3, boxes["libvirt"], "--box-version", "2.0.0", check=False)
    assert failed.returncode == 3 and "exists without a checksum file" in failed.stderr.decode()
    assert s3.read(f"api/v2/vagrant/{NAME}") == s3.read(NAME) != stale
    assert [v["version"] for v in assert_catalog_true(s3)["versions"]] == ["0.9.0", "1.0.0"]


# --- packing straight into the upload ----------------------------------------------------------

@pytest.mark.first_case_quick
def test_pack_streams_each_box_into_its_upload(target: Target, tmp_path: Path) -> None:
    disk = make_disk.make(tmp_path / "disk.img", data=4 * MIB)
    work = tmp_path / "work"
    work.mkdir()
    proc = run_boxpack(disk, "--provider", "libvirt", "--provider", "virtualbox", "--publish", target.to, "--name", NAME,
                       "--box-version", "3.0.0", "--base-url", target.base_url, "--json", env=target.env, cwd=work)
    assert list(work.iterdir()) == []  # no local copy
    doc = json.loads(proc.stdout)
    validate(doc, "pack-result.schema.json", "boxpack --publish --json")
    validate(doc["published"], "publish-result.schema.json", "boxpack --publish --json: published")
    assert [b["path"] for b in doc["boxes"]] == [None, None]
    assert "recorded 2 box(es) as org/sample 3.0.0" in proc.stderr.decode()
    # The same bytes as a box packed to a file: publishing changes where a box goes, not what it is.
    local = tmp_path / "local"
    run_boxpack(disk, "--provider", "libvirt", "--provider", "virtualbox", "-o", f"{local}/")
    for p in ("libvirt", "virtualbox"):
        assert target.read(f"{NAME}/3.0.0/{p}/amd64/vagrant.box") == (local / f"disk-{p}.box").read_bytes()
    assert assert_catalog_true(target) == doc["published"]["catalog"]


@pytest.mark.first_case_quick
def test_pack_dry_run_packs_but_sends_nothing(s3: Target, tmp_path: Path) -> None:
    disk = make_disk.make(tmp_path / "disk.img", data=2 * MIB)
    proc = run_boxpack(disk, "--provider", "libvirt", "--publish", s3.to, "--name", NAME, "--box-version", "1.0.0",
                       "--base-url", s3.base_url, "--dry-run", env=s3.env)
    planned = json.loads(proc.stdout)
    assert planned["versions"][0]["providers"][0]["checksum"] in proc.stderr.decode()
    assert s3.listing() == set()


@pytest.mark.parametrize("args, message", [
    (["-o", "x.box"], "-o is for box files; with --publish"),
    (["--catalog", "c.json"], "--catalog is for box files"),
    (["--verify"], "--verify is for box files"),
    (["--checksum-file"], "--checksum-file is for box files"),
])
def test_pack_publish_refuses_options_for_files(tmp_path: Path, sample_disk: Path, args: list[str], message: str) -> None:
    proc = run_boxpack(sample_disk, "--provider", "libvirt", "--publish", str(tmp_path), "--name", NAME, "--box-version",
                       "1.0.0", "--base-url", "https://x.org", *args, check=False, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr.decode() and proc.stderr.decode().count("\n") == 1


def test_errors_are_one_line_before_anything_is_sent(tmp_path: Path, boxes: dict[str, Path], _servers) -> None:
    def refused(code: int, *args: str, env: dict | None = None) -> str:
        proc = run_boxpack("publish", *args, check=False, env=env)
        err = proc.stderr.decode()
        assert proc.returncode == code and err.count("\n") == 1 and "Traceback" not in err, (proc.returncode, err)
        return err

    base = ["--name", NAME, "--box-version", "1.0.0", "--base-url", "https://x.org"]
    assert "no such directory" in refused(3, str(boxes["libvirt"]), "--to", str(tmp_path / "missing"), *base)
    assert "give s3://BUCKET/PREFIX or a directory" in refused(2, str(boxes["libvirt"]), "--to", "gs://b/p", *base)
    both = refused(2, str(boxes["libvirt"]), str(boxes["libvirt"]), "--to", str(tmp_path), *base)
    assert "two boxes for org/sample 1.0.0 libvirt amd64 in one run" in both
    assert "not ORG/NAME" in refused(2, str(boxes["libvirt"]), "--to", str(tmp_path), "--name", "nameonly", "--box-version", "1",
                                     "--base-url", "https://x.org")
    assert "not absolute" in refused(2, str(boxes["libvirt"]), "--to", str(tmp_path), *base[:-1], "boxes/")
    bare = tmp_path / "bare.box"
    run_boxpack(make_disk.make(tmp_path / "d.img", data=MIB), "--provider", "libvirt", "-o", bare)
    junk = tmp_path / "junk.box"
    junk.write_bytes(b"not a box")
    assert "junk.box" in refused(1, str(junk), "--to", str(tmp_path), *base)
    server = _servers("seaweedfs")
    env = {**server.env, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    assert "no S3 credentials" in refused(3, str(bare), "--to", "s3://nobucket/p", *base, env=env)
    assert "no such bucket 'nobucket'" in refused(3, str(bare), "--to", "s3://nobucket/p", *base, env=server.env)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".boxpack")] == []


def test_without_boto3_s3_targets_say_what_to_install(tmp_path: Path, boxes: dict[str, Path]) -> None:
    """boto3 is an optional extra: an s3:// target without it is one line naming the package; a directory
    target does not need it."""
    hidden = tmp_path / "no-boto3"
    hidden.mkdir()
    (hidden / "boto3.py").write_text("raise ImportError('boto3 is not installed here')\n")
    env = {"PYTHONPATH": f"{hidden}:{ROOT}"}
    proc = run_boxpack("publish", boxes["libvirt"], "--to", "s3://bucket/p", "--name", NAME, "--box-version", "1.0.0",
                       "--base-url", "https://x.org", env=env, check=False)
    assert proc.returncode == 4 and proc.stderr.decode() == "boxpack: error: s3:// targets need boto3: pip install 'boxpack[s3]'\n"
    site = tmp_path / "site"
    site.mkdir()
    run_boxpack("publish", boxes["libvirt"], "--to", site, "--name", NAME, "--box-version", "1.0.0",
                "--base-url", "https://x.org", env=env)
