"""HTTP downloads for boxpack mirror: catalogs and boxes, over slow, flaky and hostile networks.

What Vagrant's curl does (lib/vagrant/util/downloader.rb: --fail --location --max-redirs 10), and
what a mirror of tens of GB needs besides:
- a download cut short continues where it stopped, with a Range request (from the original URL, so a
  signed redirect that has expired meanwhile is signed again); a server that ignores Range sends the
  whole box again and the bytes already had are skipped; a 206 answer is read up to the end its
  Content-Range gives, and the rest asked for again;
- retries with exponential backoff and jitter on connection errors, timeouts and 5xx; on 429 the wait
  is the server's Retry-After, else X-RateLimit-Reset (Vagrant Cloud's, epoch seconds; v2.mdx,
  request-limits.mdx), at most MAX_WAIT and said when long; what cannot change (a 4xx, a URL urllib
  cannot fetch) is not retried;
- catalogs are asked for with Accept: application/json: HCP answered HTML to clients that did not
  (hashicorp/vagrant#13571);
- a token (VAGRANT_CLOUD_TOKEN) goes only to the host the catalog came from, never across a redirect,
  as Vagrant's add_downloader_authentication.rb sends it only to the server's host;
- only http(s) is fetched and followed (urllib alone would follow a redirect to ftp:); a request a
  catalog from the internet asks for may reach only internet addresses (not loopback, link-local such
  as 169.254.169.254, or private networks), redirects included;
- a transfer may be given a total time, and a low-speed limit (curl's --speed-limit and --speed-time):
  a server sending a byte every few seconds never trips a read timeout.
Uses urllib, so HTTPS_PROXY and the system's certificates apply as for any Python program.
"""

from __future__ import annotations

import email.utils
import http.client
import ipaddress
import json
import logging
import math
import os
import random
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from .. import __version__
from ..errors import BadInput, BoxpackError, NotFound

USER_AGENT = f"boxpack/{__version__}"
CHUNK = 1024 * 1024
RETRIES = 8  # for a box: minutes of backoff before one is given up
CATALOG_RETRIES = 3  # for a catalog: a wrong server is said within seconds
TIMEOUT = 60
MAX_WAIT = 60.0  # the longest one 429 or backoff makes a transfer wait
SCHEMES = ("http", "https")
MAX_VALUES = 400_000  # in a catalog: 30,000 provider entries of HCP's shape; bento's largest has about 2,000
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
log = logging.getLogger("boxpack")


class NotFetched(BadInput):
    """A URL boxpack does not fetch (not http(s), or not on the internet when it must be)."""


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follow up to 10 redirects (curl --max-redirs 10) to http(s) only, keep the method (urllib turns HEAD
    into GET), and keep a request that may reach only internet addresses to them."""

    max_redirections = 10

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request | None:
        if urllib.parse.urlparse(newurl).scheme not in SCHEMES:
            raise NotFetched(f"{req.full_url}: redirects to {newurl.split(':', 1)[0]}:, which is not followed (http and https only)")
        public_only = getattr(req, "public_only", False)
        if public_only:
            check_public(newurl)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            new.method = req.get_method()
            new.public_only = public_only  # type: ignore[attr-defined]
        return new


_opener = urllib.request.build_opener(_Redirects)


def not_public(host: str) -> str | None:
    """An address host resolves to that is not on the internet (loopback, link-local, private, reserved),
    else None; None too when it does not resolve (the request then fails on its own)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        mapped = getattr(address, "ipv4_mapped", None)
        if not (mapped or address).is_global:
            return str(address)
    return None


def check_public(url: str) -> None:
    """BadInput when url's host is not on the internet."""
    host = urllib.parse.urlparse(url).hostname or ""
    address = not_public(host)
    if address:
        raise NotFetched(f"{url}: {host} is {address}, not an internet address, and a catalog from the internet "
                       "names it (--allow-private-addresses copies it)")


def _request(url: str, method: str, headers: dict[str, str] | None, token: str | None, public_only: bool) -> Any:
    if urllib.parse.urlparse(url).scheme not in SCHEMES:
        raise NotFetched(f"{url}: not an http or https URL")
    if public_only:
        check_public(url)
    req = urllib.request.Request(url, method=method, headers={"User-Agent": USER_AGENT, **(headers or {})})
    req.public_only = public_only  # type: ignore[attr-defined]
    if token:
        req.add_unredirected_header("Authorization", f"Bearer {token}")  # never sent on to a redirect's host
    return _opener.open(req, timeout=TIMEOUT)


def _wait(attempt: int, error: Exception) -> float:
    """Seconds to wait before the next attempt: the server's word on 429, else backoff with jitter."""
    if isinstance(error, urllib.error.HTTPError) and error.code == 429:
        after = (error.headers.get("Retry-After") or "").strip()
        if after.isdigit():
            return min(MAX_WAIT, float(after))
        if after:
            try:
                return min(MAX_WAIT, max(0.0, email.utils.parsedate_to_datetime(after).timestamp() - time.time()))
            except (TypeError, ValueError):  # "soon": neither seconds nor a date, so backoff
                pass
        reset = (error.headers.get("X-RateLimit-Reset") or "").strip()
        if reset.isdigit():
            return min(MAX_WAIT, max(0.0, float(reset) - time.time()))
    return min(MAX_WAIT, 0.5 * 2**attempt) * random.uniform(0.5, 1.5)


def _retrying(url: str, attempt: int, error: Exception, retries: int = RETRIES) -> None:
    """Raise unless error is one a later attempt may not meet; else wait, saying so when it is long."""
    if isinstance(error, urllib.error.HTTPError):
        if error.code in (404, 410):  # retrying cannot help
            raise NotFound(f"{url}: {error.code} {error.reason}") from None
        if error.code not in (408, 425, 429) and error.code < 500:
            raise BadInput(f"{url}: {error.code} {error.reason}") from None
    elif isinstance(error, urllib.error.URLError) and not isinstance(error.reason, OSError):
        raise BadInput(f"{url}: {error.reason}") from None  # not the network: the same again next time
    if attempt + 1 >= retries:
        raise BadInput(f"{url}: {_describe(error)} ({retries} attempts)") from None
    wait = _wait(attempt, error)
    if wait >= 10:
        log.warning("%s: %s; waiting %.0f s before attempt %d of %d", urllib.parse.urlparse(url).netloc,
                    _describe(error), wait, attempt + 2, retries)
    time.sleep(wait)


def _describe(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"{error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


def _open(url: str, method: str = "GET", headers: dict[str, str] | None = None, token: str | None = None,
          retries: int = RETRIES, public_only: bool = False) -> Any:
    """The response, once the request went through (retried as _retrying says)."""
    for attempt in range(retries):
        try:
            return _request(url, method, headers, token, public_only)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            _retrying(url, attempt, e, retries)
    raise AssertionError("unreachable")


def _local(url: str) -> str | None:
    """The path of a file:// URL, else None."""
    return urllib.request.url2pathname(urllib.parse.urlparse(url).path) if url.startswith("file://") else None


def get_json(url: str, limit: int, token: str | None = None) -> Any:
    """A catalog: at most limit bytes of JSON."""
    path = _local(url)
    try:
        if path is not None:
            with open(path, "rb") as f:
                data = f.read(limit + 1)
        else:
            with _open(url, headers={"Accept": "application/json"}, token=token, retries=CATALOG_RETRIES) as r:
                data = r.read(limit + 1)
    except OSError as e:
        raise BadInput(f"{url}: cannot read: {e.strerror or e}") from None
    if len(data) > limit:
        raise BadInput(f"{url}: more than {limit} bytes, so not a catalog (Vagrant's limit)")
    if data.count(b",") + data.count(b"{") + data.count(b"[") > MAX_VALUES:
        raise BadInput(f"{url}: more than {MAX_VALUES} JSON values, far more than any catalog (parsed, each takes "
                       "dozens of bytes of memory)")
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise BadInput(f"{url}: not JSON, so not a catalog") from None


def small(url: str, limit: int, token: str | None = None, public_only: bool = False) -> bytes | None:
    """A small file (a box's signature), at most limit bytes; None when there is none (404, 410)."""
    path = _local(url)
    try:
        if path is not None:
            with open(path, "rb") as f:
                return f.read(limit)
        with _open(url, token=token, public_only=public_only) as r:  # a box's retries: a 429 leaves no box out
            return r.read(limit)
    except (NotFound, FileNotFoundError):
        return None
    except OSError as e:
        raise BadInput(f"{url}: cannot read: {e.strerror or e}") from None


def size(url: str, token: str | None = None, public_only: bool = False) -> int | None:
    """The size of what url serves, without downloading it: HEAD, else a one-byte Range GET (signed
    storage URLs often answer HEAD with 403). None when neither says."""
    path = _local(url)
    if path is not None:
        try:
            return os.path.getsize(path)
        except OSError:
            raise NotFound(f"{url}: no such file") from None
    for method, headers in (("HEAD", {}), ("GET", {"Range": "bytes=0-0"})):
        try:
            r = _open(url, method, headers, token, public_only=public_only)
        except (NotFound, NotFetched):
            raise
        except BoxpackError:
            continue
        with r:
            span = r.headers.get("Content-Range", "")
            if r.status == 206 and span.rsplit("/", 1)[-1].isdigit():
                return int(span.rsplit("/", 1)[1])
            if method == "HEAD" and r.headers.get("Content-Length", "").isdigit():
                return int(r.headers["Content-Length"])
    return None


def _copy_file(url: str, path: str, write: Callable[[bytes], None]) -> int:
    try:
        with open(path, "rb") as f:
            done = 0
            while chunk := f.read(CHUNK):
                write(chunk)
                done += len(chunk)
            return done
    except FileNotFoundError:
        raise NotFound(f"{url}: no such file") from None
    except OSError as e:
        raise BadInput(f"{url}: cannot read: {e.strerror}") from None


class Pace:
    """A transfer's deadline, and its low-speed limit: at least limit bytes a second over every span of seconds."""

    def __init__(self, url: str, timeout: float | None, limit: int = 0, seconds: float = 60.0) -> None:
        self.url, self.timeout, self.limit, self.seconds = url, timeout, limit, seconds
        self.deadline = time.monotonic() + timeout if timeout else math.inf
        self.since, self.got = time.monotonic(), 0

    def late(self) -> bool:
        return time.monotonic() > self.deadline

    def check(self, n: int) -> None:
        """n more bytes came: BadInput when the transfer is past its deadline or too slow."""
        now = time.monotonic()
        if now > self.deadline:
            raise BadInput(f"{self.url}: not complete after {self.timeout or 0:g} s (--timeout)")
        self.got += n
        if now - self.since >= self.seconds:
            if self.got < self.limit * self.seconds:
                raise BadInput(f"{self.url}: slower than {self.limit} bytes/s for {self.seconds:g} s (--speed-limit, "
                               "--speed-time)")
            self.since, self.got = now, 0


def copy(url: str, write: Callable[[bytes], None], token: str | None = None, *, public_only: bool = False,
         timeout: float | None = None, speed: tuple[int, float] = (0, 60.0)) -> int:
    """Stream what url serves into write, resuming after every interruption, within timeout seconds in all and
    at no less than speed[0] bytes a second over any speed[1] seconds; returns the byte count."""
    path = _local(url)
    if path is not None:
        return _copy_file(url, path, write)
    pace = Pace(url, timeout, *speed)
    t = _Transfer()
    while True:
        try:
            with _open(url, "GET", {"Range": f"bytes={t.done}-"} if t.done else {}, token, public_only=public_only) as r:
                end, total, skip = _span(url, r, t.done)
                start = t.done
                _read(r, write, pace, skip, t)
            if end is not None and t.done < end:
                raise ConnectionError(f"cut short at {t.done} of {end} bytes")
            if total is None or t.done >= total:
                return t.done
            if t.done == start:
                raise ConnectionError(f"a part without bytes at {t.done} of {total}")
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            if pace.late():
                pace.check(0)
            _retrying(url, t.attempt, e)
            t.attempt += 1


class _Transfer:
    """Bytes written so far, and the attempt the next interruption is (back to 0 with each byte)."""

    done = 0
    attempt = 0


def _span(url: str, r: Any, done: int) -> tuple[int | None, int | None, int]:
    """What an answer to a request from byte done holds: (where it ends, the whole size, bytes to skip at its start)."""
    if r.status == 206:
        span = _RANGE.fullmatch(r.headers.get("Content-Range", "").strip())
        if not span or int(span[1]) != done or int(span[2]) < done:
            raise BadInput(f"{url}: answered a Range request from {done} with {r.headers.get('Content-Range')}")
        return int(span[2]) + 1, int(span[3]) if span[3] != "*" else None, 0
    length = r.headers.get("Content-Length", "")  # the whole body (again: Range ignored, and the start skipped)
    size = int(length) if length.isdigit() else None
    return size, size, done


def _read(r: Any, write: Callable[[bytes], None], pace: Pace, skip: int, t: _Transfer) -> None:
    """The answer's body into write, its first skip bytes left out, counted in t as it goes."""
    while chunk := r.read1(CHUNK):
        pace.check(len(chunk))
        if skip:
            cut = min(skip, len(chunk))
            chunk, skip = chunk[cut:], skip - cut
        if chunk:
            write(chunk)
            t.done += len(chunk)
            t.attempt = 0
