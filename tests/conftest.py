"""Shared helpers: run boxpack as users do, and read its output with real tools."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fixtures"))

import make_disk  # noqa: E402

MIB = 1024 * 1024
GIB = 1024 * MIB


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test marked first_case_quick runs its first case in the quick tier and the others with -m slow:
    the quick run checks the behaviour once, the slow one in every format, provider and server. Marked
    first_case_quick("vagrant"), its first case for each value of that parameter is quick (each client once)."""
    seen: set[tuple] = set()
    for item in items:
        marker = item.get_closest_marker("first_case_quick")
        if marker:
            params = getattr(getattr(item, "callspec", None), "params", {})
            case = (item.nodeid.split("[")[0], *(params.get(name) for name in marker.args))
            if case in seen:
                item.add_marker(pytest.mark.slow)
            seen.add(case)


def run_boxpack(*args: str | os.PathLike, env: dict | None = None, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """boxpack as a subprocess, the way a user or an mkosi script runs it."""
    full_env = {**os.environ, **(env or {})}
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    proc = subprocess.run([sys.executable, "-m", "boxpack", *map(str, args)], env=full_env, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"boxpack failed ({proc.returncode}): {proc.stderr.decode()}")
    return proc


def writing(pid: int, directory: Path) -> bool:
    """Whether process pid has a file in directory open for writing (a box being written, under a temporary name
    or none): the moment to kill it, however long the machine takes to get there."""
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            flags = int((fd.parent.parent / "fdinfo" / fd.name).read_text().split("flags:")[1].split()[0], 8)
            if str(fd.readlink()).startswith(str(directory) + "/") and flags & os.O_ACCMODE != os.O_RDONLY:
                return True
        except (OSError, IndexError, ValueError):
            continue
    return False


def bsdtar_list(box: Path) -> list[str]:
    out = subprocess.run(["bsdtar", "-tf", str(box)], capture_output=True, check=True, text=True)
    return out.stdout.split()


def extract(box: Path, dest: Path) -> Path:
    """Extract with bsdtar exactly as Vagrant does."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["bsdtar", "--no-same-owner", "--no-same-permissions", "-x", "-m", "-S", "-C", str(dest), "-f", str(box)],
        check=True,
    )
    return dest


def qemu_check(image: Path, fmt: str) -> dict:
    """`qemu-img check` as JSON; fails the test on any corruption or leak."""
    proc = subprocess.run(
        ["qemu-img", "check", "-f", fmt, "--output=json", str(image)], capture_output=True, text=True
    )
    assert proc.returncode == 0, f"qemu-img check rc={proc.returncode}: {proc.stdout}{proc.stderr}"
    report = json.loads(proc.stdout)
    assert report.get("corruptions", 0) == 0 and report.get("leaks", 0) == 0, report
    return report


def qemu_compare(image: Path, fmt: str, raw: Path) -> None:
    proc = subprocess.run(
        ["qemu-img", "compare", "-f", fmt, "-F", "raw", str(image), str(raw)], capture_output=True, text=True
    )
    assert proc.returncode == 0, f"qemu-img compare: {proc.stdout}{proc.stderr}"


def qemu_info(image: Path) -> dict:
    out = subprocess.run(["qemu-img", "info", "--output=json", str(image)], capture_output=True, check=True, text=True)
    return json.loads(out.stdout)


def write_box(path: Path, members: Iterable[tuple[str, bytes]]) -> Path:
    """A hand-made box: a GNU tar of members (name, bytes), in the order given, gzipped."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buf.getvalue()))
    return path


def box_members(box: Path) -> dict[str, bytes]:
    """A box's regular files by name."""
    with tarfile.open(box) as t:
        return {m.name: t.extractfile(m).read() for m in t if m.isfile()}


def verify_codes(box: Path) -> set[str]:
    """The finding codes `boxpack verify --json` reports for a box."""
    return {f["code"] for f in json.loads(run_boxpack("verify", box, "--json", check=False).stdout)["findings"]}


@pytest.fixture
def sample_disk(tmp_path: Path) -> Path:
    return make_disk.make(tmp_path / "sample.img", data=4 * MIB)


# --- real servers for publish and mirror: two S3 implementations and nginx (tests/servers.py) ------

def unavailable(what: str, why: str) -> None:
    """Skip where a real server or client cannot run here; in CI (.ci/run sets BOXPACK_REQUIRE_REAL) fail instead."""
    if os.environ.get("BOXPACK_REQUIRE_REAL"):
        pytest.fail(f"{what} is required in CI but could not start: {why}")
    pytest.skip(f"{what} not available here: {why}")


# --- the real clients: Debian's Vagrant 2.3.4, and Vagrant 2.4.9 from its source --------------------

VAGRANTS = ["2.3.4", "2.4.9"]


def third_party() -> Path:
    """Where Vagrant 2.4.9's and the vagrant_cloud gem's sources lie: BOXPACK_THIRD_PARTY, else the project's
    sibling shared/third-party (.ci/run sets the variable for a clone made elsewhere)."""
    return Path(os.environ.get("BOXPACK_THIRD_PARTY") or ROOT.parent / "shared" / "third-party")


class Vagrant:
    """A real Vagrant, run as a user runs it, with its own VAGRANT_HOME (2.3.4's and 2.4.9's kept apart)."""

    def __init__(self, version: str, command: list[str]) -> None:
        self.version, self.command = version, command

    def __call__(self, home: Path, *args: str, server: str | None = None, env: dict[str, str] | None = None,
                 timeout: int = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
        full = {**os.environ, "VAGRANT_HOME": str(home), "VAGRANT_CHECKPOINT_DISABLE": "1", "VAGRANT_NO_COLOR": "1",
                **({"VAGRANT_SERVER_URL": server} if server else {}), **(env or {})}
        return subprocess.run([*self.command, *args], env=full, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, cwd=cwd)

    def __repr__(self) -> str:
        return f"Vagrant {self.version}"


@pytest.fixture(scope="session")
def _vagrant_source(tmp_path_factory) -> Path | str:
    """Vagrant 2.4.9 unpacked beside the vagrant_cloud 3.1.3 gem, or why it cannot be (see shared/third-party)."""
    tarballs = [third_party() / "vagrant-2.4.9.tar.gz", third_party() / "vagrant_cloud-3.1.3.tar.gz"]
    missing = [str(t) for t in tarballs if not t.is_file()]
    if missing:
        return f"{', '.join(missing)} not found (set BOXPACK_THIRD_PARTY to the folder that holds them)"
    if not shutil.which("ruby"):
        return "ruby is not installed (apt-get install vagrant brings Ruby and the gems 2.4.9 runs on)"
    where = tmp_path_factory.mktemp("third-party")
    for tarball in tarballs:
        subprocess.run(["tar", "-xzf", str(tarball), "-C", str(where)], check=True)
    return where


@pytest.fixture(params=VAGRANTS)
def vagrant(request) -> Vagrant:
    """Each real Vagrant in turn: Debian 12's 2.3.4, and 2.4.9 on Debian's Ruby and the gems 2.3.4 brings."""
    if request.param == "2.3.4":
        if not shutil.which("vagrant"):
            unavailable("Vagrant 2.3.4", "not installed (apt-get install vagrant)")
        return Vagrant("2.3.4", ["vagrant"])
    source = request.getfixturevalue("_vagrant_source")
    if isinstance(source, str) or not shutil.which("vagrant"):
        unavailable("Vagrant 2.4.9", source if isinstance(source, str) else "Debian's vagrant package (its gems) is not installed")
    return Vagrant("2.4.9", ["ruby", "-I", str(source / "vagrant_cloud-3.1.3" / "lib"), "-I",
                             str(source / "vagrant-2.4.9" / "lib"), str(source / "vagrant-2.4.9" / "bin" / "vagrant")])


@pytest.fixture(scope="session")
def _servers(tmp_path_factory):
    import servers

    started: dict = {}
    failed: dict = {}

    def get(name: str):
        if name not in started and name not in failed:
            try:
                started[name] = {"ceph": servers.ceph, "seaweedfs": servers.seaweedfs}[name](tmp_path_factory.mktemp(name))
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                failed[name] = f"{type(e).__name__}: {e}"
        if name in failed:
            unavailable(f"the {name} S3 server", failed[name])
        return started[name]

    yield get
    for s in started.values():
        s.stop()


S3_SERVERS = ["ceph", "seaweedfs"]


class Target:
    """Where a test publishes: an S3 bucket on a real server, or a directory served by nginx."""

    def __init__(self, kind: str, to: str, base_url: str, env: dict[str, str], server, bucket: str | None = None,
                 root: Path | None = None) -> None:
        self.kind, self.to, self.base_url, self.env = kind, to, base_url, env
        self.server, self.bucket, self.root = server, bucket, root

    def key(self, key: str) -> str:
        """The key under the target of a layout path (the S3 targets use a prefix)."""
        return f"vagrant/{key}" if self.bucket else key

    def read(self, key: str) -> bytes | None:
        """An object as stored (not through HTTP)."""
        if self.bucket:
            try:
                return self.server.client().get_object(Bucket=self.bucket, Key=self.key(key))["Body"].read()
            except self.server.client().exceptions.NoSuchKey:
                return None
        path = self.root / key
        return path.read_bytes() if path.exists() else None

    def write(self, key: str, data: bytes) -> None:
        """Change an object behind boxpack's back (a tampered or corrupted box)."""
        if self.bucket:
            self.server.client().put_object(Bucket=self.bucket, Key=self.key(key), Body=data,
                                            ContentType="application/octet-stream")
        else:
            (self.root / key).write_bytes(data)

    def listing(self) -> set[str]:
        if self.bucket:
            pages = self.server.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
            return {o["Key"].removeprefix("vagrant/") for page in pages for o in page.get("Contents", [])}
        return {str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()}


def s3_target(server, public: bool = True) -> Target:
    bucket = server.bucket(public)
    return Target(server.name, f"s3://{bucket}/vagrant", server.url(bucket, "vagrant"), server.env, server, bucket=bucket)


@pytest.fixture(params=S3_SERVERS)
def s3(request, _servers) -> Target:
    """A fresh public-read bucket on each real S3 server in turn."""
    return s3_target(_servers(request.param))


@pytest.fixture
def web(tmp_path: Path) -> Target:
    """A directory target served by nginx with the README's configuration."""
    import servers

    if not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists():
        unavailable("nginx", "not installed (apt-get install nginx)")
    root = tmp_path / "site"
    root.mkdir()
    server = servers.nginx(tmp_path / "nginx", root, servers.readme_nginx_block())
    yield Target("nginx", str(root), server.url, {}, server, root=root)
    server.stop()


@pytest.fixture(params=[*S3_SERVERS, "nginx"])
def target(request, _servers, tmp_path: Path) -> Target:
    """Each kind of target in turn: both S3 servers and a directory behind nginx."""
    if request.param == "nginx":
        yield request.getfixturevalue("web")
    else:
        yield s3_target(_servers(request.param))
