"""A running `boxpack serve` for the tests, and the requests and commands they make of it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

from conftest import Target, run_boxpack


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A running `boxpack serve` over a target: its URL, its log, and how to stop it."""

    def __init__(self, target: Target, tmp_path: Path, store_url: str | None = None, workers: int = 2) -> None:
        self.target, self.port = target, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"serve-{self.port}.log"
        env = {**os.environ, **target.env, **({"AWS_ENDPOINT_URL": store_url} if store_url else {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "boxpack", "serve", "--store", target.to, "--listen", f"127.0.0.1:{self.port}",
             "--public-url", self.url, "--workers", str(workers)],
            env=env, stdout=subprocess.DEVNULL, stderr=self.log.open("wb"), start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"boxpack serve exited: {self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"boxpack serve did not listen: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def get(url: str, token: str | None = None, method: str = "GET", **headers: str) -> tuple[int, Message, bytes]:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def publish(target: Target, box: Path, name: str, version: str, *extra: str) -> None:
    run_boxpack("publish", box, "--to", target.to, "--name", name, "--box-version", version, "--base-url",
                target.base_url, *extra, env=target.env)


def token(target: Target, scope: str, right: str = "--read") -> str:
    proc = run_boxpack("serve", "token", "create", scope, right, "--store", target.to, env=target.env)
    [line] = proc.stdout.decode().splitlines()  # the token, alone on stdout
    return line


def settle() -> None:
    """Longer than a worker reuses what it read from the store (Config.fresh)."""
    time.sleep(2.2)
