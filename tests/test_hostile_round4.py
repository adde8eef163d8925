"""Hostile and unlucky input, round 4: boxpack mirror (and the catalogs publish writes) against catalogs and
servers made to mislead. The catalogs and their boxes come from a small HTTP server in this process, since
what it does (a redirect to ftp:, a short 206, a byte at a time, a token collector) is what no real server
does on purpose; the targets are real (a directory behind nginx where the result must download)."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import make_disk
import pytest
from conftest import MIB, Target, run_boxpack
from test_mirror import by_label, run_mirror
from test_publish import assert_catalog_true

Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


class Hostile:
    """A server answering each path as a test says; it keeps every request's path and headers."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        hostile = self

        class Answer(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                hostile.requests.append((self.path, dict(self.headers)))
                route = hostile.routes.get(self.path.split("?")[0])
                if route is None:
                    self.send_error(404)
                else:
                    route(self)

            do_HEAD = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def json(self, path: str, doc: object) -> str:
        self.routes[path] = lambda h: _send(h, json.dumps(doc).encode(), "application/json")
        return self.url + path

    def file(self, path: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        self.routes[path] = lambda h: _send(h, data, content_type)
        return self.url + path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _send(h: http.server.BaseHTTPRequestHandler, data: bytes, content_type: str, status: int = 200) -> None:
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(data)


def _redirect(location: str) -> Handler:
    def answer(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()
    return answer


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    server = Hostile()
    yield server
    server.close()


@pytest.fixture(scope="module")
def box(tmp_path_factory) -> bytes:
    d = tmp_path_factory.mktemp("round4")
    run_boxpack(make_disk.make(d / "d.img", data=MIB), "--provider", "libvirt", "-o", d / "b.box", "--arch", "amd64")
    return (d / "b.box").read_bytes()


def entry(url: str, data: bytes | None, provider: str = "libvirt", arch: str = "amd64", **extra: object) -> dict:
    checksum = {"checksum_type": "sha256", "checksum": hashlib.sha256(data).hexdigest()} if data is not None else {}
    return {"name": provider, "url": url, "architecture": arch, "default_architecture": True, **checksum, **extra}


def cat(name: str, versions: dict[str, list[dict]]) -> dict:
    return {"name": name, "versions": [{"version": v, "providers": p} for v, p in versions.items()]}


# --- security ----------------------------------------------------------------------------------------

def test_a_catalog_from_the_network_cannot_make_mirror_read_a_local_file(web: Target, hostile: Hostile, box: bytes,
                                                                         tmp_path: Path) -> None:
    secret = tmp_path / "credentials"
    secret.write_text("[default]\naws_secret_access_key = hunter2\n")
    good = hostile.file("/good.box", box)
    url = hostile.json("/c", cat("org/x", {"1.0": [entry(good, box)],
                                           "2.0": [entry(secret.as_uri(), None), entry("ftp://127.0.0.1/x", None, "virtualbox"),
                                                   entry("data:,hello", None, "hyperv")]}))
    report, _ = run_mirror(web, url, check_rc=1)
    boxes = by_label(report)
    assert boxes[("1.0", "libvirt", "amd64")]["action"] == "copied"
    for provider, scheme in (("libvirt", "file"), ("virtualbox", "ftp"), ("hyperv", "data")):
        got = boxes[("2.0", provider, "amd64")]
        assert got["action"] == "failed" and f"{scheme}: URLs are not fetched from a catalog from the network" in got["error"]
    assert not any(b"hunter2" in p.read_bytes() for p in web.root.rglob("*") if p.is_file())
    assert [v["version"] for v in assert_catalog_true(web, "org/x")["versions"]] == ["1.0"]


def test_a_redirect_goes_to_http_only(web: Target, hostile: Hostile, box: bytes, tmp_path: Path) -> None:
    hostile.routes["/b.box"] = _redirect("ftp://127.0.0.1:9/credentials")
    url = hostile.json("/c", cat("org/x", {"1.0": [entry(hostile.url + "/b.box", None)]}))
    report, _ = run_mirror(web, url, check_rc=1)
    assert "redirects to ftp:, which is not followed" in report["boxes"][0]["error"]


def test_the_token_goes_to_the_servers_host_only(web: Target, hostile: Hostile, box: bytes) -> None:
    good = hostile.file("/good.box", box)
    url = hostile.json("/c", cat("org/x", {"1.0": [entry(good, box)]}))
    env = {"VAGRANT_CLOUD_TOKEN": "secret-token", "VAGRANT_SERVER_URL": "https://vagrantcloud.com"}
    run_mirror(web, url, check_rc=0, env=env)
    assert hostile.requests and not any("Authorization" in headers for _, headers in hostile.requests)
    hostile.requests.clear()  # the server's own host does get it, for the catalog and for its boxes
    run_mirror(web, url, "--server", hostile.url, "--force", check_rc=0, env=env)
    assert all(headers.get("Authorization") == "Bearer secret-token" for _, headers in hostile.requests)


def test_the_name_asked_for_is_the_name_written(web: Target, hostile: Hostile, box: bytes) -> None:
    good = hostile.file("/good.box", box)
    hostile.json("/api/v2/vagrant/mine/box", cat("victim/box", {"1.0": [entry(good, box)]}))
    run_mirror(web, "mine/box", "--server", hostile.url, check_rc=0)
    assert (web.root / "mine/box/catalog.json").exists() and not (web.root / "victim").exists()
    assert assert_catalog_true(web, "mine/box")["name"] == "mine/box"


def test_a_catalog_from_the_internet_cannot_reach_private_addresses(hostile: Hostile, monkeypatch) -> None:
    """Every address here is loopback; the seam says which one counts as private: 127.0.0.1 (the hostile
    server) is 'the internet', and 127.0.0.2 is 'the private network'."""
    from boxpack.publishing import http as download
    from boxpack.publishing.mirror import entries

    monkeypatch.setattr(download, "not_public", lambda host: "127.0.0.2" if host == "127.0.0.2" else None)
    doc = cat("org/x", {"1.0": [entry("http://127.0.0.2:9/meta-data", None)]})
    _, (c,), _, _ = entries(doc, hostile.url + "/c", None)
    assert c.public_only
    with pytest.raises(download.NotFetched, match="127.0.0.2 is 127.0.0.2, not an internet address"):
        download.copy(c.source_url, lambda b: None, public_only=True)

    hostile.routes["/b.box"] = _redirect("http://127.0.0.2:9/latest/meta-data/iam")
    with pytest.raises(download.NotFetched, match="--allow-private-addresses"):
        download.copy(hostile.url + "/b.box", lambda b: None, public_only=True)
    _, (allowed,), _, _ = entries(doc, hostile.url + "/c", None, allow_private=True)
    assert not allowed.public_only
    # A catalog that is itself on a private network is the user's own: its boxes may be too.
    monkeypatch.setattr(download, "not_public", lambda host: "10.0.0.1")
    _, (own,), _, _ = entries(doc, "http://10.0.0.1/c", None)
    assert not own.public_only


# --- a catalog that would name a partial or wrong box -----------------------------------------------

def _ranges(data: bytes, step: int) -> Handler:
    """The whole box on a plain GET, but cut after step bytes; a Range request answered with a 206 of at most
    step bytes (Content-Range saying so), as a server with a part size does."""
    def answer(h: http.server.BaseHTTPRequestHandler) -> None:
        asked = h.headers.get("Range")
        start = int(asked.removeprefix("bytes=").split("-")[0]) if asked else 0
        part = data[start:start + step]
        h.send_response(206 if asked else 200)
        if asked:
            h.send_header("Content-Range", f"bytes {start}-{start + len(part) - 1}/{len(data)}")
            h.send_header("Content-Length", str(len(part)))
        else:
            h.send_header("Content-Length", str(len(data)))
            h.send_header("Connection", "close")
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(part)
        h.close_connection = True
    return answer


def test_a_short_206_is_not_the_end_of_the_box(web: Target, hostile: Hostile, box: bytes) -> None:
    step = len(box) // 5  # the first answer cut after a fifth, each 206 a fifth
    hostile.routes["/b.box"] = _ranges(box, step)
    url = hostile.json("/c", cat("org/x", {"1.0": [entry(hostile.url + "/b.box", None)]}))  # no checksum to catch it
    report, _ = run_mirror(web, url, check_rc=0)
    assert report["boxes"][0]["size"] == len(box)
    assert (web.root / "org/x/1.0/libvirt/amd64/vagrant.box").read_bytes() == box
    assert len([p for p, _ in hostile.requests if p == "/b.box"]) >= 5


def test_what_cannot_be_checked_is_not_published(web: Target, hostile: Hostile, box: bytes) -> None:
    login = hostile.file("/login", b"<!DOCTYPE html><html><body>Sign in</body></html>\n", "text/html")
    good = hostile.file("/good.box", box)
    url = hostile.json("/c", cat("org/x", {
        "1.0": [entry(good, box)],
        "2.0": [entry(good, None, checksum_type="crc32", checksum="deadbeef"), entry(login, None, "virtualbox")],
    }))
    report, _ = run_mirror(web, url, check_rc=1)
    boxes = by_label(report)
    assert "checksum type 'crc32' is not one Vagrant knows" in boxes[("2.0", "libvirt", "amd64")]["error"]
    assert "an HTML page" in boxes[("2.0", "virtualbox", "amd64")]["error"]
    assert [v["version"] for v in assert_catalog_true(web, "org/x")["versions"]] == ["1.0"]


# --- data loss, duplicates ----------------------------------------------------------------------------

def test_equal_versions_and_named_twice_are_reported_and_the_rest_is_mirrored(web: Target, hostile: Hostile,
                                                                            box: bytes) -> None:
    other = box[:-1] + bytes([box[-1] ^ 1])
    good, changed = hostile.file("/good.box", box), hostile.file("/other.box", other)
    url = hostile.json("/c", cat("org/x", {
        "1.0": [entry(good, box)], "1.0.0": [entry(good, box, "virtualbox")],
        "2.0": [entry(changed, other), entry(good, box)],
    }))
    report, _ = run_mirror(web, url, check_rc=1)
    failed = {(b["version"], b["provider"]): b["error"] for b in report["boxes"] if b["action"] == "failed"}
    assert "the same version as 1.0 to Vagrant" in failed[("1.0.0", "virtualbox")]
    assert "named again later in the catalog" in failed[("2.0", "libvirt")]
    doc = assert_catalog_true(web, "org/x")
    assert [(v["version"], p["checksum"]) for v in doc["versions"] for p in v["providers"]] == \
        [("1.0", hashlib.sha256(box).hexdigest()), ("2.0", hashlib.sha256(box).hexdigest())]  # the last, as Vagrant 2.3


# --- crashes, hangs ---------------------------------------------------------------------------------

def test_fields_of_the_wrong_type_and_odd_sources_are_one_line_each(web: Target, hostile: Hostile, box: bytes) -> None:
    good = hostile.file("/good.box", box)
    hostile.json("/api/v2/vagrant/org/ok", cat("org/ok", {"1.0": [entry(good, box)]}))
    hostile.json("/api/v2/vagrant/../..", cat("org/up", {"1.0": [entry(good, box)]}))  # sent as it is, unnormalised
    wrong = {"/t1": {"name": "org/t1", "description": {"x": 1}, "versions": [{"version": "1.0", "providers": 5}]},
             "/t2": cat("org/t2", {"1.0": [entry(good, None, checksum=5, checksum_type=["sha256"])]}),
             "/t3": cat("org/t3", {"9" * 5000: [entry(good, box)]}),
             "/t4": cat("org/t4", {"1.0": [entry(good, box, arch="X86_64")]})}
    for path, doc in wrong.items():
        hostile.json(path, doc)
    sources = [hostile.url + p for p in wrong] + ["../..", "org/ok"]
    proc = run_boxpack("mirror", *sources, "--server", hostile.url, "--to", web.to, "--base-url", web.base_url, "--json",
                       check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in err and "internal error" not in err, err
    report = json.loads(proc.stdout)
    assert any("/t1: version 1.0: providers is not a list" in e for e in report["errors"])
    assert any("is not one Vagrant reads" in e and len(e) < 300 for e in report["errors"])  # the 5,000 digits
    assert any("'..' cannot be part of a key" in e for e in report["errors"])
    actions = {b["name"]: (b["action"], b["error"]) for b in report["boxes"]}
    assert actions["org/t2"][0] == "copied"  # a checksum of the wrong type is no checksum: computed
    assert actions["org/t4"][0] == "failed" and "architecture 'X86_64'" in actions["org/t4"][1]
    assert actions["org/ok"] == ("copied", None)
    assert set(report["catalogs"]) == {"org/t2", "org/ok"}  # no empty catalog for the sources where all failed
    assert not (web.root / "org/t4").exists() and not (web.root / "org/t1").exists()


def test_a_catalog_of_millions_of_values_is_refused_before_it_takes_memory(web: Target, hostile: Hostile) -> None:
    import subprocess
    import sys

    hostile.file("/c", b"[" + b"0," * (9 * MIB) + b"0]", "application/json")  # 18 MiB: under Vagrant's 20 MiB
    # VmHWM is this process's peak since its exec (ru_maxrss would count the forked pytest's pages too).
    peak = ("import runpy, sys\nsys.argv[0] = 'boxpack'\ntry:\n    runpy.run_module('boxpack', run_name='__main__')\n"
            "finally:\n    print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", peak, "mirror", hostile.url + "/c", hostile.url + "/c", "--to", web.to,
                           "--base-url", web.base_url], capture_output=True, check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and err.count("more than 400000 JSON values") == 2, err
    assert int(err.split("VmHWM:")[1].split()[0]) < 150 * 1024, err  # KiB: parsed, two took 1 GiB


def test_a_long_version_is_one_line_in_publish_and_catalog_show(tmp_path: Path, box: bytes) -> None:
    path = tmp_path / "b.box"
    path.write_bytes(box)
    proc = run_boxpack("publish", path, "--to", str(tmp_path), "--base-url", "http://x.org", "--name", "org/x",
                       "--box-version", "9" * 5000, check=False)
    assert proc.returncode == 2 and len(proc.stderr) < 300 and b"longer than 128" in proc.stderr
    doc = cat("org/x", {"9" * 5000: [entry("http://x.org/b", box)]})
    (tmp_path / "c.json").write_text(json.dumps(doc))
    shown = run_boxpack("catalog", "show", tmp_path / "c.json", check=False)
    assert shown.returncode == 1 and b"Traceback" not in shown.stderr and len(shown.stderr) < 400, shown.stderr


def test_a_target_catalog_nested_deep_is_refused_before_any_upload(tmp_path: Path, box: bytes) -> None:
    deep: object = 1
    for _ in range(500):
        deep = {"x": deep}
    (tmp_path / "org/x").mkdir(parents=True)
    (tmp_path / "org/x/catalog.json").write_text(json.dumps({**cat("org/x", {}), "extra": deep}))
    path = tmp_path / "b.box"
    path.write_bytes(box)
    proc = run_boxpack("publish", path, "--to", str(tmp_path), "--base-url", "http://x.org", "--name", "org/x",
                       "--box-version", "1.0", check=False)
    assert proc.returncode == 1 and b"nested more than 32 deep" in proc.stderr, proc.stderr
    assert not (tmp_path / "org/x/1.0").exists()


def test_a_trickle_ends_at_the_timeout(web: Target, hostile: Hostile, box: bytes) -> None:
    def trickle(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(box)))
        h.end_headers()
        for i in range(len(box)):
            h.wfile.write(box[i:i + 1])
            h.wfile.flush()
            time.sleep(0.2)

    hostile.routes["/slow.box"] = trickle
    url = hostile.json("/c", cat("org/x", {"1.0": [entry(hostile.url + "/slow.box", box)]}))
    started = time.monotonic()
    report, _ = run_mirror(web, url, "--timeout", "2", check_rc=1)
    assert "not complete after 2 s (--timeout)" in report["boxes"][0]["error"]
    assert time.monotonic() - started < 30


def test_a_trickle_below_the_speed_limit_ends_long_before_the_timeout(web: Target, hostile: Hostile, box: bytes) -> None:
    """A byte every tenth of a second never trips a read timeout, and the default --timeout is 12 hours: the low-speed
    limit ends it (curl's --speed-limit and --speed-time)."""
    def trickle(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(box)))
        h.end_headers()
        try:
            for i in range(len(box)):
                h.wfile.write(box[i:i + 1])
                h.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass  # mirror gave up

    hostile.routes["/slow.box"] = trickle
    url = hostile.json("/c", cat("org/x", {"1.0": [entry(hostile.url + "/slow.box", box)]}))
    report, _ = run_mirror(web, url, "--speed-limit", "1000", "--speed-time", "2", check_rc=1)
    assert "slower than 1000 bytes/s for 2 s (--speed-limit, --speed-time)" in report["boxes"][0]["error"]


def test_a_busy_answer_for_a_signature_is_waited_out_as_for_its_box(web: Target, hostile: Hostile, box: bytes) -> None:
    """A stand-in HCP answering every 7th request 429 left boxes out: the probe for a box's .sig had a catalog's 3
    attempts. Three 429s in a row, then a 404 (no signature): the box is copied."""
    busy = []

    def sig(h: http.server.BaseHTTPRequestHandler) -> None:
        busy.append(h.path)
        if len(busy) <= 3:
            h.send_response(429)
            h.send_header("Retry-After", "0")
            h.send_header("Content-Length", "0")
            h.end_headers()
        else:
            h.send_error(404)

    hostile.file("/b.box", box)
    hostile.routes["/b.box.sig"] = sig
    url = hostile.json("/c", cat("org/x", {"1.0": [entry(hostile.url + "/b.box", box)]}))
    report, _ = run_mirror(web, url, check_rc=0)
    assert report["boxes"][0]["action"] == "copied" and len(busy) == 4


def test_a_lease_made_and_released_between_a_look_and_a_create_is_waited_out(tmp_path: Path) -> None:
    """Eight publishers on SeaweedFS (CI's slow tier): one found no lease, was refused creating it (another's), and
    found none again (released meanwhile); that was taken for SeaweedFS refusing a key other keys start with."""
    from boxpack.publishing.stores import open_target
    from boxpack.publishing.versioned import json_record

    store = open_target(str(tmp_path))
    real_put, raced = store.put, []

    def put(key: str, data: bytes, *args, **kw) -> bool:
        if kw.get("if_absent") and not raced:  # another publisher's lease, made and released in between
            raced.append(key)
            return False
        return real_put(key, data, *args, **kw)

    store.put = put  # type: ignore[method-assign]
    assert json_record(store, ".boxpack/leases/org/x.json").update(lambda doc: {"holder": "me"}) == {"holder": "me"}
    assert raced


def test_waits_are_capped_said_and_only_for_what_may_change(monkeypatch, caplog) -> None:
    import email.message
    import urllib.error

    from boxpack.errors import BadInput
    from boxpack.publishing import http as download

    msg = email.message.Message()
    msg["Retry-After"] = "soon"
    soon = urllib.error.HTTPError("https://x.org/b", 429, "Too Many Requests", msg, None)
    assert 0.25 <= download._wait(0, soon) <= 0.75  # not a number or a date: backoff
    msg.replace_header("Retry-After", "99999")
    slept: list[float] = []
    monkeypatch.setattr(download.time, "sleep", slept.append)
    download._retrying("https://x.org/b", 0, soon)
    assert slept == [download.MAX_WAIT] and "waiting 60 s before attempt 2 of 8" in caplog.text
    with pytest.raises(BadInput, match="unknown url type"):
        download._retrying("x://y", 0, urllib.error.URLError("unknown url type: x"))
    assert len(slept) == 1


def test_a_catalog_too_large_to_read_is_never_written(tmp_path: Path) -> None:
    from boxpack.errors import OutputFailed
    from boxpack.publishing.layout import CATALOG_LIMIT
    from boxpack.publishing.publish import PublishedCatalog
    from boxpack.publishing.stores import open_target

    published = PublishedCatalog(open_target(str(tmp_path)), "org/x")
    big = {**cat("org/x", {"1.0": [entry("http://x.org/b", b"")]}), "description": "x" * CATALOG_LIMIT}
    with pytest.raises(OutputFailed, match="more than the 20971520 Vagrant reads"):
        published.update(lambda doc: big)
    assert not (tmp_path / "org/x/catalog.json").exists()


# --- the store's word, not the catalog's -------------------------------------------------------------

def _publish(box: Path, target: Target, *args: str) -> dict:
    proc = run_boxpack("publish", box, "--to", target.to, "--base-url", target.base_url, "--name", "org/x",
                       "--box-version", "1.0", "--json", *args, env=target.env)
    return json.loads(proc.stdout)


def test_a_box_deleted_by_hand_is_sent_again(web: Target, box: bytes, tmp_path: Path) -> None:
    path = tmp_path / "b.box"
    path.write_bytes(box)
    _publish(path, web)
    (web.root / "org/x/1.0/libvirt/amd64/vagrant.box").unlink()
    assert [b["action"] for b in _publish(path, web)["boxes"]] == ["uploaded"]
    assert_catalog_true(web, "org/x")


def test_replacing_a_box_removes_its_other_checksum_files(web: Target, box: bytes, tmp_path: Path) -> None:
    first, second = tmp_path / "a.box", tmp_path / "b.box"
    first.write_bytes(box)
    second.write_bytes(box + b"\0" * 1024)  # a tar reader ignores zeros after the end
    _publish(first, web)
    _publish(second, web, "--checksum-type", "sha512", "--force")
    key = web.root / "org/x/1.0/libvirt/amd64"
    assert sorted(p.name for p in key.iterdir()) == ["vagrant.box", "vagrant.box.sha512"]  # no stale .sha256 to trust
    # mirror's skip check goes by the checksum file: a source naming the first box copies it again.
    src = tmp_path / "src.json"
    src.write_text(json.dumps(cat("org/x", {"1.0": [entry(first.as_uri(), box)]})))
    report, _ = run_mirror(web, str(src), "--force", check_rc=0)
    assert report["boxes"][0]["action"] == "copied"
    assert (key / "vagrant.box").read_bytes() == box
    assert_catalog_true(web, "org/x")


def _store(target: Target, monkeypatch):
    from boxpack.publishing.publish import open_store

    for k, v in target.env.items():
        monkeypatch.setenv(k, v)
    return open_store(target.to)


def _finish(store, data: bytes, force: bool):
    """A Publisher with one box written and placed at its key, its catalog not yet written."""
    from boxpack.publishing.publish import Publisher

    publisher = Publisher(store, "org/x", "http://x.invalid", force=force)
    publisher.plan("1.0", "libvirt", "amd64")
    upload = publisher.open("1.0", "libvirt", "amd64")
    upload.write(data)
    publisher.finish(upload, "1.0", "libvirt", "amd64", "sha256", hashlib.sha256(data).hexdigest())
    return publisher


@pytest.mark.first_case_quick
def test_two_forced_publishers_of_one_key_never_leave_a_catalog_naming_the_other_box(target: Target, box: bytes,
                                                                                   monkeypatch) -> None:
    """The interleaving that lied, held deterministically: A places its box, B replaces it, A writes its catalog."""
    from boxpack.errors import OutputFailed

    store = _store(target, monkeypatch)
    other = box + b"\0" * 512  # the same box to a reader, other bytes to a checksum
    first = _finish(store, box, force=True)
    second = _finish(store, other, force=True)
    with pytest.raises(OutputFailed, match="replaced or removed by another publisher"):
        first.commit()
    doc = second.commit()
    assert doc["versions"][0]["providers"][0]["checksum"] == hashlib.sha256(other).hexdigest()
    assert target.read("org/x/1.0/libvirt/amd64/vagrant.box") == other


def test_a_forced_replace_killed_before_the_box_is_placed_is_not_taken_for_done(web: Target, box: bytes,
                                                                             tmp_path: Path, monkeypatch) -> None:
    """The kill is held deterministically: the new box's commit raises as SIGKILL would stop it there."""
    store = _store(web, monkeypatch)
    _finish(store, box, force=False).commit()
    other = box + b"\0" * 512
    from boxpack.publishing.publish import Publisher

    publisher = Publisher(store, "org/x", "http://x.invalid", force=True)
    upload = publisher.open("1.0", "libvirt", "amd64")
    upload.write(other)
    monkeypatch.setattr(type(upload), "commit", lambda self, replace: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        publisher.finish(upload, "1.0", "libvirt", "amd64", "sha256", hashlib.sha256(other).hexdigest())
    monkeypatch.undo()
    key = web.root / "org/x/1.0/libvirt/amd64"
    assert (key / "vagrant.box").read_bytes() == box and not (key / "vagrant.box.sha256").exists()
    # The rerun (a forced mirror of the new box) sends it again instead of finding it "already mirrored".
    src = tmp_path / "src.json"
    (tmp_path / "other.box").write_bytes(other)
    src.write_text(json.dumps(cat("org/x", {"1.0": [entry((tmp_path / "other.box").as_uri(), other)]})))
    report, _ = run_mirror(web, str(src), "--force", check_rc=0)
    assert report["boxes"][0]["action"] == "copied" and (key / "vagrant.box").read_bytes() == other
    assert_catalog_true(web, "org/x")


def test_a_yank_with_delete_boxes_during_a_republish_does_not_bring_the_entry_back(web: Target, box: bytes,
                                                                                  monkeypatch) -> None:
    from boxpack.errors import OutputFailed
    from boxpack.publishing.publish import Publisher
    from boxpack.publishing.retention import yank

    store = _store(web, monkeypatch)
    _finish(store, box, force=False).commit()
    again = Publisher(store, "org/x", "http://x.invalid")  # the republish found its box "already there"...
    digest = hashlib.sha256(box).hexdigest()
    assert again.plan("1.0", "libvirt", "amd64", digest)
    assert again.holds("1.0", "libvirt", "amd64", len(box), "sha256", digest)
    again.unchanged("1.0", "libvirt", "amd64", len(box), "sha256", digest)
    yank(f"{web.to}/org/x/catalog.json", "1.0", delete_boxes=True)  # ...and then the box was yanked and deleted
    with pytest.raises(OutputFailed, match="replaced or removed"):
        again.commit()
    assert json.loads((web.root / "org/x/catalog.json").read_text())["versions"] == []


# --- the same box twice: no-ops, not refusals -------------------------------------------------------

def test_a_rerun_of_the_same_pack_and_publish_is_a_no_op(web: Target, tmp_path: Path) -> None:
    disk = make_disk.make(tmp_path / "disk.img", data=MIB)
    args = (disk, "--provider", "libvirt", "--publish", web.to, "--name", "org/x", "--box-version", "1.0",
            "--base-url", web.base_url, "--json")
    env = {"SOURCE_DATE_EPOCH": "1700000000"}  # the same input, the same bytes
    run_boxpack(*args, env=env)
    again = run_boxpack(*args, env=env, check=False)
    assert again.returncode == 0, again.stderr
    assert [b["action"] for b in json.loads(again.stdout)["published"]["boxes"]] == ["unchanged"]
    other = run_boxpack(*args, env={"SOURCE_DATE_EPOCH": "1700000001"}, check=False)  # other bytes: still refused
    assert other.returncode == 3 and b"use --force" in other.stderr
    assert_catalog_true(web, "org/x")


def test_two_publishers_of_the_same_box_at_once_both_succeed(web: Target, box: bytes, monkeypatch) -> None:
    """Held deterministically: the first has claimed the key and stops just before placing its box; the
    second places the same bytes; then the first goes on and finds the key taken."""
    from boxpack.publishing.publish import Publisher

    store = _store(web, monkeypatch)
    digest = hashlib.sha256(box).hexdigest()
    first, second = (Publisher(store, "org/x", "http://x.invalid") for _ in range(2))
    uploads = []
    for p in (first, second):
        p.plan("1.0", "libvirt", "amd64", digest)
        uploads.append(p.open("1.0", "libvirt", "amd64"))
        uploads[-1].write(box)
    go, waiting = threading.Event(), threading.Event()
    commit = type(uploads[0]).commit

    def held(self, replace: bool) -> None:
        if self is uploads[0]:
            waiting.set()
            go.wait(30)
        commit(self, replace)

    monkeypatch.setattr(type(uploads[0]), "commit", held)
    results: list = []
    worker = threading.Thread(target=lambda: results.append(
        first.finish(uploads[0], "1.0", "libvirt", "amd64", "sha256", digest)))
    worker.start()
    assert waiting.wait(30)
    assert second.finish(uploads[1], "1.0", "libvirt", "amd64", "sha256", digest).action == "uploaded"
    go.set()
    worker.join(30)
    assert [b.action for b in results] == ["unchanged"]
    first.commit()
    second.commit()
    assert (web.root / "org/x/1.0/libvirt/amd64/vagrant.box").read_bytes() == box


def test_a_catalog_of_thousands_of_entries_is_written_in_linear_time(tmp_path: Path, monkeypatch) -> None:
    """Counted, not timed: the RubyGems version keys computed while a run plans and commits its boxes grow
    with the entries, not with their square (a scan and a sort per entry made 8,000 entries 52 s of CPU)."""
    from boxpack import catalog
    from boxpack.publishing.publish import Publisher, open_store

    calls = 0
    key = catalog.version_key

    def counted(version: str) -> tuple:
        nonlocal calls
        calls += 1
        return key(version)

    monkeypatch.setattr(catalog, "version_key", counted)

    def publish(n: int) -> int:
        nonlocal calls
        (tmp_path / str(n)).mkdir(exist_ok=True)
        publisher = Publisher(open_store(str(tmp_path / str(n))), "org/x", "http://x.invalid")
        for i in range(n):
            data = b"box %d" % i
            publisher.plan(f"1.{i}", "libvirt", "amd64")
            upload = publisher.open(f"1.{i}", "libvirt", "amd64")
            upload.write(data)
            publisher.finish(upload, f"1.{i}", "libvirt", "amd64", "sha256", hashlib.sha256(data).hexdigest())
        calls = 0
        doc = publisher.commit()
        assert len(doc["versions"]) == n and doc["versions"][-1]["providers"][0]["checksum"] == hashlib.sha256(data).hexdigest()
        return calls

    small, large = publish(100), publish(400)
    assert large < 6 * small, (small, large)  # 4x the entries: linear is about 4x, quadratic 16x


def test_a_full_tmpdir_is_named_as_what_is_full(s3: Target, hostile: Hostile, box: bytes, tmp_path: Path) -> None:
    """An S3 part waits in TMPDIR; that disk full was retried as a network error, then blamed on the source
    ("BOX: cannot read"). Held with a real full disk: a 16 KiB tmpfs."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    full = tmp_path / "full"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", full], check=True)
    try:
        url = hostile.json("/c", cat("org/x", {"1.0": [entry(hostile.file("/b.box", box), box)]}))
        report, _ = run_mirror(s3, url, check_rc=1, env={"TMPDIR": str(full)})
        error = report["boxes"][0]["error"]
        assert f"{full}: cannot write the spool of an upload's part: No space left on device" in error, error
        (tmp_path / "b.box").write_bytes(box)
        proc = run_boxpack("publish", tmp_path / "b.box", "--to", s3.to, "--base-url", s3.base_url, "--name", "org/y", "--box-version", "1.0",
                           env={**s3.env, "TMPDIR": str(full)}, check=False)
        assert proc.returncode != 0 and b"cannot write the spool" in proc.stderr, proc.stderr
    finally:
        subprocess.run(["umount", full], check=True)


@pytest.mark.slow
def test_a_kill_loop_over_publish_force_mirror_and_remove_never_leaves_a_lie(target: Target, tmp_path: Path) -> None:
    """SIGKILL at random moments of publish, publish --force, mirror, mirror --force and catalog remove
    --delete-boxes, one after another on one box name: after every kill both catalogs Vagrant reads are
    whole, and every entry in each downloads to the bytes its checksum names. BOXPACK_KILL_SEED replays a run."""
    import random
    import signal
    import sys

    from test_publish import NAME, _big_box, served_catalog

    seed = int(os.environ.get("BOXPACK_KILL_SEED") or time.time_ns() % 10**9)
    rng = random.Random(seed)
    a, b = _big_box(tmp_path / "a.box", 20 * MIB), _big_box(tmp_path / "b.box", 20 * MIB)
    sources = []
    for i, (first, second) in enumerate(((a, b), (b, a))):
        doc = cat(NAME, {"2.0": [entry(str(first), first.read_bytes())], "2.1": [entry(str(second), second.read_bytes())]})
        sources.append(tmp_path / f"source{i}.json")
        sources[-1].write_text(json.dumps(doc))
    where = ["--to", target.to, "--base-url", target.base_url]
    published = f"{target.to}/{NAME}" if target.bucket else f"{target.root}/{NAME}/catalog.json"
    ops = {  # a forced run replaces the box the key holds with the other one, as often as not
        "publish": lambda: ["publish", a, "--name", NAME, "--box-version", "1.0", *where],
        "publish --force": lambda: ["publish", rng.choice((a, b)), "--name", NAME, "--box-version", "1.0", "--force", *where],
        "mirror": lambda: ["mirror", sources[0], *where],
        "mirror --force": lambda: ["mirror", rng.choice(sources), "--force", *where],
        "catalog remove": lambda: ["catalog", "remove", published, "--box-version", rng.choice(("1.0", "2.0")),
                                   "--delete-boxes"],
    }

    def start(op: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "boxpack", *map(str, ops[op]())], env={**os.environ, **target.env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    run_boxpack("publish", a, "--name", NAME, "--box-version", "0.9", *where, env=target.env)
    took = {}
    for op in ops:  # each once to the end: how long a run takes, so kills fall within runs
        started = time.monotonic()
        start(op).wait()
        took[op] = time.monotonic() - started
    for i in range(15):
        op = rng.choice(list(ops))
        proc = start(op)
        time.sleep(rng.uniform(0, took[op]))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        why = f"seed {seed}, kill {i}: {op}"
        try:
            doc = assert_catalog_true(target, NAME, same=False)  # both catalogs, each true
        except AssertionError as e:
            raise AssertionError(f"{why}: {e}") from None
        # S3 writes one object at a time: a kill between the catalog and its copy leaves the copy an update
        # behind (true too, as checked); the next run brings it up before it sends anything.
        assert target.bucket or served_catalog(target, f"api/v2/vagrant/{NAME}") == doc, why
    for op in ("publish --force", "mirror --force"):
        start(op).wait()
    doc = assert_catalog_true(target, NAME)
    assert [v["version"] for v in doc["versions"]] == ["0.9", "1.0", "2.0", "2.1"], seed
