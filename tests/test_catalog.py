"""The catalog: merge rules, ordering, atomic and concurrent writes, and the real `vagrant box add`."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import Vagrant, run_boxpack

from boxpack import catalog
from boxpack.errors import BoxpackError

SHA = "a" * 64
URL = "https://example.org/boxes/"


def entry(doc: dict, version: str) -> list[tuple[str, str, bool]]:
    v = next(v for v in doc["versions"] if v["version"] == version)
    return [(p["name"], p["architecture"], p["default_architecture"]) for p in v["providers"]]


def _add(doc, version="1.0.0", provider="libvirt", arch="amd64", **kw):
    return catalog.add(doc, name="org/box", version=version, provider=provider, url=URL + f"{provider}-{arch}.box",
                       checksum=kw.pop("checksum", SHA), architecture=arch, **kw)


def test_first_entry_is_the_default_and_the_default_goes_last() -> None:
    doc = _add(None)
    doc = _add(doc, arch="arm64")
    doc = _add(doc, provider="virtualbox")
    assert entry(doc, "1.0.0") == [("libvirt", "arm64", False), ("libvirt", "amd64", True), ("virtualbox", "amd64", True)]
    doc = _add(doc, arch="riscv64", default_architecture=True)
    assert entry(doc, "1.0.0")[:3] == [("libvirt", "amd64", False), ("libvirt", "arm64", False), ("libvirt", "riscv64", True)]
    assert catalog.check(doc) == []


def test_amd64_takes_the_default_whatever_the_order_unless_another_is_asked_for() -> None:
    """Vagrant <= 2.3 runs the default entry on every host: amd64, unless the publisher says otherwise."""
    doc = _add(_add(None, arch="arm64"), arch="amd64")
    assert entry(doc, "1.0.0") == [("libvirt", "arm64", False), ("libvirt", "amd64", True)]
    doc = _add(_add(None, arch="arm64", default_architecture=True), arch="amd64", default_architecture=False)
    assert entry(doc, "1.0.0")[-1] == ("libvirt", "amd64", True)  # only --default-architecture on the later one keeps it
    assert entry(_add(_add(None, arch="amd64"), arch="arm64"), "1.0.0") == [("libvirt", "arm64", False), ("libvirt", "amd64", True)]


def test_unknown_architecture_without_one() -> None:
    doc = catalog.add(None, name="org/box", version="1.0.0", provider="libvirt", url=URL + "x.box", checksum=SHA)
    assert entry(doc, "1.0.0") == [("libvirt", "unknown", True)]


def test_duplicates_refused_unless_forced() -> None:
    doc = _add(_add(None), arch="arm64")
    with pytest.raises(BoxpackError, match="already has a libvirt box for amd64; use --force"):
        _add(doc)
    replaced = _add(doc, checksum="b" * 64, force=True)
    assert entry(replaced, "1.0.0") == [("libvirt", "arm64", False), ("libvirt", "amd64", True)]
    assert replaced["versions"][0]["providers"][1]["checksum"] == "b" * 64


def test_versions_in_gem_order() -> None:
    doc = None
    for v in ("1.10.0", "1.2.0", "1.2.0-beta", "0.9", "1.2.1"):
        doc = _add(doc, version=v)
    assert [v["version"] for v in doc["versions"]] == ["0.9", "1.2.0-beta", "1.2.0", "1.2.1", "1.10.0"]
    merged = _add(doc, version="1.2", arch="arm64")  # 1.2 is 1.2.0: merged, not a new version
    assert len(merged["versions"]) == 5 and len(entry(merged, "1.2.0")) == 2


def test_version_order_matches_rubygems() -> None:
    ruby = shutil.which("ruby")
    if not ruby:
        pytest.skip("ruby is not installed")
    versions = ["1.0", "1.0.0.rc1", "1.0-beta.2", "1.0.a", "0.10.1", "0.9.9", "2", "1.0.1", "1.0.0.1", "10.0", "1.0.b1"]
    script = "puts ARGV.sort_by { |v| Gem::Version.new(v) }.join(' ')"
    out = subprocess.run([ruby, "-e", script, *versions], capture_output=True, text=True, check=True).stdout.split()
    ours = sorted(versions, key=catalog.version_key)
    assert [catalog.version_key(v) for v in ours] == [catalog.version_key(v) for v in out]


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"version": "v1"}, "not a RubyGems version"),
        ({"url": "boxes/x.box"}, "not absolute"),
        ({"checksum": SHA + "  x.box"}, "bare sha256"),
        ({"checksum": "abc"}, "bare sha256"),
        ({"checksum_type": "crc32"}, "not one Vagrant knows"),
        ({"name": "other/box"}, "is for org/box, not other/box"),
    ],
)
def test_bad_entries_are_refused(kw: dict, message: str) -> None:
    doc = _add(None)
    args = dict(name="org/box", version="1.0.1", provider="libvirt", url=URL + "x.box", checksum=SHA) | kw
    with pytest.raises(BoxpackError, match=message):
        catalog.add(doc, **args)


def test_relative_url_allowed_when_asked_and_uppercase_type_normalised() -> None:
    doc = catalog.add(None, name="org/box", version="1", provider="libvirt", url="x.box", checksum=SHA.upper(),
                      checksum_type="SHA256", allow_relative=True)
    p = doc["versions"][0]["providers"][0]
    assert (p["url"], p["checksum"], p["checksum_type"]) == ("x.box", SHA, "sha256")


def test_remove_entries_versions_and_promotes_a_default() -> None:
    doc = _add(_add(_add(None), arch="arm64"), version="2.0.0")
    doc = catalog.remove(doc, "1.0.0", "libvirt", "amd64")
    assert entry(doc, "1.0.0") == [("libvirt", "arm64", True)]
    doc = catalog.remove(doc, "1.0.0")
    assert [v["version"] for v in doc["versions"]] == ["2.0.0"]
    with pytest.raises(BoxpackError, match="no virtualbox entry"):
        catalog.remove(doc, "2.0.0", "virtualbox")


@pytest.mark.parametrize(
    "text",
    ["{not json", '{"name": "org/box", "versions": [{"version": "1", "providers": []}]}', "[]",
     json.dumps({"name": "org/box", "versions": [{"version": "1", "providers": [
         {"name": "libvirt", "url": URL, "checksum": SHA, "checksum_type": "sha256", "architecture": "amd64",
          "default_architecture": False}]}]})],
)
def test_malformed_catalog_is_reported_and_left_alone(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(BoxpackError, match="left as it is"):
        catalog.update(path, lambda d: _add(d))
    assert path.read_text() == text
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]


def test_a_failed_write_leaves_the_old_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.json"
    catalog.update(path, lambda d: _add(d))
    before = path.read_bytes()

    def broken_replace(*a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(BoxpackError, match="No space left"):
        catalog.update(path, lambda d: _add(d, version="2.0.0"))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]


def _worker(args: tuple[str, int]) -> None:
    path, n = args
    for i in range(5):
        catalog.update(path, lambda d: _add(d, version=f"{n}.{i}.0"))


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    with multiprocessing.get_context("fork").Pool(8) as pool:
        pool.map(_worker, [(str(path), n) for n in range(8)])
    doc = catalog.load(path)
    assert len(doc["versions"]) == 40 and catalog.check(doc) == []


def test_cli_add_show_remove(tmp_path: Path, sample_disk: Path) -> None:
    box = tmp_path / "sample-libvirt.box"
    run_boxpack(sample_disk, "--provider", "libvirt", "-o", box, "--arch", "arm64")
    cat = tmp_path / "boxes.json"
    run_boxpack("catalog", "add", cat, "--box", box, "--name", "org/sample", "--box-version", "1.0.0", "--url", URL + box.name,
                "--description", "A sample")
    doc = json.loads(cat.read_text())
    p = doc["versions"][0]["providers"][0]
    assert (p["name"], p["architecture"], p["checksum"]) == ("libvirt", "arm64", hashlib.sha256(box.read_bytes()).hexdigest())
    assert doc["description"] == "A sample"
    shown = run_boxpack("catalog", "show", cat).stdout.decode()
    assert "1.0.0" in shown and "arm64" in shown and URL + box.name in shown
    dup = run_boxpack("catalog", "add", cat, "--box", box, "--name", "org/sample", "--box-version", "1.0.0", "--url", URL + "x", check=False)
    assert dup.returncode == 3 and "--force" in dup.stderr.decode()
    run_boxpack("catalog", "remove", cat, "--box-version", "1.0.0")
    assert json.loads(cat.read_text())["versions"] == []


def test_pack_records_the_boxes_in_one_run(tmp_path: Path, sample_disk: Path) -> None:
    cat = tmp_path / "catalog.json"
    run_boxpack(sample_disk, "--provider", "libvirt", "--provider", "virtualbox", "-o", tmp_path, "--catalog", cat,
                "--name", "org/sample", "--box-version", "1.2.0", "--url-base", "https://example.org/boxes")
    doc = catalog.load(cat)
    urls = {p["name"]: p["url"] for p in doc["versions"][0]["providers"]}
    assert urls == {"libvirt": "https://example.org/boxes/sample-libvirt.box",
                    "virtualbox": "https://example.org/boxes/sample-virtualbox.box"}
    for p in doc["versions"][0]["providers"]:
        assert p["checksum"] == hashlib.sha256((tmp_path / f"sample-{p['name']}.box").read_bytes()).hexdigest()
    missing = run_boxpack(sample_disk, "--provider", "libvirt", "-o", tmp_path / "x.box", "--catalog", cat, check=False)
    assert missing.returncode == 2 and "--name" in missing.stderr.decode()


@pytest.mark.first_case_quick
@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256", "sha384", "sha512"])
def test_checksum_files(tmp_path: Path, sample_disk: Path, algorithm: str) -> None:
    box = tmp_path / "s.box"
    run_boxpack(sample_disk, "--provider", "libvirt", "-o", box, "--checksum-type", algorithm, "--checksum-file")
    line = (tmp_path / f"s.box.{algorithm}").read_text()
    assert line == f"{hashlib.new(algorithm, box.read_bytes()).hexdigest()}  s.box\n"
    subprocess.run([f"{algorithm}sum", "-c", f"s.box.{algorithm}"], cwd=tmp_path, check=True, capture_output=True)


def test_checksum_of_a_streamed_box(tmp_path: Path, sample_disk: Path) -> None:
    sums = tmp_path / "SHA256SUMS"
    proc = run_boxpack(sample_disk, "--provider", "libvirt", "-o", "-", "--checksum-file", sums)
    digest = hashlib.sha256(proc.stdout).hexdigest()
    assert sums.read_text() == f"{digest}  -\n" and digest in proc.stderr.decode()
    bad = run_boxpack(sample_disk, "--provider", "libvirt", "-o", "-", "--checksum-file", check=False)
    assert bad.returncode == 2 and "--checksum-file PATH" in bad.stderr.decode()


# --- the real client: Debian's vagrant (2.3.4), installed by .ci/run --------------------------

@pytest.fixture
def libvirt_box(tmp_path: Path, sample_disk: Path) -> Path:
    box = tmp_path / "sample-libvirt.box"
    run_boxpack(sample_disk, "--provider", "libvirt", "-o", box)
    return box


def test_vagrant_adds_the_newest_version_from_a_boxpack_catalog(tmp_path: Path, libvirt_box: Path, vagrant: Vagrant) -> None:
    cat = tmp_path / "catalog.json"
    for version in ("1.2.0", "1.10.0", "1.9.3"):
        run_boxpack("catalog", "add", cat, "--box", libvirt_box, "--name", "org/sample", "--box-version", version,
                    "--url", libvirt_box.as_uri())
    # A second architecture that old Vagrant must not pick: its URL does not exist.
    catalog.update(cat, lambda d: catalog.add(d, name="org/sample", version="1.10.0", provider="libvirt",
                                             url=(tmp_path / "missing-arm64.box").as_uri(), checksum=SHA, architecture="arm64"))
    proc = vagrant(tmp_path / "home", "box", "add", str(cat), "--provider", "libvirt")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = vagrant(tmp_path / "home", "box", "list").stdout
    assert "org/sample (libvirt, 1.10.0" in listed, listed


def test_vagrant_refuses_a_wrong_checksum(tmp_path: Path, libvirt_box: Path, vagrant: Vagrant) -> None:
    cat = tmp_path / "catalog.json"
    run_boxpack("catalog", "add", cat, "--box", libvirt_box, "--name", "org/sample", "--box-version", "1.0.0",
                "--url", libvirt_box.as_uri())
    doc = json.loads(cat.read_text())
    doc["versions"][0]["providers"][0]["checksum"] = "0" * 64
    cat.write_text(json.dumps(doc))
    proc = vagrant(tmp_path / "home", "box", "add", str(cat), "--provider", "libvirt")
    assert proc.returncode != 0
    assert "checksum" in (proc.stdout + proc.stderr).lower()
    assert "org/sample" not in vagrant(tmp_path / "home", "box", "list").stdout


def test_json_result_validates_for_every_provider(tmp_path: Path, sample_disk: Path) -> None:
    """`boxpack --json`: one document on stdout, valid against schemas/pack-result.schema.json; the summary on stderr."""
    from boxpack.metadata import validate
    from boxpack.providers import PROVIDERS

    args = [x for p in PROVIDERS for x in ("--provider", p)]
    proc = run_boxpack(sample_disk, *args, "-o", f"{tmp_path}/out/", "--json")
    doc = json.loads(proc.stdout)
    validate(doc, "pack-result.schema.json", "boxpack --json")
    assert sorted(b["provider"] for b in doc["boxes"]) == sorted(PROVIDERS)
    for b in doc["boxes"]:
        assert Path(b["path"]).stat().st_size == b["size"] and b["firmware"] == "efi" and b["disks"][0]["virtual_size"] == 2 * 1024**3
    assert proc.stderr.decode().count("boxpack: ") == len(PROVIDERS)
    bad = run_boxpack(sample_disk, "--provider", "libvirt", "-o", "-", "--json", check=False)
    assert bad.returncode == 2 and "choose one" in bad.stderr.decode()
