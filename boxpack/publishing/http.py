"""HTTP downloads for boxpack mirror: catalogs and boxes, over slow and flaky networks.

What Vagrant's curl does (lib/vagrant/util/downloader.rb: --fail --location --max-redirs 10), and
what a mirror of tens of GB needs besides:
- a download cut short continues where it stopped, with a Range request (from the original URL, so a
  signed redirect that has expired meanwhile is signed again); a server that ignores Range sends the
  whole box again and the bytes already had are skipped;
- retries with exponential backoff and jitter on connection errors, timeouts and 5xx; on 429 the wait
  is the server's Retry-After, else X-RateLimit-Reset (Vagrant Cloud's, epoch seconds; v2.mdx,
  request-limits.mdx);
- catalogs are asked for with Accept: application/json: HCP answered HTML to clients that did not
  (hashicorp/vagrant#13571);
- a token (VAGRANT_CLOUD_TOKEN) goes only to the host the catalog came from, never across a redirect,
  as Vagrant's add_downloader_authentication.rb sends it only to the server's host.
Uses urllib, so HTTPS_PROXY and the system's certificates apply as for any Python program.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from .. import __version__
from ..errors import BadInput, BoxpackError

USER_AGENT = f"boxpack/{__version__}"
CHUNK = 1024 * 1024
RETRIES = 8  # for a box: minutes of backoff before one is given up
CATALOG_RETRIES = 3  # for a catalog: a wrong server is said within seconds
TIMEOUT = 60
MAX_WAIT = 300.0  # the longest a 429 or a backoff makes a transfer wait


class NotFound(BadInput):
    """404 or 410: retrying cannot help."""


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follow up to 10 redirects (curl --max-redirs 10) and keep the method: urllib turns HEAD into GET."""

    max_redirections = 10

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            new.method = req.get_method()
        return new


_opener = urllib.request.build_opener(_Redirects)


def _request(url: str, method: str, headers: dict[str, str] | None, token: str | None) -> Any:
    req = urllib.request.Request(url, method=method, headers={"User-Agent": USER_AGENT, **(headers or {})})
    if token:
        req.add_unredirected_header("Authorization", f"Bearer {token}")  # never sent on to a redirect's host
    return _opener.open(req, timeout=TIMEOUT)


def _wait(attempt: int, error: Exception) -> float:
    """Seconds to wait before the next attempt: the server's word on 429, else backoff with jitter."""
    if isinstance(error, urllib.error.HTTPError) and error.code == 429:
        after = error.headers.get("Retry-After")
        if after:
            if after.strip().isdigit():
                return min(MAX_WAIT, float(after))
            when = email.utils.parsedate_to_datetime(after)
            return min(MAX_WAIT, max(0.0, when.timestamp() - time.time()))
        reset = error.headers.get("X-RateLimit-Reset")
        if reset and reset.strip().isdigit():
            return min(MAX_WAIT, max(0.0, float(reset) - time.time()))
    return min(MAX_WAIT, 0.5 * 2**attempt) * random.uniform(0.5, 1.5)


def _retrying(url: str, attempt: int, error: Exception, retries: int = RETRIES) -> None:
    """Raise unless error is one a later attempt may not meet."""
    if isinstance(error, urllib.error.HTTPError):
        if error.code in (404, 410):
            raise NotFound(f"{url}: {error.code} {error.reason}") from None
        if error.code not in (408, 425, 429) and error.code < 500:
            raise BadInput(f"{url}: {error.code} {error.reason}") from None
    if attempt + 1 >= retries:
        raise BadInput(f"{url}: {_describe(error)} ({retries} attempts)") from None
    time.sleep(_wait(attempt, error))


def _describe(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"{error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


def _open(url: str, method: str = "GET", headers: dict[str, str] | None = None, token: str | None = None,
          retries: int = RETRIES) -> Any:
    """The response, once the request went through (retried as _retrying says)."""
    for attempt in range(retries):
        try:
            return _request(url, method, headers, token)
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
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise BadInput(f"{url}: not JSON, so not a catalog") from None


def size(url: str, token: str | None = None) -> int | None:
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
            r = _open(url, method, headers, token)
        except NotFound:
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


def copy(url: str, write: Callable[[bytes], None], token: str | None = None) -> int:
    """Stream what url serves into write, resuming after every interruption; returns the byte count."""
    path = _local(url)
    if path is not None:
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
    done = 0
    attempt = 0
    while True:
        try:
            with _open(url, "GET", {"Range": f"bytes={done}-"} if done else {}, token) as r:
                resumed = r.status == 206
                if resumed and not r.headers.get("Content-Range", "").startswith(f"bytes {done}-"):
                    raise BadInput(f"{url}: answered a Range request from {done} with {r.headers.get('Content-Range')}")
                skip = 0 if resumed else done  # Range ignored: the whole body again, the start skipped
                length = r.headers.get("Content-Length", "")
                total = (done if resumed else 0) + int(length) if length.isdigit() else None
                while chunk := r.read(CHUNK):
                    if skip:
                        cut = min(skip, len(chunk))
                        chunk, skip = chunk[cut:], skip - cut
                        if not chunk:
                            continue
                    write(chunk)
                    done += len(chunk)
                    attempt = 0  # progress: the next interruption starts its backoff afresh
            if total is not None and done < total:
                raise ConnectionError(f"cut short at {done} of {total} bytes")
            return done
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            _retrying(url, attempt, e)
            attempt += 1
