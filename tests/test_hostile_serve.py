"""`boxpack serve` attacked as an attacker and an unlucky operator would (issue 48): one reproducer per case, each of
which failed before its fix. Races are held with events on the store's calls (inprocess.Held), never with
sleeps; what holds across worker processes runs on `boxpack serve` itself."""

from __future__ import annotations

import base64
import hashlib
import json

import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path

import make_disk
import pytest
from conftest import MIB, Target, run_boxpack, s3_target, writing
from inprocess import Held, InProcess, raw
from served import Served, get, publish, token

from boxpack.publishing import access
from boxpack.publishing.stores.directory import DirectoryStore

NAME = "acme/debian"


@pytest.fixture(scope="module")
def boxes(tmp_path_factory) -> list[bytes]:
    """Two libvirt boxes of other bytes."""
    d = tmp_path_factory.mktemp("hostile-serve")
    for i, size in enumerate((MIB, 2 * MIB)):
        run_boxpack(make_disk.make(d / f"{i}.img", data=size), "--provider", "libvirt", "-o", d / f"{i}.box", "--arch", "amd64")
    return [(d / f"{i}.box").read_bytes() for i in range(2)]


@pytest.fixture(scope="module")
def box(boxes: list[bytes]) -> bytes:
    return boxes[0]


@pytest.fixture
def site(tmp_path: Path) -> Held:
    root = tmp_path / "site"
    root.mkdir()
    return Held(DirectoryStore(root))


@pytest.fixture
def server(site: Held):
    served = InProcess(site, fresh=0.0)
    yield served
    served.stop()


def call(url: str, method: str = "GET", body: object = None, tok: str | None = None, data: bytes | None = None,
         timeout: float = 60, **headers: str) -> tuple[int, dict, bytes]:
    if tok:
        headers.setdefault("Authorization", f"Bearer {tok}")
    if body is not None:
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, method=method, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def api(server: InProcess, tok: str, method: str, path: str, body: object = None) -> dict:
    status, _, data = call(f"{server.url}/api/v2{path}", method, body, tok)
    assert status == 200, (method, path, status, data)
    return json.loads(data)


def made(server: InProcess, tok: str, version: str = "1.0.0", provider: str = "libvirt", private: bool = False,
         **fields: object) -> None:
    """A box (created if need be, public unless private), a version and a provider declared through the API."""
    box = {"username": "acme", "name": "debian", "is_private": bool(private)}
    api(server, tok, "POST", "/boxes", {"box": box})
    api(server, tok, "POST", f"/box/{NAME}/versions", {"version": {"version": version}})
    api(server, tok, "POST", f"/box/{NAME}/version/{version}/providers",
        {"provider": {"name": provider, "architecture": "amd64", **fields}})


def declared(url: str, tok: str) -> str:
    """A box, its version 1.0.0 and its libvirt amd64 provider made through the API of the server at url; the
    API's base URL."""
    base = f"{url}/api/v2"
    for path, body in (("/boxes", {"box": {"username": "acme", "name": "debian", "is_private": False}}),
                       (f"/box/{NAME}/versions", {"version": {"version": "1.0.0"}}),
                       (f"/box/{NAME}/version/1.0.0/providers", {"provider": {"name": "libvirt", "architecture": "amd64"}})):
        assert call(base + path, "POST", body, tok)[0] == 200
    return base


def upload_path(server: InProcess, tok: str, version: str = "1.0.0", provider: str = "libvirt") -> str:
    where = api(server, tok, "GET", f"/box/{NAME}/version/{version}/provider/{provider}/amd64/upload/direct")
    return where["upload_path"].removeprefix(server.url)


def uploaded(server: InProcess, tok: str, data: bytes, version: str = "1.0.0", provider: str = "libvirt") -> tuple[int, bytes]:
    status, _, answer = call(server.url + upload_path(server, tok, version, provider), "PUT", data=data)
    return status, answer


class HalfUpload:
    """An upload whose client has sent half the box and holds the rest until finish()."""

    def __init__(self, server: InProcess, path: str, data: bytes) -> None:
        self.data = data
        self.sock = socket.create_connection(("127.0.0.1", server.port), 60)
        self.sock.sendall(f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                          + data[:len(data) // 2])

    def finish(self) -> bool:
        """Whether the box was taken: a 200 saying so (a refused box is answered 200 with success false, as
        storage answers an upload on HCP, and its callback says why)."""
        self.sock.sendall(self.data[len(self.data) // 2:])
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            got = self.sock.recv(65536)
            if not got:
                break
            answer += got
        self.sock.close()
        return answer.startswith(b"HTTP/1.1 200") and json.loads(answer.split(b"\r\n\r\n", 1)[1]).get("success") is True


def write_token(site: Held, scope: str = "acme", right: str = "write") -> str:
    return access.create_token(site.store, scope, right)[0]


def box_url(server: InProcess, version: str = "1.0.0", arch: str = "amd64") -> str:
    return f"{server.url}/{NAME}/{version}/libvirt/{arch}/vagrant.box"


# --- security -------------------------------------------------------------------------------------------------

def test_a_cross_site_form_cannot_make_a_private_box_public(site: Held, server: InProcess) -> None:
    """What a page on any site can make a browser send: a text/plain form POST, the token as the Basic password the
    browser keeps for the server's pages, and an Origin that is not the server's."""
    tok = write_token(site)
    made(server, tok, private=True)
    field = '{"username":"acme","name":"debian","is_private":false,"x":"'
    basic = base64.b64encode(f"x:{tok}".encode()).decode()
    for prefix in ("/api/v1", "/api/v2"):
        status, _, _ = call(f"{server.url}{prefix}/boxes", "POST", data=(field + '="}').encode(),
                            **{"Content-Type": "text/plain", "Authorization": f"Basic {basic}",
                               "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
        assert status >= 400, status
        status, _, _ = call(f"{server.url}{prefix}/box/{NAME}", "PUT", data=b'{"box": {"is_private": false}}',
                            tok=tok, **{"Content-Type": "text/plain", "Origin": "https://evil.example"})
        assert status >= 400, status
    assert access.is_private(site.store, NAME)


@pytest.mark.parametrize("what", ["box", "version", "provider"])
def test_a_delete_during_an_upload_does_not_bring_the_box_back_public(site: Held, server: InProcess, box: bytes,
                                                                      what: str) -> None:
    tok = write_token(site)
    made(server, tok, private=True)
    half = HalfUpload(server, upload_path(server, tok), box)
    path = {"box": f"/box/{NAME}", "version": f"/box/{NAME}/version/1.0.0",
            "provider": f"/box/{NAME}/version/1.0.0/provider/libvirt/amd64"}[what]
    assert call(f"{server.url}/api/v2{path}", "DELETE", tok=tok)[0] == 200
    assert not half.finish()
    assert get(box_url(server))[0] == 404 and get(f"{server.url}/{NAME}")[0] == 404
    assert not site.store.stat(f"{NAME}/1.0.0/libvirt/amd64/vagrant.box")
    if what == "box":
        assert site.store.get(".boxpack/boxes/acme/debian.json", 4096) is None


def test_an_upload_url_dies_with_its_token_and_its_secret_stays_out_of_the_log(tmp_path: Path, web: Target,
                                                                               box: bytes) -> None:
    served = Served(web, tmp_path, workers=1)
    try:
        tok = token(web, "acme", "--write")
        base = declared(served.url, tok)
        ticket = json.loads(call(f"{base}/box/{NAME}/version/1.0.0/provider/libvirt/amd64/upload", tok=tok)[2])["upload_path"]
        run_boxpack("serve", "token", "revoke", tok.split("_")[1], "--store", web.to)
        status, _, _ = call(ticket, "PUT", data=box)
        assert status in (401, 403, 404), status
        secret = ticket.rsplit("/", 1)[1]
        assert secret not in served.log.read_text()
    finally:
        served.stop()


def test_a_private_name_and_a_missing_one_answer_alike(site: Held, server: InProcess, box: bytes) -> None:
    tok = write_token(site)
    made(server, tok, private=True)
    assert uploaded(server, tok, box)[0] == 200
    api(server, tok, "PUT", f"/box/{NAME}/version/1.0.0/release")
    access.set_visibility(site.store, "hidden", True)
    access.create_token(site.store, "other", "read")
    other = access.create_token(site.store, "other", "read")[0]
    pairs = [(f"/{NAME}", "/acme/nothere"), (f"/api/v2/vagrant/{NAME}", "/api/v2/vagrant/acme/nothere"),
             (f"/{NAME}/1.0.0/libvirt/amd64/vagrant.box", "/acme/nothere/1.0.0/libvirt/amd64/vagrant.box"),
             (f"/api/v1/box/{NAME}", "/api/v1/box/acme/nothere"), (f"/api/v2/box/{NAME}", "/api/v2/box/acme/nothere"),
             ("/acme", "/nobody"), ("/hidden", "/nobody")]
    for who in (None, other):
        for accept in ("application/json", "text/html"):
            for private, missing in pairs:
                a, b = call(server.url + private, tok=who, Accept=accept), call(server.url + missing, tok=who, Accept=accept)
                assert (a[0], a[2]) == (b[0], b[2]), (who, accept, private, a[0], b[0])


def test_a_refused_update_changes_nothing(site: Held, server: InProcess) -> None:
    tok = write_token(site)
    access.set_visibility(site.store, "acme", True)
    status, _, _ = call(f"{server.url}/api/v2/box/acme/later", "PUT", {"box": {"is_private": False}}, tok)
    assert status == 404
    assert site.store.get(".boxpack/visibility/acme/later.json", 4096) is None


def test_a_symlink_in_a_directory_store_is_not_followed(site: Held, server: InProcess, box: bytes, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"outside the store")
    tok = write_token(site)
    made(server, tok)
    assert uploaded(server, tok, box)[0] == 200
    api(server, tok, "PUT", f"/box/{NAME}/version/1.0.0/release")
    key = site.store.root / NAME / "1.0.0/libvirt/amd64/vagrant.box"
    key.unlink()
    key.symlink_to(secret)
    status, _, data = get(box_url(server))
    assert status == 404 and b"outside" not in data


def test_an_unreleased_or_revoked_box_needs_a_token_and_a_public_one_is_not_cached_for_a_year(
        site: Held, server: InProcess, box: bytes) -> None:
    tok = write_token(site)
    made(server, tok)
    assert uploaded(server, tok, box)[0] == 200
    assert get(box_url(server))[0] == 404  # not released
    assert get(box_url(server), tok)[0] == 200  # its publisher may fetch it
    api(server, tok, "PUT", f"/box/{NAME}/version/1.0.0/release")
    status, headers, _ = get(box_url(server), method="HEAD")
    assert status == 200 and "immutable" not in headers["cache-control"] and "31536000" not in headers["cache-control"]
    api(server, tok, "PUT", f"/box/{NAME}/version/1.0.0/revoke")
    assert get(box_url(server))[0] == 404


def test_a_trailing_slash_is_not_redirected_to_the_host_a_client_names(site: Held, server: InProcess) -> None:
    status, head = raw(server.port, b"GET /acme/debian/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
    assert b"evil.example" not in head, head


# --- data loss and lies -----------------------------------------------------------------------------------------

def _served_catalog(server: InProcess, tok: str | None = None) -> dict | None:
    status, _, data = call(f"{server.url}/{NAME}", tok=tok, Accept="application/json")
    return json.loads(data) if status == 200 else None


def test_a_late_upload_does_not_unrelease_a_version(site: Held, server: InProcess, boxes: list[bytes]) -> None:
    """Two uploads of one provider begin; the first ends and the version is released; the second ends after."""
    box = boxes[0]
    tok = write_token(site)
    made(server, tok)
    late = HalfUpload(server, upload_path(server, tok), boxes[1])
    assert uploaded(server, tok, box)[0] == 200
    api(server, tok, "PUT", f"/box/{NAME}/version/1.0.0/release")
    assert not late.finish()
    doc = _served_catalog(server)
    assert doc and doc["versions"][0]["providers"][0]["checksum"] == hashlib.sha256(box).hexdigest()
    assert get(box_url(server))[2] == box


def test_a_release_racing_a_version_delete_never_names_a_box_that_is_gone(site: Held, box: bytes) -> None:
    first, second = InProcess(site, fresh=0.0), InProcess(site, fresh=0.0)
    try:
        tok = write_token(site)
        made(first, tok)
        assert uploaded(first, tok, box)[0] == 200
        reached, go = site.hold("put", lambda k: k.endswith("catalog.json"))
        releasing = threading.Thread(target=call, args=(f"{first.url}/api/v2/box/{NAME}/version/1.0.0/release", "PUT"),
                                     kwargs={"tok": tok})
        releasing.start()
        assert reached.wait(60)
        deleting = threading.Thread(target=call, args=(f"{second.url}/api/v2/box/{NAME}/version/1.0.0", "DELETE"),
                                    kwargs={"tok": tok})
        deleting.start()
        deleting.join(5)  # it either ran (the race) or waits for the release: both are what a store may do
        go.set()
        releasing.join(60)
        deleting.join(60)
        doc = json.loads(site.store.get(f"{NAME}/catalog.json", 2**20)[0]) if site.store.stat(f"{NAME}/catalog.json") else None
        for v in (doc or {}).get("versions", []):
            for p in v["providers"]:
                assert site.store.stat(f"{NAME}/{v['version']}/{p['name']}/{p['architecture']}/vagrant.box"), doc
    finally:
        first.stop()
        second.stop()


def test_a_box_at_a_url_is_served_at_that_url(site: Held, server: InProcess, box: bytes) -> None:
    tok = write_token(site)
    made(server, tok, url="https://downloads.example.org/debian.box", checksum=hashlib.sha256(box).hexdigest(),
         checksum_type="sha256")
    api(server, tok, "PUT", f"/box/{NAME}/version/1.0.0/release")
    assert _served_catalog(server)["versions"][0]["providers"][0]["url"] == "https://downloads.example.org/debian.box"


def test_a_pending_provider_of_a_released_version_can_be_deleted(site: Held, server: InProcess, box: bytes) -> None:
    tok = write_token(site)
    made(server, tok)
    assert uploaded(server, tok, box)[0] == 200
    api(server, tok, "PUT", f"/box/{NAME}/version/1.0.0/release")
    api(server, tok, "POST", f"/box/{NAME}/version/1.0.0/providers", {"provider": {"name": "virtualbox", "architecture": "amd64"}})
    assert call(f"{server.url}/api/v2/box/{NAME}/version/1.0.0/provider/virtualbox/amd64", "DELETE", tok=tok)[0] == 200


def test_fields_of_the_wrong_type_and_a_huge_version_are_refused_and_break_nothing(site: Held, server: InProcess,
                                                                                box: bytes) -> None:
    tok = write_token(site)
    made(server, tok)
    base = f"{server.url}/api/v2/box/{NAME}/version/1.0.0"
    for fields in ({"default_architecture": "no"}, {"url": 5}, {"checksum": ["x"]}, {"architecture": {"a": 1}}):
        status, _, data = call(f"{base}/providers", "POST", {"provider": {"name": "qemu", **fields}}, tok)
        assert status == 422 and json.loads(data)["errors"], (fields, status, data)
    status, _, _ = call(f"{server.url}/api/v2/box/{NAME}/versions", "POST", {"version": {"version": "1" * 5000}}, tok)
    assert status == 422
    assert uploaded(server, tok, box)[0] == 200
    api(server, tok, "PUT", f"/box/{NAME}/version/1.0.0/release")
    assert call(f"{server.url}/api/v2/user/acme", tok=tok)[0] == 200 and call(f"{server.url}/api/v2/box/{NAME}", tok=tok)[0] == 200


def test_the_invalid_token_limit_holds_across_workers_and_never_refuses_a_valid_token(web: Target, tmp_path: Path,
                                                                                    box: bytes) -> None:
    served = Served(web, tmp_path, workers=4)
    try:
        (tmp_path / "b.box").write_bytes(box)
        publish(web, tmp_path / "b.box", NAME, "1.0.0", "--private")
        read = token(web, "acme")
        statuses = [get(f"{served.url}/{NAME}", f"boxpack_{i:016x}_{'0' * 64}", Connection="close")[0] for i in range(45)]
        assert statuses.count(401) == 10 and statuses.count(429) == 35, statuses
        assert get(f"{served.url}/{NAME}", read)[0] == 200  # a neighbour behind the same address
        assert get(f"{served.url}/")[0] == 200 and get(f"{served.url}/", "boxpack_old_hcp_token")[0] == 200
    finally:
        served.stop()


def test_two_uploads_of_one_box_at_once_answer_in_words_and_leave_one_box(s3: Target, tmp_path: Path, box: bytes) -> None:
    served = Served(s3, tmp_path, workers=1)
    try:
        tok = token(s3, "acme", "--write")
        base = declared(served.url, tok)
        where = lambda: json.loads(call(f"{base}/box/{NAME}/version/1.0.0/provider/libvirt/amd64/upload", tok=tok)[2])  # noqa: E731
        first_path = where()["upload_path"].removeprefix(served.url)
        first = socket.create_connection(("127.0.0.1", served.port), 60)
        first.sendall(f"PUT {first_path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(box)}\r\n\r\n".encode() + box[:len(box) // 2])
        status, _, data = call(where()["upload_path"], "PUT", data=box)
        assert status in (200, 409), (status, data)
        first.sendall(box[len(box) // 2:])
        head = first.recv(65536)
        first.close()
        assert head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.1 409"), head
        assert "Traceback" not in served.log.read_text()
        assert call(f"{base}/box/{NAME}/version/1.0.0/release", "PUT", tok=tok)[0] == 200
        assert get(f"{served.url}/{NAME}/1.0.0/libvirt/amd64/vagrant.box")[2] == box
    finally:
        served.stop()


# --- resources --------------------------------------------------------------------------------------------------

def test_slow_uploads_do_not_stop_the_catalogs(site: Held, server: InProcess, box: bytes) -> None:
    tok = write_token(site)
    made(server, tok)
    assert uploaded(server, tok, box)[0] == 200
    api(server, tok, "PUT", f"/box/{NAME}/version/1.0.0/release")
    api(server, tok, "POST", f"/box/{NAME}/versions", {"version": {"version": "2.0.0"}})
    api(server, tok, "POST", f"/box/{NAME}/version/2.0.0/providers", {"provider": {"name": "libvirt", "architecture": "amd64"}})
    held = []
    for _ in range(60):
        path = upload_path(server, tok, "2.0.0")
        s = socket.create_connection(("127.0.0.1", server.port), 60)
        s.sendall(f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(box)}\r\n\r\n".encode() + box[:1000])
        held.append(s)
    try:  # the held uploads give up after a minute without bytes: the catalog must not wait for that
        status, _, _ = call(f"{server.url}/{NAME}", Accept="application/json", timeout=20)
        assert status == 200
    finally:
        for s in held:
            s.close()


def test_an_anonymous_body_is_not_read_before_it_is_refused(site: Held, server: InProcess) -> None:
    for path in (b"/api/v1/boxes", b"/api/v2/box/acme/debian/versions"):
        status, _ = raw(server.port, b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 1000000\r\n\r\n{", timeout=20)
        assert status == 401, status


def test_concurrent_misses_read_a_catalog_once_and_the_organisation_is_cached(site: Held, box: bytes) -> None:
    server = InProcess(site, fresh=60.0)
    try:
        tok = write_token(site)
        made(server, tok)
        assert uploaded(server, tok, box)[0] == 200
        api(server, tok, "PUT", f"/box/{NAME}/version/1.0.0/release")
        site.calls.clear()
        reached, go = site.hold("get", lambda k: k == f"{NAME}/catalog.json")
        threads = [threading.Thread(target=call, args=(f"{server.url}/{NAME}",), kwargs={"Accept": "application/json"})
                   for _ in range(30)]
        for t in threads:
            t.start()
        assert reached.wait(60)
        go.set()
        for t in threads:
            t.join(60)
        assert site.count("get", lambda k: k == f"{NAME}/catalog.json") == 1
        site.calls.clear()
        for _ in range(5):
            assert call(f"{server.url}/api/v2/user/acme")[0] == 200
        assert site.count("get", lambda k: k.startswith(".boxpack/boxes/")) <= 1
    finally:
        server.stop()


def test_a_head_over_the_bound_is_refused_whole_or_in_pieces(site: Held, server: InProcess) -> None:
    status, _ = raw(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n")
    assert status in (431, 0), status
    status, _ = raw(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Many: b\r\n" * 3000 + b"\r\n")
    assert status in (431, 0), status


# --- left from round 4: publish and mirror --------------------------------------------------------------------

def test_an_architecture_vagrant_cannot_match_is_refused_before_the_upload(tmp_path: Path, box: bytes) -> None:
    (tmp_path / "b.box").write_bytes(box)
    (tmp_path / "to").mkdir()
    proc = run_boxpack("publish", tmp_path / "b.box", "--to", tmp_path / "to", "--name", NAME, "--box-version", "1.0.0",
                       "--base-url", "https://x.example", "--architecture", "X86_64", check=False)
    assert proc.returncode == 2 and proc.stderr.decode().count("\n") == 1, proc.stderr
    assert not any((tmp_path / "to").rglob("*.box"))


def test_a_catalog_with_accents_is_written_as_utf8(tmp_path: Path, box: bytes) -> None:
    (tmp_path / "b.box").write_bytes(box)
    (tmp_path / "to").mkdir()
    run_boxpack("publish", tmp_path / "b.box", "--to", tmp_path / "to", "--name", NAME, "--box-version", "1.0.0",
                "--base-url", "https://x.example", "--description", "Débian für Ärzte")
    assert "Débian für Ärzte".encode() in (tmp_path / "to" / NAME / "catalog.json").read_bytes()


def test_a_corrected_base_url_is_published_without_a_false_word(tmp_path: Path, box: bytes) -> None:
    (tmp_path / "b.box").write_bytes(box)
    (tmp_path / "to").mkdir()
    args = ["publish", tmp_path / "b.box", "--to", tmp_path / "to", "--name", NAME, "--box-version", "1.0.0", "--base-url"]
    run_boxpack(*args, "https://wrong.example")
    again = run_boxpack(*args, "https://right.example", check=False)
    assert "someone else" not in again.stderr.decode()
    if again.returncode == 0:
        doc = json.loads((tmp_path / "to" / NAME / "catalog.json").read_bytes())
        assert doc["versions"][0]["providers"][0]["url"].startswith("https://right.example/")


def test_a_killed_publish_leaves_no_temporary_file(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    disk = make_disk.make(tmp_path / "big.img", data=512 * MIB)
    (tmp_path / "to").mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "boxpack", disk, "--provider", "libvirt", "--publish",
                             tmp_path / "to", "--name", NAME, "--box-version", "1.0.0", "--base-url", "https://x.example",
                             "--compression", "none"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    target = tmp_path / "to" / NAME / "1.0.0" / "libvirt" / "amd64"
    while proc.poll() is None and not writing(proc.pid, target):
        pass
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed while writing, not after
    assert not list((tmp_path / "to").rglob(".boxpack-*")), list((tmp_path / "to").rglob("*"))


@pytest.mark.first_case_quick
def test_private_into_a_bucket_anyone_reads_is_refused_before_any_box(s3: Target, tmp_path: Path, box: bytes) -> None:
    """The README's SeaweedFS recipe lets anyone read: a --private box there would be public, silently."""
    (tmp_path / "b.box").write_bytes(box)
    args = ["publish", tmp_path / "b.box", "--name", NAME, "--box-version", "1.0.0", "--private", "--to"]
    proc = run_boxpack(*args, s3.to, "--base-url", s3.base_url, env=s3.env, check=False)
    said = proc.stderr.decode()
    assert proc.returncode == 3 and said.count("\n") == 1 and "anyone may read" in said, said
    assert not any(k.endswith("vagrant.box") for k in s3.listing())
    private = s3_target(s3.server, public=False)
    run_boxpack(*args, private.to, "--base-url", private.base_url, env=private.env)


@pytest.mark.first_case_quick
def test_a_yank_between_a_catalog_write_and_its_copy_leaves_no_copy_naming_a_deleted_box(s3: Target, box: bytes,
                                                                                       monkeypatch) -> None:
    """Where keys nest, a catalog has a copy (api/v2/...). A yank that comes while a publisher has written the catalog
    but not yet its copy must not leave the copy naming the box it deletes: it waits for the publisher (the box's
    lease), whose copy then follows the catalog, and only then deletes."""
    from boxpack.publishing import retention
    from boxpack.publishing.publish import PublishedCatalog
    from boxpack.publishing.stores.s3 import S3Store

    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    held = Held(S3Store(s3.to))
    entry = {"version": "2.0.0", "providers": [{"name": "libvirt", "url": f"{s3.base_url}/{NAME}/2.0.0/libvirt/amd64/vagrant.box",
                                                 "checksum_type": "sha256", "checksum": hashlib.sha256(box).hexdigest(),
                                                 "architecture": "amd64", "default_architecture": True}]}
    key, copy = f"{NAME}/2.0.0/libvirt/amd64/vagrant.box", f"api/v2/vagrant/{NAME}"
    PublishedCatalog(held.store, NAME).prepare()  # before any key under the name (SeaweedFS)
    held.store.put(key, box, "application/octet-stream")
    reached, go = held.hold("put", lambda k: k == copy)
    publisher = threading.Thread(target=PublishedCatalog(held, NAME).update,
                                 args=(lambda doc: {"name": NAME, "versions": [entry]},))
    publisher.start()
    assert reached.wait(60)  # the catalog is written; its copy not yet
    waiting, on = held.hold("get", lambda k: k == f".boxpack/leases/{NAME}.json")
    yank = threading.Thread(target=retention.withdraw, args=(PublishedCatalog(held, NAME), lambda v, p: v["version"] == "2.0.0"),
                            kwargs={"delete_boxes": True})
    yank.start()
    assert waiting.wait(60)  # the yank asks for the box's lease, which the publisher holds
    on.set()

    def copy_true() -> None:
        doc = held.store.get(copy, 2**20)
        assert doc is None or b"2.0.0" not in doc[0] or held.store.stat(key) is not None, doc

    copy_true()
    go.set()
    publisher.join(60)
    yank.join(60)
    copy_true()
    assert held.store.stat(key) is None and b"2.0.0" not in held.store.get(copy, 2**20)[0]
