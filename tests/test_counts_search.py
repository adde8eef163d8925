"""What people judged boxes by on HCP (issue 52): download counts, counted by every replica into the store."""

from __future__ import annotations

import json
from pathlib import Path

import make_disk
import pytest
from conftest import MIB, Target, run_boxpack
from served import Served, get, publish, settle

NAME = "acme/debian"


@pytest.fixture(scope="module")
def box(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("counts")
    run_boxpack(make_disk.make(d / "d.img", data=MIB), "--provider", "libvirt", "--architecture", "amd64", "-o", d / "b.box")
    return d / "b.box"


def test_downloads_count_once_each_over_two_replicas_and_survive_a_restart(web: Target, box: Path, tmp_path: Path) -> None:
    """A GET of a box (its path, or HCP's) counts once; a HEAD does not, nor a Range that does not start at byte 0
    (curl resuming). Two replicas count into the one store; stopped with SIGTERM, they lose nothing."""
    publish(web, box, NAME, "1.0.0")
    publish(web, box, NAME, "1.1.0")
    first, second = Served(web, tmp_path, workers=2), Served(web, tmp_path, workers=1)
    try:
        path = f"{NAME}/1.0.0/libvirt/amd64/vagrant.box"
        for i in range(150):
            assert get(f"{(first, second)[i % 2].url}/{path}")[0] == 200
        for i in range(100):
            assert get(f"{(first, second)[i % 2].url}/acme/boxes/debian/versions/1.0.0/providers/libvirt/amd64/vagrant.box")[0] == 200
        for i in range(20):
            assert get(f"{first.url}/{path}", method="HEAD")[0] == 200
            assert get(f"{second.url}/{path}", Range="bytes=100-")[0] == 206
        for i in range(10):
            assert get(f"{second.url}/{NAME}/1.1.0/libvirt/amd64/vagrant.box", Range="bytes=0-99")[0] == 206
    finally:
        first.stop()  # SIGTERM: what each worker counted is written as it stops
        second.stop()
    third = Served(web, tmp_path, workers=1)
    try:
        settle()
        shown = json.loads(get(f"{third.url}/api/v2/box/{NAME}")[2])
        assert shown["downloads"] == 260, shown["downloads"]
        by_version = {v["version"]: v["downloads"] for v in shown["versions"]}
        assert by_version == {"1.0.0": 250, "1.1.0": 10}
        assert shown["versions"][-1]["providers"][0]["downloads"] == 250
    finally:
        third.stop()
    table = run_boxpack("catalog", "show", web.root / NAME / "catalog.json").stdout.decode().splitlines()
    assert table[1].split()[5] == "DOWNLOADS" and [row.split()[5] for row in table[2:]] == ["250", "10"], table


def _published(web: Target, tmp_path: Path, box: Path) -> str:
    """Four boxes, counted: other/centos 5 downloads (virtualbox, arm64 too), acme/debian 3, acme/alpine 1 ("a tiny
    one"), acme/secret private; a read token for acme."""
    from served import token

    for name, version in (("acme/debian", "1.0.0"), ("acme/alpine", "2.0.0"), ("other/centos", "9.0.0")):
        publish(web, box, name, version)
    publish(web, box, "acme/secret", "1.0.0", "--private")
    run_boxpack("publish", box, "--to", web.to, "--name", "other/centos", "--box-version", "9.0.0", "--base-url",
                web.base_url, "--architecture", "arm64")
    served = Served(web, tmp_path, workers=1)
    try:
        for name, version, arch, times in (("acme/debian", "1.0.0", "amd64", 3), ("acme/alpine", "2.0.0", "amd64", 1),
                                           ("other/centos", "9.0.0", "arm64", 5)):
            for _ in range(times):
                assert get(f"{served.url}/{name}/{version}/libvirt/{arch}/vagrant.box")[0] == 200
        read = token(web, "acme")
        write = token(web, "acme", "--write")
        status, _, _ = get(f"{served.url}/api/v2/box/acme/alpine", write, method="PUT")  # no body: nothing changes
        assert status == 200
    finally:
        served.stop()  # the counts written as it stops
    import urllib.request

    description = {"box": {"short_description": "a small one"}}
    second = Served(web, tmp_path, workers=1)
    try:
        request = urllib.request.Request(f"{second.url}/api/v2/box/acme/alpine", method="PUT", data=json.dumps(description).encode(),
                                         headers={"Authorization": f"Bearer {write}", "Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=30).close()
    finally:
        second.stop()
    return read


def test_search_answers_the_api_and_both_vagrants_with_only_what_the_token_may_see(web: Target, box: Path, tmp_path: Path,
                                                                                 vagrant) -> None:
    read = _published(web, tmp_path, box)
    served = Served(web, tmp_path, workers=1)
    try:
        names = lambda url, tok=None: [b["tag"] for b in json.loads(get(url, tok)[2])["boxes"]]  # noqa: E731
        for v in ("v1", "v2"):
            base = f"{served.url}/api/{v}/search"
            every = ["other/centos", "acme/debian", "acme/alpine"]
            assert names(base) == every  # by downloads, most first; no private box
            assert names(f"{base}?sort=downloads&order=asc") == every[::-1]
            assert names(f"{base}?q=small") == ["acme/alpine"]  # its short description
            assert names(f"{base}?q=ACME") == ["acme/debian", "acme/alpine"]  # its organisation
            assert "acme/secret" in names(f"{base}?q=secret", read) and names(f"{base}?q=secret") == []
            assert names(f"{base}?limit=1&page=2") == ["acme/debian"]
            assert get(f"{base}?sort=name")[0] == 422
        assert names(f"{served.url}/api/v2/search?architecture=arm64") == ["other/centos"]
        assert names(f"{served.url}/api/v2/search?q=secret&provider=virtualbox", read) == []
        cloud = lambda *args, env=None: vagrant(tmp_path / "v.d", "cloud", "search", *args, server=served.url, env=env)  # noqa: E731
        shown = cloud("e", "--json", "--sort-by", "downloads", "--order", "desc")
        assert shown.returncode == 0 and [b["name"] for b in json.loads(shown.stdout)] == \
            ["other/centos", "acme/debian", "acme/alpine"], shown.stdout
        short = cloud("e", "--short", "--limit", "1", "--page", "2")
        assert short.returncode == 0 and short.stdout.split() == ["acme/debian"], short.stdout + short.stderr
        assert "No results" in cloud("e", "--provider", "virtualbox").stdout + cloud("e", "--provider", "virtualbox").stderr
        private = cloud("secret", "--short", env={"VAGRANT_CLOUD_TOKEN": read})
        assert private.stdout.split() == ["acme/secret"], private.stdout + private.stderr
        anonymous = cloud("e", "--short", "--no-auth")  # no login asked for; without a token, no private box
        assert anonymous.returncode == 0 and anonymous.stdout.split() == ["other/centos", "acme/debian", "acme/alpine"], \
            anonymous.stdout + anonymous.stderr
        if vagrant.version != "2.3.4":
            arm = cloud("e", "--short", "--architecture", "arm64")
            assert arm.stdout.split() == ["other/centos"], arm.stdout + arm.stderr
    finally:
        served.stop()


def test_hostile_descriptions_are_rendered_harmless_and_bounded(web: Target, box: Path, tmp_path: Path) -> None:
    from lxml import html

    hostile = ("# Debian\n\n<script>alert(1)</script> <img src=x onerror=alert(2)> [click](javascript:alert(3)) "
               "[docs](https://example.org/docs) ![x](data:text/html,hi)\n\n- one\n- two\n\n" + "*a* " * 300_000)
    publish(web, box, NAME, "1.0.0")
    catalog = web.root / NAME / "catalog.json"  # a description of 1 MiB, as a mirrored catalog may bring one
    catalog.write_text(json.dumps({**json.loads(catalog.read_text()), "description": hostile}))
    served = Served(web, tmp_path, workers=1)
    try:
        status, _, data = get(f"{served.url}/{NAME}", Accept="text/html")
        assert status == 200 and len(data) < 1024 * 1024
        doc = html.fromstring(data)
        assert not doc.xpath("//script") and not doc.xpath("//img") and not doc.xpath("//*[@onerror]")
        links = doc.xpath("//div[@class='description']//a/@href")
        assert links == ["https://example.org/docs"], links
        assert [li.text_content() for li in doc.xpath("//div[@class='description']//li")][:2] == ["one", "two"]
        assert doc.xpath("string(//div[@class='description']/h1)") == "Debian"
        assert "<script>alert(1)</script>" in doc.text_content()  # shown as text
    finally:
        served.stop()
