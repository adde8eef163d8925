"""boxpack mirror, from a catalog in the shape HCP Vagrant's v2 endpoint serves (we cannot reach HCP from
here: the shape is served by a real nginx, with box URLs that redirect to "storage", a rate limit that
answers 429 with Retry-After, and HTML for clients that do not ask for JSON) into real stores; the real
Vagrant adds the mirrored boxes by name."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import make_disk
import pytest
import servers
from conftest import MIB, Target, Vagrant, run_boxpack
from netproxy import Proxy
from test_publish import assert_catalog_true

from boxpack import catalog
from boxpack.metadata import validate

NAME = "hcporg/box"

# An HCP-like server: /api/v2/vagrant/ORG/NAME (and /ORG/NAME) answer the catalog as JSON, but HTML to a
# client that does not send Accept: application/json (hashicorp/vagrant#13571); box URLs under
# /ORG/boxes/ redirect (302) to signed "storage" URLs; every location is rate limited and answers 429
# with Retry-After when a client goes too fast.
HCP_SERVER = r"""
    limit_req_zone $server_port zone=hcp:1m rate=5r/s;
    server {
        listen 80;
        root /srv/boxes;
        limit_req zone=hcp burst=2 nodelay;
        limit_req_status 429;
        absolute_redirect off;  # "Location: /storage/...": through whatever relay the client came
        error_page 429 @slow;
        location @slow {
            add_header Retry-After 1 always;
            return 429 "slow down\n";
        }
        location ~ ^/(?:api/v2/vagrant/)?(hcporg)/(box)$ {
            if ($http_accept !~ "application/json") {
                return 200 "<html><body>HCP Vagrant</body></html>\n";
            }
            default_type application/json;
            try_files /catalog.json =404;
        }
        location ~ ^/hcporg/boxes/(.*)$ {
            return 302 /storage/$1?X-Amz-Signature=0123456789abcdef;
        }
        location /storage/ {
            default_type application/octet-stream;
        }
    }
"""


class Hcp:
    """The fake HCP: its URL (a TCP relay in front of nginx, which counts, slows or cuts what passes), the
    boxes it serves and the catalog."""

    def __init__(self, proxy: Proxy, root: Path, doc: dict, files: dict[tuple[str, str, str], Path]) -> None:
        self.proxy, self.url, self.root, self.doc, self.files = proxy, proxy.url, root, doc, files

    def box(self, version: str, provider: str, arch: str) -> bytes:
        return self.files[(version, provider, arch)].read_bytes()


def _provider(name: str, arch: str, url: str, data: bytes | None, default: bool, checksum: str | None = "ok") -> dict:
    digest = hashlib.sha256(data).hexdigest() if data is not None else "0" * 64
    return {
        "name": name, "url": url, "architecture": arch, "default_architecture": default,
        "checksum": None if checksum is None else ("f" * 64 if checksum == "wrong" else digest),
        "checksum_type": None if checksum is None else "sha256",
        "hosted": True, "hosted_token": None, "original_url": None, "download_url": url,
        "created_at": "2026-09-01T10:00:00.000Z", "updated_at": "2026-09-01T10:00:00.000Z",
    }


@pytest.fixture(scope="module")
def box_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("hcpboxes")
    files = {}
    for i, provider in enumerate(("libvirt", "virtualbox", "hyperv")):
        disk = make_disk.make(d / f"d{i}.img", data=(2 + i) * MIB)
        files[provider] = d / f"{provider}.box"
        run_boxpack(disk, "--provider", provider, "-o", files[provider], "--arch", "amd64")
    return files


@pytest.fixture
def hcp(tmp_path: Path, box_files: dict[str, Path]):
    """Six entries over two versions: four good, one with a wrong checksum, one whose box is gone (404),
    and one of the good ones without a checksum, as HCP serves some."""
    root = tmp_path / "hcp"
    storage = root / "storage" / "box" / "versions"
    port = servers.free_port()
    proxy = Proxy("127.0.0.1", port)
    base = proxy.url
    files: dict[tuple[str, str, str], Path] = {}
    entries = [  # version, provider, arch, file, default, checksum
        ("1.0.0", "libvirt", "amd64", "libvirt", True, "ok"),
        ("1.0.0", "virtualbox", "amd64", "virtualbox", True, "ok"),
        ("1.1.0", "libvirt", "arm64", "libvirt", False, "wrong"),
        ("1.1.0", "libvirt", "amd64", "libvirt", True, "ok"),
        ("1.1.0", "virtualbox", "amd64", None, True, "ok"),  # 404
        ("1.1.0", "hyperv", "amd64", "hyperv", True, None),  # no checksum
    ]
    versions: dict[str, list] = {}
    for version, provider, arch, file, default, checksum in entries:
        path = storage / version / "providers" / provider / arch / "vagrant.box"
        data = None
        if file:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(box_files[file].read_bytes())
            files[(version, provider, arch)] = path
            data = path.read_bytes()
        url = f"{base}/hcporg/boxes/box/versions/{version}/providers/{provider}/{arch}/vagrant.box"
        versions.setdefault(version, []).append(_provider(provider, arch, url, data, default, checksum))
    doc = {
        "name": NAME, "short_description": "a test box", "description": "A box served the way HCP serves them.",
        "versions": [{"version": v, "status": "active", "description_html": f"<p>release {v}</p>",
                      "description_markdown": f"release {v}", "providers": p} for v, p in versions.items()],
    }
    (root / "catalog.json").write_text(json.dumps(doc))
    block = HCP_SERVER.replace("listen 80;", f"listen 127.0.0.1:{port};").replace("root /srv/boxes;", f"root {root};")
    work = tmp_path / "hcp-nginx"
    (work / "tmp").mkdir(parents=True)
    conf = work / "nginx.conf"
    conf.write_text(servers.NGINX_MAIN.format(d=work, server=block, workers=1))
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    servers._wait_http(f"http://127.0.0.1:{port}/storage/", 30, proc)
    yield Hcp(proxy, root, doc, files)
    proxy.close()
    servers._stop([proc])


def run_mirror(target: Target, *args: str, check_rc: int | None = None, env: dict | None = None) -> tuple[dict, str]:
    proc = run_boxpack("mirror", *args, "--to", target.to, "--base-url", target.base_url, "--json",
                       env={**target.env, **(env or {})}, check=False)
    assert proc.returncode in (0, 1), proc.stderr.decode()
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stderr.decode()
    doc = json.loads(proc.stdout)
    validate(doc, "mirror-result.schema.json", "boxpack mirror --json")
    return doc, proc.stderr.decode()


def by_label(report: dict) -> dict[tuple[str, str, str], dict]:
    return {(b["version"], b["provider"], b["architecture"]): b for b in report["boxes"]}


@pytest.mark.first_case_quick("vagrant")
def test_mirror_from_the_hcp_shape_into_each_target(target: Target, hcp: Hcp, tmp_path: Path, vagrant: Vagrant) -> None:
    report, err = run_mirror(target, NAME, "--server", hcp.url, check_rc=1)
    assert ' 429 ' in (hcp.root.parent / "hcp-nginx" / "access.log").read_text()  # it was told to slow down, and did
    boxes = by_label(report)
    assert {k: b["action"] for k, b in boxes.items()} == {
        ("1.0.0", "libvirt", "amd64"): "copied", ("1.0.0", "virtualbox", "amd64"): "copied",
        ("1.1.0", "libvirt", "arm64"): "failed", ("1.1.0", "libvirt", "amd64"): "copied",
        ("1.1.0", "virtualbox", "amd64"): "failed", ("1.1.0", "hyperv", "amd64"): "copied",
    }
    assert "the catalog says ffff" in boxes[("1.1.0", "libvirt", "arm64")]["error"]
    assert "404" in boxes[("1.1.0", "virtualbox", "amd64")]["error"]
    hyperv = boxes[("1.1.0", "hyperv", "amd64")]
    assert hyperv["computed"] and hyperv["checksum"] == hashlib.sha256(hcp.box("1.1.0", "hyperv", "amd64")).hexdigest()
    assert "sha256 computed (the source gives none)" in err and "FAILED" in err
    quiet = run_boxpack("mirror", NAME, "--server", hcp.url, "--to", target.to, "--base-url", target.base_url, "-q",
                        env=target.env, check=False)  # a rerun: the failures again, and only they, even with -q
    assert quiet.returncode == 1 and sorted(line.split(": FAILED")[0] for line in quiet.stderr.decode().splitlines()) == [
        f"boxpack: mirror: {NAME} 1.1.0 libvirt arm64", f"boxpack: mirror: {NAME} 1.1.0 virtualbox amd64"], quiet.stderr
    doc = assert_catalog_true(target, NAME)  # every URL downloads with its checksum; the failures are left out
    assert doc["description"] == hcp.doc["description"]
    assert [(v["version"], v.get("description")) for v in doc["versions"]] == [("1.0.0", "release 1.0.0"), ("1.1.0", "release 1.1.0")]
    got = {(v["version"], p["name"], p["architecture"], p["default_architecture"]) for v in doc["versions"] for p in v["providers"]}
    assert got == {("1.0.0", "libvirt", "amd64", True), ("1.0.0", "virtualbox", "amd64", True),
                   ("1.1.0", "libvirt", "amd64", True), ("1.1.0", "hyperv", "amd64", True)}
    for v in doc["versions"]:
        for p in v["providers"]:
            assert p["url"].startswith(target.base_url + "/") and catalog.check(doc) == []
            assert target.read(f"{NAME}/{v['version']}/{p['name']}/{p['architecture']}/vagrant.box") == \
                hcp.box(v["version"], p["name"], p["architecture"])
    # The real Vagrant finds the mirrored box by name, and refuses it once changed.
    home = tmp_path / "vagrant.d"
    added = vagrant(home, "box", "add", NAME, "--provider", "libvirt", server=target.base_url)
    assert added.returncode == 0 and "(v1.1.0)" in added.stdout, added.stdout + added.stderr
    key = f"{NAME}/1.0.0/libvirt/amd64/vagrant.box"
    changed = bytearray(target.read(key))
    changed[len(changed) // 2] ^= 0xFF
    target.write(key, bytes(changed))
    refused = vagrant(tmp_path / "fresh.d", "box", "add", NAME, "--provider", "libvirt", "--box-version", "1.0.0",
                      server=target.base_url)
    assert refused.returncode != 0 and "checksum" in (refused.stdout + refused.stderr).lower()


def test_a_rerun_skips_what_is_mirrored_and_sends_only_the_rest(web: Target, hcp: Hcp) -> None:
    run_mirror(web, NAME, "--server", hcp.url, check_rc=1)
    first = hcp.proxy.sent_to_client
    hcp.proxy.reset()
    report, err = run_mirror(web, NAME, "--server", hcp.url, check_rc=1)
    actions = {k: b["action"] for k, b in by_label(report).items()}
    assert sorted(actions.values()) == ["failed", "failed", "skipped", "skipped", "skipped", "skipped"]
    wrong = len(hcp.box("1.1.0", "libvirt", "arm64"))
    # Again: the catalog, one HEAD for the entry without a checksum, and the box that failed its checksum.
    assert wrong <= hcp.proxy.sent_to_client < wrong + 64 * 1024 < first, (hcp.proxy.sent_to_client, first)
    assert "already mirrored" in err
    assert_catalog_true(web, NAME)
    planned = run_boxpack("mirror", NAME, "--server", hcp.url, "--to", web.to, "--base-url", web.base_url, "--dry-run",
                          check=False).stdout.decode()  # a dry run says it the same way
    assert planned.count("  already mirrored  ") == 4 and "already there" not in planned


def test_a_download_cut_midway_continues_with_range(web: Target, hcp: Hcp) -> None:
    # Every connection is cut after 1 MiB of its response; each download continues from where it stopped.
    hcp.proxy.cut = lambda n: MIB
    report, _ = run_mirror(web, NAME, "--server", hcp.url, "--provider", "libvirt", "--architecture", "amd64",
                           "--jobs", "1", check_rc=0)
    cutting = hcp.proxy
    sizes = [len(hcp.box(v, "libvirt", "amd64")) for v in ("1.0.0", "1.1.0")]
    assert [b["action"] for b in report["boxes"]] == ["copied", "copied"]
    assert cutting.connections > sum(s // MIB for s in sizes)  # the cuts happened, and were resumed
    assert cutting.sent_to_client < sum(sizes) * 1.02 + 64 * 1024, (cutting.sent_to_client, sizes)  # not sent twice
    assert_catalog_true(web, NAME)


def _complete(target: Target) -> set[str]:
    """VERSION/PROVIDER of the boxes at their keys beside their checksum files (a kill between the checksum
    file's claim and the box's placing leaves the checksum file alone, and that box is not done)."""
    held = target.listing()
    return {k.rsplit("/", 4)[1] + "/" + k.rsplit("/", 4)[2] for k in held if k.endswith("vagrant.box") and f"{k}.sha256" in held}


@pytest.mark.slow
def test_sigkill_midway_then_a_rerun_finishes_with_the_same_result(target: Target, hcp: Hcp, tmp_path: Path,
                                                                   _servers) -> None:
    hcp.proxy.rate = 2 * MIB
    proc = subprocess.Popen([sys.executable, "-m", "boxpack", "mirror", NAME, "--server", hcp.url, "--to", target.to,
                             "--base-url", target.base_url, "--jobs", "1", "-q"],
                            env={**os.environ, **target.env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not _complete(target):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    hcp.proxy.rate = None
    done = _complete(target)
    assert done, "killed before any box was complete"
    time.sleep(0.5)  # the relay's connections from the killed run are closed
    hcp.proxy.reset()
    counting = hcp.proxy
    report, _ = run_mirror(target, NAME, "--server", hcp.url, check_rc=1)
    copied = [b for b in report["boxes"] if b["action"] == "copied"]
    skipped = [b for b in report["boxes"] if b["action"] == "skipped"]
    assert len(skipped) == len(done) and len(copied) + len(skipped) == 4
    # Only the boxes that were not complete (and the one that fails its checksum) came over again.
    wrong = len(hcp.box("1.1.0", "libvirt", "arm64"))
    expected = sum(b["size"] for b in copied) + wrong
    assert expected <= counting.sent_to_client < expected + 64 * 1024, (counting.sent_to_client, expected)
    # The same as a mirror that was never interrupted.
    fresh = Target("dir", str(tmp_path / "fresh"), target.base_url, {}, None, root=tmp_path / "fresh")
    fresh.root.mkdir()
    run_mirror(fresh, NAME, "--server", hcp.url, check_rc=1)
    doc = assert_catalog_true(target, NAME)
    assert doc == json.loads((fresh.root / NAME / "catalog.json").read_text())
    for key in fresh.listing():
        if key.endswith(".box"):
            assert target.read(key) == fresh.read(key)


def test_dry_run_sizes_every_box_and_sends_nothing(web: Target, hcp: Hcp) -> None:
    counting = hcp.proxy
    proc = run_boxpack("mirror", NAME, "--server", hcp.url, "--to", web.to, "--base-url", web.base_url, "--dry-run",
                       check=False)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 1, err  # the box that is gone fails already: its HEAD is a 404
    total = sum(len(hcp.box(*k)) for k in hcp.files)
    assert f"would copy 5 box(es), {total / MIB:.1f} MiB" in err and "1 failed, 5 planned" in err
    assert out.count("  copy  ") == 5 and "fails: " in out and "404" in out
    assert counting.sent_to_client < 64 * 1024  # no box was downloaded
    assert web.listing() == set()


def test_sources_from_a_list_a_file_and_a_file_url(web: Target, hcp: Hcp, tmp_path: Path) -> None:
    """A local catalog whose entries are file:// URLs (a mirror of a mirror), given three ways."""
    local = tmp_path / "local.json"
    doc = {"name": "org/local", "versions": [{"version": "2.0", "providers": [
        {"name": "libvirt", "url": hcp.files[("1.0.0", "libvirt", "amd64")].as_uri(), "checksum_type": "sha256",
         "checksum": hashlib.sha256(hcp.box("1.0.0", "libvirt", "amd64")).hexdigest()}]}]}
    local.write_text(json.dumps(doc))
    listing = tmp_path / "list.txt"
    listing.write_text(f"# our boxes\n{local}\n\n{local.as_uri()}  # the same again\n")
    report, _ = run_mirror(web, "--from-file", str(listing), check_rc=0)
    assert [b["action"] for b in report["boxes"]] == ["copied"]  # named twice, copied once
    mirrored = assert_catalog_true(web, "org/local")
    assert mirrored["versions"][0]["providers"][0]["architecture"] == "unknown"  # as the source had it, made explicit
    assert mirrored["versions"][0]["providers"][0]["default_architecture"] is True


def test_verify_in_the_stream_reports_and_require_valid_leaves_out(web: Target, tmp_path: Path) -> None:
    from conftest import write_box

    good = tmp_path / "good.box"
    run_boxpack(make_disk.make(tmp_path / "d.img", data=MIB), "--provider", "libvirt", "-o", good)
    bad = write_box(tmp_path / "bad.box", [("metadata.json", b'{"provider": "libvirt", "format": "qcow2", "virtual_size": 1}')])
    src = tmp_path / "src.json"
    entries = [{"name": n, "url": p.as_uri(), "architecture": "amd64", "default_architecture": True,
                "checksum_type": "sha256", "checksum": hashlib.sha256(p.read_bytes()).hexdigest()}
               for n, p in (("libvirt", good), ("virtualbox", bad))]
    src.write_text(json.dumps({"name": "org/v", "versions": [{"version": "1.0", "providers": entries}]}))
    report, err = run_mirror(web, str(src), "--verify", check_rc=0)
    reported = {b["provider"]: b for b in report["boxes"]}
    assert [f for f in reported["libvirt"]["findings"] if f["severity"] == "error"] == []
    assert any(f["severity"] == "error" for f in reported["virtualbox"]["findings"])
    assert "verify: ERROR" in err and reported["virtualbox"]["action"] == "copied"  # reported, not refused
    strict = Target("nginx", str(tmp_path / "strict"), web.base_url, {}, None, root=tmp_path / "strict")
    strict.root.mkdir()
    report, _ = run_mirror(strict, str(src), "--verify", "--require-valid", check_rc=1)
    assert {b["provider"]: b["action"] for b in report["boxes"]} == {"libvirt": "copied", "virtualbox": "failed"}
    assert [p["name"] for p in json.loads((strict.root / "org/v/catalog.json").read_text())["versions"][0]["providers"]] == ["libvirt"]


def test_bad_sources_and_options_are_one_line(web: Target, tmp_path: Path) -> None:
    def refused(code: int, *args: str) -> str:
        proc = run_boxpack("mirror", *args, "--to", web.to, "--base-url", web.base_url, check=False)
        err = proc.stderr.decode()
        assert proc.returncode == code and "Traceback" not in err, (proc.returncode, err)
        return err

    assert "no SOURCE given" in refused(2)
    assert "--versions 'some'" in refused(2, "org/x", "--versions", "some")
    junk = tmp_path / "junk.json"
    junk.write_text("[1, 2]")
    assert "not a catalog" in refused(1, str(junk))
    assert "no catalog at http://127.0.0.1:9" in refused(1, "org/x", "--server", "http://127.0.0.1:9")


def test_a_429_waits_as_long_as_the_server_says() -> None:
    """Retry-After in seconds or as a date (RFC 9110), else Vagrant Cloud's X-RateLimit-Reset (epoch seconds);
    nginx's own 429 with Retry-After is exercised by every mirror above."""
    import email.message
    import email.utils
    import urllib.error

    from boxpack.publishing.http import MAX_WAIT, _wait

    def answer(**headers: str) -> urllib.error.HTTPError:
        msg = email.message.Message()
        for k, v in headers.items():
            msg[k.replace("_", "-")] = v
        return urllib.error.HTTPError("https://x.org/b", 429, "Too Many Requests", msg, None)

    assert _wait(0, answer(Retry_After="7")) == 7
    assert 8 <= _wait(0, answer(Retry_After=email.utils.formatdate(time.time() + 10, usegmt=True))) <= 10
    assert 18 <= _wait(0, answer(X_RateLimit_Reset=str(int(time.time()) + 20))) <= 20
    assert _wait(0, answer(Retry_After="86400")) == MAX_WAIT
    assert 0.25 <= _wait(0, answer()) <= 0.75  # no word from the server: backoff with jitter
