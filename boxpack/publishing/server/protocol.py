"""uvicorn's httptools protocol with two bounds it lacks: a request's head may take at most HEAD_BYTES and
HEAD_SECONDS. uvicorn bounds the head only with its pure-Python h11 parser (h11_max_incomplete_event_size),
which serves half the catalogs a second that httptools does here (README, "Private boxes and box pages"),
and httptools takes a header of any size into memory: 20 MB were answered 200 here. A client that sends
its head slowly would otherwise hold a connection open for ever (uvicorn times out idle keep-alive
connections only).

The head is counted twice: as it arrives (a head still open may hold at most one read beyond the bound),
and as the parser hands over its request line and headers (a whole head that arrives in one read, which the
first count never sees open, is refused before any route sees it)."""

from __future__ import annotations

import asyncio
from typing import cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_BYTES = 16 * 1024  # the request line and headers; Vagrant's are under 1 KiB
HEAD_SECONDS = 10.0
TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
TOO_SLOW = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class BoundedHttpTools(HttpToolsProtocol):
    _head = 0  # bytes received of the head being read, or -1 once it is complete
    _parsed = 0  # bytes of request line and headers the parser handed over
    _head_timer: asyncio.TimerHandle | None = None
    _refused = False  # answered and closing: nothing more of this connection is read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(cast(asyncio.Transport, transport))  # a stream's, as uvicorn takes it
        self._next_head()

    def _next_head(self) -> None:
        self._head = 0
        self._head_timer = self.loop.call_later(HEAD_SECONDS, self._refuse, TOO_SLOW)

    def _refuse(self, answer: bytes) -> None:
        self._refused = True
        if not self.transport.is_closing():
            self.transport.write(answer)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        """Counted after the parser has seen it: a chunk that ends the head and starts the body counts nothing
        (on_headers_complete); one of a head still open counts whole."""
        if self._refused:
            return
        super().data_received(data)
        if self._head >= 0:
            self._head += len(data)
            if self._head > HEAD_BYTES:
                self._refuse(TOO_LARGE)

    def on_message_begin(self) -> None:
        self._parsed = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._parsed += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head = -1
        if self._head_timer:
            self._head_timer.cancel()
        if self._parsed > HEAD_BYTES:
            self._refuse(TOO_LARGE)
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._next_head()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer:
            self._head_timer.cancel()
        super().connection_lost(exc)
