"""A TCP relay on loopback in front of a real server: the slow, stalling or failing network between
boxpack and a store or a web server. It never answers for the server; it only delays, holds or cuts
the bytes that pass.

- rate: bytes per second in each direction, so that a kill lands in the middle of an upload;
- hold: a regular expression on the requests (client to server); when one matches, its head and
  hold_after more bytes are passed on, then nothing more: the request never completes, `held` is set;
- cut: a function of the connection's ordinal giving after how many response bytes (server to
  client) the connection is closed, or None to leave it alone: a download cut midway;
- requests: the first MiB of what clients sent, to look at what reached the server (a token?).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable


class Proxy:
    def __init__(self, host: str, port: int, *, rate: float | None = None, hold: bytes | None = None,
                 hold_after: int = 0, cut: Callable[[int], int | None] | None = None) -> None:
        self.target = (host, port)
        self.rate = rate
        self.hold = re.compile(hold) if hold else None
        self.hold_after = hold_after
        self.cut = cut
        self.held = threading.Event()
        self.sent_to_client = 0  # response bytes passed on, over all connections
        self.sent_to_server = 0  # request bytes passed on
        self.requests = bytearray()  # the first MiB that clients sent
        self._open: list[socket.socket] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        """Count afresh (rate, hold and cut may be changed between runs too)."""
        with self._lock:
            self.sent_to_client = self.sent_to_server = self.connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop relaying: no new connection (shutdown wakes the accept a close alone leaves listening), and those
        open are cut."""
        self._closed = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            for s in self._open:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                ordinal = self.connections
                self.connections += 1
            server = socket.create_connection(self.target)
            with self._lock:
                self._open += [client, server]
            limit = self.cut(ordinal) if self.cut else None
            threading.Thread(target=self._pump, args=(client, server, True, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False, limit), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool, limit: int | None) -> None:
        passed = 0
        carry = b""  # the end of the previous chunk: a request line may straddle two
        try:
            while data := src.recv(65536):
                if upstream and self.hold and not self.held.is_set():
                    joined = carry + data
                    m = self.hold.search(joined)
                    if m:
                        start = max(0, m.end() - len(carry))
                        dst.sendall(data[:start])
                        self._hold(src, dst, data[start:])
                        break
                    carry = joined[-512:]
                if limit is not None and passed + len(data) >= limit:
                    dst.sendall(data[: limit - passed])
                    with self._lock:
                        self.sent_to_client += limit - passed
                    break
                if self.rate:
                    time.sleep(len(data) / self.rate)
                dst.sendall(data)
                passed += len(data)
                with self._lock:
                    if upstream:
                        self.sent_to_server += len(data)
                        self.requests += data[: max(0, 2**20 - len(self.requests))]
                    else:
                        self.sent_to_client += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def _hold(self, src: socket.socket, dst: socket.socket, buf: bytes) -> None:
        """Pass the rest of the request's head and hold_after bytes of its body, then nothing."""
        while (end := buf.find(b"\r\n\r\n")) < 0:
            more = src.recv(65536)
            if not more:
                return
            buf += more
        cut = end + 4 + self.hold_after
        while len(buf) < cut and (more := src.recv(65536)):
            buf += more
        dst.sendall(buf[:cut])
        self.held.set()
        while src.recv(65536):  # swallow the rest: the request never completes
            pass
