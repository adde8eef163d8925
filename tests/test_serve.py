"""boxpack serve in front of real stores (SeaweedFS, radosgw, a directory), run as a user runs it (uvicorn, worker
processes), with both real Vagrants adding private and public boxes by name through it."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import MIB, ROOT, Target, Vagrant, make_disk, run_boxpack, s3_target, unavailable
from netproxy import Proxy
from served import Served, get, publish, settle, token

NAME = "acme/debian"
OTHER = "other/base"


@pytest.fixture(scope="module")
def boxes(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("serve-boxes")
    disk = make_disk.make(d / "debian.img", data=2 * MIB)
    run_boxpack(disk, "--provider", "libvirt", "--provider", "virtualbox", "-o", f"{d}/")
    return {p: d / f"debian-{p}.box" for p in ("libvirt", "virtualbox")}


@pytest.mark.first_case_quick("vagrant")
def test_vagrant_adds_a_private_box_with_a_token_and_not_without(target: Target, boxes: dict[str, Path], tmp_path: Path,
                                                                  vagrant: Vagrant) -> None:
    """Private by `publish --private`: with a read token Vagrant adds it by name; without one, or with another
    organisation's, it fails with its own error; the store never sees the token; a later version shows."""
    relay = None
    if target.bucket:  # a private bucket; the presigned URLs point at a relay in front of it, which records every request
        target = s3_target(target.server, public=False)
        host, port = target.server.endpoint.removeprefix("http://").split(":")
        relay = Proxy(host, int(port))
    served = Served(target, tmp_path, relay.url if relay else None)
    try:
        publish(target, boxes["libvirt"], NAME, "1.0.0", "--private")
        publish(target, boxes["libvirt"], OTHER, "1.0.0")  # public
        read, foreign = token(target, "acme"), token(target, "other")
        env = {"VAGRANT_CLOUD_TOKEN": read}
        home = tmp_path / "vagrant.d"
        added = vagrant(home, "box", "add", NAME, "--provider", "libvirt", server=served.url, env=env)
        assert added.returncode == 0, added.stdout + added.stderr
        assert f"{NAME} (libvirt, 1.0.0" in vagrant(home, "box", "list").stdout
        anonymous = vagrant(tmp_path / "anon.d", "box", "add", NAME, "--provider", "libvirt", server=served.url)
        assert anonymous.returncode != 0 and "could not be found or" in anonymous.stdout + anonymous.stderr, anonymous.stdout
        other = vagrant(tmp_path / "other.d", "box", "add", NAME, "--provider", "libvirt", server=served.url,
                        env={"VAGRANT_CLOUD_TOKEN": foreign})
        assert other.returncode != 0, other.stdout
        public = vagrant(tmp_path / "public.d", "box", "add", OTHER, "--provider", "libvirt", server=served.url)
        assert public.returncode == 0, public.stdout + public.stderr  # no token needed, none sent
        publish(target, boxes["libvirt"], NAME, "1.1.0", "--private")
        settle()
        outdated = vagrant(home, "box", "outdated", "--global", server=served.url, env=env)
        assert "1.1.0" in outdated.stdout and "outdated" in outdated.stdout, outdated.stdout + outdated.stderr
        log = served.log.read_text()
        assert read not in log and foreign not in log and f"token={read.split('_')[1]}" in log
        if relay:
            assert relay.requests and read.encode() not in relay.requests and b"Bearer" not in relay.requests
            assert b"GET /" in relay.requests  # the box came from the store, presigned
    finally:
        served.stop()
        if relay:
            relay.close()


def test_statuses_for_who_asks_and_what(web: Target, boxes: dict[str, Path], tmp_path: Path) -> None:
    served = Served(web, tmp_path)
    try:
        publish(web, boxes["libvirt"], NAME, "1.0.0", "--private")
        publish(web, boxes["libvirt"], OTHER, "1.0.0")
        read, foreign = token(web, "acme"), token(web, "other")
        box = f"{served.url}/{NAME}/1.0.0/libvirt/amd64/vagrant.box"
        for path in (NAME, f"api/v2/vagrant/{NAME}"):
            assert get(f"{served.url}/{path}")[0] == 404  # no token: as if it were not there (a missing box says the same)
            status, headers, _ = get(f"{served.url}/{path}", "boxpack_0000000000000000_" + "0" * 64)
            assert status == 401 and headers["www-authenticate"].startswith("Bearer")  # a token that is not valid
            assert get(f"{served.url}/{path}", foreign)[0] == 404  # a valid token without the right: as if it were not there
            status, headers, data = get(f"{served.url}/{path}", read, Accept="application/json")
            assert status == 200 and headers["content-type"] == "application/json"
            assert json.loads(data)["versions"][0]["providers"][0]["url"] == box
            assert get(f"{served.url}/{path}", read, **{"If-None-Match": headers["etag"]})[0] == 304
        assert get(box)[0] == 404 and get(box, foreign)[0] == 404
        status, headers, data = get(box, read, Range="bytes=0-99")
        assert status == 206 and data == boxes["libvirt"].read_bytes()[:100]
        assert get(box, read, method="HEAD")[1]["content-length"] == str(boxes["libvirt"].stat().st_size)
        assert get(f"{served.url}/{OTHER}")[0] == 200 and get(f"{served.url}/{OTHER}", "boxpack_bad")[0] == 200
        basic = base64.b64encode(f"x:{read}".encode()).decode()  # what a browser sends, the token as its password
        assert get(f"{served.url}/{NAME}", Authorization=f"Basic {basic}")[0] == 200
        assert get(f"{served.url}/no/such")[0] == 404 and get(f"{served.url}/acme")[0] == 404
        run_boxpack("serve", "token", "revoke", read.split("_")[1], "--store", web.to)
        settle()
        assert get(f"{served.url}/{NAME}", read)[0] == 401
        assert read not in served.log.read_text()
    finally:
        served.stop()


def test_hostile_paths_and_a_token_guesser_get_a_status_and_nothing_else(web: Target, boxes: dict[str, Path],
                                                                           tmp_path: Path) -> None:
    served = Served(web, tmp_path, workers=1)
    try:
        publish(web, boxes["libvirt"], NAME, "1.0.0", "--private")
        token(web, "acme")
        raw = [b"GET /acme%2Fdebian HTTP/1.1", b"GET /acme/../.boxpack/tokens HTTP/1.1", b"GET /acme/debian%00 HTTP/1.1",
               b"GET /" + b"a" * 5000 + b" HTTP/1.1", b"GET /.boxpack/visibility/acme.json HTTP/1.1"]
        statuses = [_raw(served.port, line + b"\r\nHost: x\r\nConnection: close\r\n\r\n") for line in raw]
        assert statuses == [400, 400, 400, 414, 404], statuses
        # A head of more than 16 KiB is refused (431, or the connection closed while it is still being sent).
        assert _raw(served.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 2**20 + b"\r\n\r\n") in (431, 0)
        guesses = [get(f"{served.url}/{NAME}", f"boxpack_{i:016x}_{'0' * 64}")[0] for i in range(12)]
        assert guesses[:10] == [401] * 10 and guesses[10:] == [429, 429], guesses
    finally:
        served.stop()


def _raw(port: int, request: bytes) -> int:
    """The status a raw request gets (0 when the server closes without one)."""
    with socket.create_connection(("127.0.0.1", port), 10) as s:
        try:
            s.sendall(request)
            head = s.recv(4096)
        except OSError:
            return 0
    return int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else 0


@pytest.mark.first_case_quick
def test_two_replicas_over_one_store_serve_what_is_published_meanwhile(s3: Target, boxes: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    first, second = Served(s3, tmp_path, workers=1), Served(s3, tmp_path, workers=1)
    try:
        publish(s3, boxes["libvirt"], NAME, "1.0.0")
        for served in (first, second):
            assert [v["version"] for v in json.loads(get(f"{served.url}/{NAME}")[2])["versions"]] == ["1.0.0"]
        publish(s3, boxes["virtualbox"], NAME, "1.1.0")
        settle()
        for served in (first, second):
            assert [v["version"] for v in json.loads(get(f"{served.url}/{NAME}")[2])["versions"]] == ["1.0.0", "1.1.0"]
        status, headers, _ = get(f"{first.url}/{NAME}/1.1.0/virtualbox/amd64/vagrant.box", method="HEAD")
        assert status == 200  # urllib followed the redirect to the presigned URL on the store
    finally:
        first.stop()
        second.stop()


@pytest.mark.first_case_quick
def test_an_unreachable_store_is_a_503_in_one_line(s3: Target, boxes: dict[str, Path], tmp_path: Path) -> None:
    host, port = s3.server.endpoint.removeprefix("http://").split(":")
    relay = Proxy(host, int(port))
    served = Served(s3, tmp_path, relay.url, workers=1)
    try:
        publish(s3, boxes["libvirt"], NAME, "1.0.0")
        assert get(f"{served.url}/{NAME}")[0] == 200 and relay.connections, relay.connections
        relay.close()  # the store goes away
        settle()
        status, _, data = get(f"{served.url}/{NAME}")
        assert status == 503 and data.decode().count("\n") == 1 and "Traceback" not in served.log.read_text()
    finally:
        served.stop()


def test_the_pages_show_boxes_to_people_and_private_ones_only_with_their_token(web: Target, boxes: dict[str, Path],
                                                                               tmp_path: Path) -> None:
    from lxml import html

    served = Served(web, tmp_path, workers=1)
    try:
        publish(web, boxes["libvirt"], NAME, "1.0.0", "--private", "--description", "Debian for acme")
        publish(web, boxes["virtualbox"], NAME, "1.0.0", "--private")
        publish(web, boxes["libvirt"], OTHER, "2.0.0")
        read = token(web, "acme")
        page = lambda path, tok=None: get(f"{served.url}{path}", tok, Accept="text/html,*/*;q=0.8")  # noqa: E731
        status, headers, data = page("/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        text = html.fromstring(data).text_content()
        assert "other" in text and "acme" not in text  # a private organisation does not show without a token
        assert "acme" in html.fromstring(page("/", read)[2]).text_content()
        status, headers, data = page(f"/{NAME}")  # not there, or private: the same page, offering to log in
        assert status == 404 and html.fromstring(data).xpath("//a[@href]/@href")[-1].endswith("/.login")
        status, headers, _ = page("/.login")
        assert status == 401 and any(h.startswith("Basic") for h in headers.get_all("www-authenticate"))
        doc = html.fromstring(page(f"/{NAME}", read)[2])
        text = doc.text_content()
        assert "Debian for acme" in text and "1.0.0" in text and "libvirt" in text and "virtualbox" in text
        assert 'config.vm.box = "acme/debian"' in text and f'config.vm.box_server_url = "{served.url}"' in text
        assert "VAGRANT_CLOUD_TOKEN" in text and not doc.xpath("//script") and not doc.xpath("//*[@src]")
        assert json.loads(get(f"{served.url}/{OTHER}")[2])["name"] == OTHER  # Vagrant's Accept still gets JSON
        assert json.loads(get(f"{served.url}/{OTHER}", Accept="*/*")[2])["name"] == OTHER
    finally:
        served.stop()


CHROMIUM = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.slow
def test_chromium_shows_a_private_box_to_its_token_and_a_phone_can_read_it(web: Target, boxes: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    """The pages in a real browser: the DOM Chromium renders, and a screenshot (BOXPACK_UPDATE_README=1 keeps the
    README's). The token goes as the password of the URL, what the browser's own prompt does."""
    from lxml import html

    chromium = shutil.which("chromium")
    if not chromium:
        unavailable("Chromium", "not installed (apt-get install chromium)")
    served = Served(web, tmp_path, workers=1)
    try:
        publish(web, boxes["libvirt"], NAME, "1.0.0", "--private", "--description",
                "Debian 12 for **acme's CI**\n\n- small\n- signed <script>document.title='owned'</script>")
        publish(web, boxes["virtualbox"], NAME, "1.0.0", "--private")
        publish(web, boxes["libvirt"], NAME, "1.1.0", "--private")
        read = token(web, "acme")
        host = served.url.removeprefix("http://")

        def chrome(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([chromium, *CHROMIUM, f"--user-data-dir={tmp_path / 'chromium'}", *args],
                                  capture_output=True, timeout=120)

        dom = html.fromstring(chrome("--dump-dom", f"http://x:{read}@{host}/.login?next=/{NAME}").stdout)
        text = " ".join(dom.body.text_content().split())
        assert dom.xpath("string(//h1)") == "acme/debianprivate" and "Debian 12 for acme's CI" in text
        assert [" ".join(h.text_content().split()) for h in dom.xpath("//h3")][0].startswith("1.1.0")  # the newest first
        cells = [" ".join(td.text_content().split()) for td in dom.xpath("//section[last()]//td")]
        assert cells[:2] == ["libvirt", "amd64 (default)"] and cells[5:7] == ["virtualbox", "amd64 (default)"], cells
        assert [li.text_content() for li in dom.xpath("//div[@class='description']//li")][0] == "small"  # Markdown
        assert dom.xpath("string(//title)") != "owned" and not dom.xpath("//script")  # the description's script is text
        assert "downloads" in text and dom.xpath("//form[@role='search']//input[@name='q']")
        found = html.fromstring(chrome("--dump-dom", f"http://x:{read}@{host}/.login?next=/?q=debian").stdout)
        assert [a.text_content() for a in found.xpath("//ul[@class='boxes']//a")] == [NAME]
        org = " ".join(html.fromstring(chrome("--dump-dom", f"http://x:{read}@{host}/.login?next=/acme").stdout).text_content().split())
        assert "1.1.0" in org and "libvirt amd64" in org, org
        anonymous = " ".join(html.fromstring(chrome("--dump-dom", f"http://{host}/{NAME}").stdout or b"<p/>").text_content().split())
        assert "Debian 12 for acme's CI" not in anonymous
        for width, shot in ((412, tmp_path / "phone.png"), (1000, tmp_path / "desktop.png")):
            chrome(f"--window-size={width},1000", f"--screenshot={shot}", f"http://x:{read}@{host}/.login?next=/{NAME}")
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("BOXPACK_UPDATE_README"):
            shutil.copyfile(tmp_path / "desktop.png", ROOT / "docs" / "serve-box-page.png")
    finally:
        served.stop()
