"""S3-compatible object storage as a publish target, through boto3.

References: the Amazon S3 API reference (PutObject with If-Match and If-None-Match,
CreateMultipartUpload, UploadPart with Content-MD5, CompleteMultipartUpload,
ListMultipartUploads, ListParts); botocore's "standard" retry mode.

What the stores tested here do (tests/servers.py starts them), measured with boto3 1.43:
- Ceph radosgw 16.2.15 and SeaweedFS 4.48 both keep Content-Type and Cache-Control, hold
  `org/box` and `org/box/1.0/...` side by side, refuse a part whose Content-MD5 is wrong
  (BadDigest) and a completion that names a wrong part ETag (InvalidPart), and give a
  multipart object the ETag md5(part md5s)-N;
- both honour If-None-Match: * and If-Match on PutObject, but radosgw compares If-Match with
  its ETag without the quotes (a quoted ETag, as RFC 9110 and AWS have it, never matches) and
  SeaweedFS with them: the first conditional write of a run probes which, and a store that
  ignores the conditions is refused (two publishers could then lose each other's entries);
- radosgw ignores If-None-Match on CompleteMultipartUpload, so a box key is claimed through
  its checksum object, a plain conditional PutObject (publish.py).
"""

from __future__ import annotations

import base64
import hashlib
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ... import catalog
from ...catalog import Catalog
from ...errors import BadOption, BoxpackError, CannotRun, InternalError, OutputFailed
from .base import API_PREFIX, BOX_CACHE, CATALOG_CACHE, CATALOG_LIMIT, Stat

MIB = 1024 * 1024
# Part sizes by part number. A rerun reuses the parts an interrupted upload left when they are the
# same bytes, so the boundaries depend on nothing but the part number; 10,000 parts (S3's limit)
# hold 1.25 TiB. Parts wait in temporary files, never in memory: RSS stays flat at any part size.
PART_SIZES = ((2000, 16 * MIB), (6000, 64 * MIB), (10000, 256 * MIB))
MAX_PARTS = PART_SIZES[-1][0]
UPLOAD_THREADS = 4
PARTS_QUEUED = 4  # parts written but not yet sent: the packer waits beyond that
CATALOG_RETRIES = 20


def part_size(number: int) -> int:
    for last, size in PART_SIZES:
        if number <= last:
            return size
    raise OutputFailed(f"a box of more than {MAX_PARTS} parts ({sum_parts() / 2**40:.2f} TiB) does not fit S3's part limit")


def sum_parts() -> int:
    first = 0
    total = 0
    for last, size in PART_SIZES:
        total += (last - first) * size
        first = last
    return total


def _is_md5(etag: str | None) -> bool:
    e = (etag or "").strip('"')
    return len(e) == 32 and all(c in "0123456789abcdef" for c in e)


class _Precondition(Exception):
    """The store refused a conditional write: someone else wrote first."""


def _client(endpoint_url: str | None) -> Any:
    """An S3 client from the standard AWS chain (environment, AWS_PROFILE, ~/.aws/config and
    credentials, AWS_ENDPOINT_URL), path-style for any endpoint but AWS's own."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise CannotRun("s3:// targets need boto3: pip install 'boxpack[s3]'") from None
    settings: dict[str, Any] = {
        "retries": {"mode": "standard", "max_attempts": 8},  # backoff with jitter on 5xx, 429, resets, timeouts
        "connect_timeout": 10,
        "read_timeout": 120,
        "max_pool_connections": UPLOAD_THREADS + 4,
        # Content-MD5 is sent with every part; botocore's default CRC trailers are refused by some stores.
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
    }
    # Every body goes with its Content-MD5, which the signature covers: botocore's own SHA-256 of each
    # body (its default over plain HTTP) would be a second hash of every byte for nothing.
    s3 = {"payload_signing_enabled": False}
    session = boto3.session.Session()
    client = session.client("s3", endpoint_url=endpoint_url or None, config=Config(**settings, s3=s3))
    host = client.meta.endpoint_url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    if not host.endswith((".amazonaws.com", ".amazonaws.com.cn")):
        client = session.client("s3", endpoint_url=endpoint_url or None,
                                config=Config(**settings, s3={**s3, "addressing_style": "path"}))
    return client


class S3Store:
    """Objects under s3://bucket/prefix."""

    def __init__(self, target: str, endpoint_url: str | None = None) -> None:
        bucket, _, prefix = target.removeprefix("s3://").partition("/")
        if not bucket:
            raise BadOption(f"{target}: no bucket; give s3://BUCKET/PREFIX")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.where = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.client = _client(endpoint_url)
        self._if_match: Callable[[str], str] | None = None  # the ETag as this store's If-Match wants it

    # --- plain calls, with the store's errors said in one line -------------------------------

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, method: str, **kw: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kw)
        except ClientError as e:
            err = e.response.get("Error", {})
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 412 or err.get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise _Precondition from None
            if err.get("Code") == "NoSuchBucket":
                raise OutputFailed(f"{self.where}: no such bucket {self.bucket!r} (boxpack does not create buckets)") from None
            if status == 404 or err.get("Code") in ("NoSuchKey", "NotFound", "NoSuchUpload"):
                raise FileNotFoundError(what) from None
            message = err.get("Message") or ""
            raise OutputFailed(f"{what}: {err.get('Code') or status}{': ' + message if message else ''}") from None
        except NoCredentialsError:
            raise OutputFailed(
                f"{self.where}: no S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
            ) from None
        except BotoCoreError as e:
            raise OutputFailed(f"{what}: {e}") from None

    def _url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def read_small(self, key: str, limit: int) -> bytes | None:
        got = self._get(key, limit)
        return got[0] if got else None

    def _get(self, key: str, limit: int) -> tuple[bytes, str] | None:
        try:
            r = self._call(f"{self._url(key)}: cannot read", "get_object", Key=self._key(key))
        except FileNotFoundError:
            return None
        with r["Body"] as body:
            if r.get("ContentLength", 0) > limit:
                raise OutputFailed(f"{self._url(key)}: {r['ContentLength']} bytes, more than the {limit} expected here")
            return body.read(limit + 1)[:limit], r["ETag"]

    def stat(self, key: str) -> Stat | None:
        try:
            r = self._call(f"{self._url(key)}: cannot stat", "head_object", Key=self._key(key))
        except FileNotFoundError:
            return None
        return Stat(r["ContentLength"], r.get("ETag"))

    def _put(self, key: str, data: bytes, content_type: str, cache: str | None = None, **conditions: str) -> str:
        extra = {"CacheControl": cache} if cache else {}
        r = self._call(
            f"{self._url(key)}: cannot write", "put_object", Key=self._key(key), Body=data, ContentType=content_type,
            ContentMD5=base64.b64encode(hashlib.md5(data).digest()).decode(), **extra, **conditions,
        )
        return r.get("ETag") or '"' + hashlib.md5(data).hexdigest() + '"'

    def create(self, key: str, data: bytes, content_type: str) -> bool:
        self._conditions()
        try:
            self._put(key, data, content_type, IfNoneMatch="*")
        except _Precondition:
            return False
        return True

    def replace(self, key: str, data: bytes, content_type: str) -> None:
        self._put(key, data, content_type)

    def delete(self, key: str) -> None:
        try:
            self._call(f"{self._url(key)}: cannot delete", "delete_object", Key=self._key(key))
        except FileNotFoundError:
            pass

    # --- conditional writes -----------------------------------------------------------------

    def _conditions(self) -> Callable[[str], str]:
        """Find out, once, whether and how this store honours If-None-Match and If-Match."""
        if self._if_match is not None:
            return self._if_match
        probe = f".boxpack/probe-{uuid.uuid4().hex}"
        refusal = (f"{self.where}: the store ignores conditional writes ({{}}), so two publishers at once "
                   "could lose each other's catalog entries; boxpack publishes only to stores that honour them")
        try:
            try:
                self._put(probe, b"1", "text/plain", IfNoneMatch="*")
            except _Precondition:
                raise OutputFailed(refusal.format("If-None-Match: * on a new key was refused")) from None
            try:
                self._put(probe, b"2", "text/plain", IfNoneMatch="*")
                raise OutputFailed(refusal.format("If-None-Match: * replaced an object"))
            except _Precondition:
                pass
            try:
                self._put(probe, b"3", "text/plain", IfMatch='"' + "0" * 32 + '"')
                raise OutputFailed(refusal.format("If-Match with another ETag replaced an object"))
            except _Precondition:
                pass
            etag = (self.stat(probe) or Stat(0, None)).etag or ""
            for form in (lambda e: e, lambda e: e.strip('"')):
                try:
                    self._put(probe, b"4", "text/plain", IfMatch=form(etag))
                except _Precondition:
                    continue
                self._if_match = form
                return form
            raise OutputFailed(refusal.format("If-Match with the object's own ETag was refused"))
        finally:
            try:
                self.delete(probe)
            except BoxpackError:
                pass  # no delete permission: a one-byte probe stays under .boxpack/

    # --- the catalog --------------------------------------------------------------------------

    def catalog_keys(self, name: str) -> list[str]:
        return [name, f"{API_PREFIX}/{name}"]

    def read_catalog(self, name: str) -> Catalog | None:
        got = self._get(name, CATALOG_LIMIT)
        return catalog.parse(got[0], self._url(name)) if got else None

    def prepare_catalog(self, name: str) -> None:
        """Before the first box: an empty catalog where there is none. SeaweedFS takes a key that other keys
        start with for an existing object in a conditional write (If-None-Match: * is refused, If-Match: *
        accepted), so once boxes lie under <org>/<box>/ the catalog could no longer be created safely.
        This also finds out, before any upload, whether the store honours conditional writes.
        S3 cannot write two objects at once: a run killed between the catalog and its copy leaves the copy
        one update behind, so a copy that differs from the catalog is brought up to it here."""
        self._conditions()
        main, *copies = self.catalog_keys(name)
        got = self._get(main, CATALOG_LIMIT)
        if got is None:
            self.update_catalog(name, lambda doc: doc or {"name": name, "versions": []})
        elif any(self.read_small(key, CATALOG_LIMIT) != got[0] for key in copies):
            self._copy_catalog(main, copies, *got)

    def update_catalog(self, name: str, change: Callable[[Catalog | None], Catalog]) -> Catalog:
        """Optimistic concurrency: read the catalog and its ETag, write the change only if the ETag is
        still the same (If-Match; If-None-Match: * for a new catalog), else read again and redo the change."""
        if_match = self._conditions()
        main, *copies = self.catalog_keys(name)
        for attempt in range(CATALOG_RETRIES):
            got = self._get(main, CATALOG_LIMIT)
            doc = change(catalog.parse(got[0], self._url(main)) if got else None)
            data = catalog.dumps(doc)
            condition = {"IfMatch": if_match(got[1])} if got else {"IfNoneMatch": "*"}
            try:
                etag = self._put(main, data, "application/json", CATALOG_CACHE, **condition)
                break
            except _Precondition:  # another publisher wrote first: redo the change on theirs
                if not got and self._get(main, CATALOG_LIMIT) is None:
                    raise OutputFailed(
                        f"{self._url(main)}: the store refuses to create the catalog but serves none (SeaweedFS does "
                        "this once other keys start with it); while no one else publishes, upload it once by hand: "
                        f"aws s3 cp catalog.json {self._url(main)} --content-type application/json"
                    ) from None
                time.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.5))
        else:
            raise OutputFailed(f"{self._url(main)}: changed {CATALOG_RETRIES} times while this update was retried; run again")
        self._copy_catalog(main, copies, data, etag)
        return doc

    def _copy_catalog(self, main: str, copies: list[str], data: bytes, etag: str) -> None:
        """Write the copies, then read the main catalog again: if another publisher changed it meanwhile,
        copy theirs. The last writer of the main catalog thus leaves the copies equal to it."""
        for _ in range(CATALOG_RETRIES):
            for key in copies:
                self._put(key, data, "application/json", CATALOG_CACHE)
            got = self._get(main, CATALOG_LIMIT)
            if got is None or got[1] == etag:
                return
            data, etag = got
        raise OutputFailed(f"{self._url(main)}: changed {CATALOG_RETRIES} times while its copies were written; run again")

    # --- boxes --------------------------------------------------------------------------------

    def upload(self, key: str) -> _MultipartUpload:
        return _MultipartUpload(self, key)


class _MultipartUpload:
    """A box streamed into a multipart upload: parts go to a temporary file each and are hashed (MD5) and
    sent by a few threads while the box is still being written. A part that an interrupted upload of
    the same key already holds, byte for byte (its ETag is the part's MD5), is not sent again."""

    def __init__(self, store: S3Store, key: str) -> None:
        self.store, self.key = store, key
        self.size = 0
        self.resumed = 0
        self._parts = 0
        self._md5s: dict[int, bytes] = {}
        self._etags: dict[int, str] = {}
        self._spool: Any = None
        self._spool_len = 0
        self._pool = ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="boxpack-upload")
        self._queued = threading.BoundedSemaphore(PARTS_QUEUED)
        self._futures: list[Future] = []
        self._lock = threading.Lock()
        self._upload_id, self._held = self._resume_or_create()

    def _resume_or_create(self) -> tuple[str, dict[int, tuple[str, int]]]:
        full = self.store._key(self.key)
        what = f"{self.store._url(self.key)}: cannot upload"
        try:
            listed = self.store._call(what, "list_multipart_uploads", Prefix=full).get("Uploads", [])
        except BoxpackError:  # no permission to list uploads: start afresh
            listed = []
        mine = sorted((u for u in listed if u["Key"] == full), key=lambda u: u["Initiated"])
        if mine:
            upload_id = mine[-1]["UploadId"]
            held: dict[int, tuple[str, int]] = {}
            try:
                marker = 0
                while True:
                    r = self.store._call(what, "list_parts", Key=full, UploadId=upload_id, PartNumberMarker=marker)
                    for p in r.get("Parts", []):
                        held[p["PartNumber"]] = (p["ETag"], p["Size"])
                    if not r.get("IsTruncated"):
                        break
                    marker = r["NextPartNumberMarker"]
                return upload_id, held
            except FileNotFoundError:  # completed or aborted meanwhile
                pass
        r = self.store._call(what, "create_multipart_upload", Key=full, ContentType="application/octet-stream",
                             CacheControl=BOX_CACHE)
        return r["UploadId"], {}

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            if self._spool is None:
                self._raise_failed()
                self._spool = tempfile.TemporaryFile(prefix="boxpack-part-")
                self._spool_len = 0
            room = part_size(self._parts + 1) - self._spool_len
            piece = view[:room]
            self._spool.write(piece)
            self._spool_len += len(piece)
            self.size += len(piece)
            view = view[len(piece):]
            if self._spool_len == part_size(self._parts + 1):
                self._send()

    def flush(self) -> None:
        pass

    def _send(self) -> None:
        self._parts += 1
        spool, length, self._spool = self._spool, self._spool_len, None
        self._queued.acquire()  # the writer waits while PARTS_QUEUED parts are on their way
        self._futures.append(self._pool.submit(self._put_part, self._parts, spool, length))

    def _put_part(self, number: int, spool: Any, length: int) -> None:
        """Hash the part here, off the writer's thread, then send it unless the store holds it already."""
        try:
            spool.seek(0)
            digest = hashlib.file_digest(spool, "md5").digest()
            with self._lock:
                self._md5s[number] = digest
            held = self._held.get(number)
            if held and held[0].strip('"') == digest.hex() and held[1] == length:
                with self._lock:
                    self._etags[number] = held[0]
                    self.resumed += length
                return
            spool.seek(0)
            r = self.store._call(
                f"{self.store._url(self.key)}: part {number}", "upload_part", Key=self.store._key(self.key),
                UploadId=self._upload_id, PartNumber=number, Body=spool, ContentLength=length,
                ContentMD5=base64.b64encode(digest).decode(),
            )
            with self._lock:
                self._etags[number] = r["ETag"]
        finally:
            spool.close()
            self._queued.release()

    def _raise_failed(self) -> None:
        for f in self._futures:
            if f.done() and f.exception():
                raise f.exception()  # type: ignore[misc]

    def close(self) -> None:
        if self._spool is not None:
            self._send()
        if not self._parts:
            raise InternalError(f"internal error: {self.store._url(self.key)}: nothing to upload")
        for f in self._futures:
            f.result()
        self._pool.shutdown()

    def commit(self, replace: bool) -> None:
        what = f"{self.store._url(self.key)}: cannot complete the upload"
        parts = [{"PartNumber": n, "ETag": self._etags[n]} for n in sorted(self._etags)]
        self.store._call(what, "complete_multipart_upload", Key=self.store._key(self.key), UploadId=self._upload_id,
                         MultipartUpload={"Parts": parts})
        stat = self.store.stat(self.key)
        if stat is None or stat.size != self.size:
            raise OutputFailed(f"{self.store._url(self.key)}: the store holds {stat.size if stat else 'no'} bytes after the "
                               f"upload of {self.size}")
        # Where the store's part ETags are MD5s (not with SSE-KMS), the object's is the MD5 of theirs.
        if all(_is_md5(e) for e in self._etags.values()):
            expected = hashlib.md5(b"".join(self._md5s[n] for n in sorted(self._md5s))).hexdigest() + f"-{self._parts}"
            if (stat.etag or "").strip('"') != expected:
                raise OutputFailed(f"{self.store._url(self.key)}: the store's ETag {stat.etag} is not that of the bytes "
                                   f"sent ({expected})")

    def abort(self) -> None:
        for f in self._futures:
            f.cancel()
        self._pool.shutdown(wait=True)
        if self._spool is not None:
            self._spool.close()
        try:
            self.store._call(f"{self.store._url(self.key)}: cannot abort", "abort_multipart_upload",
                             Key=self.store._key(self.key), UploadId=self._upload_id)
        except (BoxpackError, FileNotFoundError):
            pass
