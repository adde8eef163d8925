"""`boxpack serve`'s application under uvicorn in a thread of the test's own process, over a store the test holds:
so a test can stop the server's store calls at a chosen point with an event (a write held until another
request has run) and talk to it over real HTTP. What holds across processes (workers, replicas over one
store) is tested on `boxpack serve` itself (served.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from served import free_port

from boxpack.publishing.server.app import create_app
from boxpack.publishing.server.context import Config
from boxpack.publishing.server.protocol import BoundedHttpTools


class InProcess:
    """The application on a loopback port, in a thread: its URL, and stop()."""

    def __init__(self, store: Any, **config: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(Config(store=store.where, public_url=self.url, **config), store)
        settings = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_config=None, access_log=False,
                                  http=BoundedHttpTools, lifespan="off", timeout_keep_alive=5)
        self.server = uvicorn.Server(settings)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise AssertionError("the in-process server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


class Held:
    """A store whose calls pass through, except those a test holds: hold(method, match) returns (reached, go):
    the first call of method whose key matches sets reached and waits for go (then runs). Calls are counted."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.where, self.nested = store.where, store.nested
        self.calls: list[tuple[str, str]] = []
        self._holds: list[tuple[str, Callable[[str], bool], threading.Event, threading.Event]] = []
        self._lock = threading.Lock()

    def hold(self, method: str, match: Callable[[str], bool]) -> tuple[threading.Event, threading.Event]:
        reached, go = threading.Event(), threading.Event()
        self._holds.append((method, match, reached, go))
        return reached, go

    def _call(self, method: str, key: str, *args: Any, **kw: Any) -> Any:
        with self._lock:
            self.calls.append((method, key))
            held = next((h for h in self._holds if h[0] == method and h[1](key)), None)
            if held:
                self._holds.remove(held)
        if held:
            held[2].set()
            assert held[3].wait(60), f"{method} {key} was held for a minute"
        return getattr(self.store, method)(key, *args, **kw)

    def count(self, method: str, match: Callable[[str], bool]) -> int:
        return sum(1 for m, k in self.calls if m == method and match(k))

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.store, name)
        if name in ("get", "put", "stat", "delete", "upload", "list", "deliver"):
            return lambda key, *a, **kw: self._call(name, key, *a, **kw)
        return attribute


def raw(port: int, request: bytes, read: bool = True, timeout: float = 30) -> tuple[int, bytes]:
    """The status and head a raw request gets (0 when the server closes without an answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout) as s:
        try:
            s.sendall(request)
            answer = s.recv(65536) if read else b""
        except OSError:
            return 0, b""
    return (int(answer.split(b" ")[1]) if answer.startswith(b"HTTP/1.1 ") else 0), answer
