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

The catalogs and their copies are publish.py's: this module moves objects and offers the one
conditional write (put with if_absent or if_version).
"""

from __future__ import annotations

import base64
import hashlib
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ...errors import BadOption, BoxpackError, CannotRun, InternalError, OutputFailed
from ..layout import BOX_CACHE
from .base import Redirect, Stat

MIB = 1024 * 1024
# Part sizes by part number. A rerun reuses the parts an interrupted upload left when they are the
# same bytes, so the boundaries depend on nothing but the part number; 10,000 parts (S3's limit)
# hold 1.25 TiB. Parts wait in temporary files, never in memory: RSS stays flat at any part size.
PART_SIZES = ((2000, 16 * MIB), (6000, 64 * MIB), (10000, 256 * MIB))
MAX_PARTS = PART_SIZES[-1][0]
UPLOAD_THREADS = 4
PARTS_QUEUED = 4  # parts written but not yet sent: the packer waits beyond that


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


def _session() -> Any:
    import boto3

    return boto3.session.Session()


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
    session = _session()
    client = session.client("s3", endpoint_url=endpoint_url or None, config=Config(**settings, s3=s3))
    host = client.meta.endpoint_url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    if not host.endswith((".amazonaws.com", ".amazonaws.com.cn")):
        client = session.client("s3", endpoint_url=endpoint_url or None,
                                config=Config(**settings, s3={**s3, "addressing_style": "path"}))
    return client


class S3Store:
    """Objects under s3://bucket/prefix."""

    nested = True  # org/box and org/box/1.0/... side by side

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

    def key(self, key: str) -> str:
        """The object's key in the bucket: under the prefix."""
        return f"{self.prefix}/{key}" if self.prefix else key

    def call(self, what: str, method: str, **kw: Any) -> Any:
        """One S3 call on the bucket; its errors said in one line (a missing object as FileNotFoundError)."""
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

    def url(self, key: str) -> str:
        """s3://bucket/prefix/key, for messages."""
        return f"s3://{self.bucket}/{self.key(key)}"

    def get(self, key: str, limit: int) -> tuple[bytes, str] | None:
        try:
            r = self.call(f"{self.url(key)}: cannot read", "get_object", Key=self.key(key))
        except FileNotFoundError:
            return None
        with r["Body"] as body:
            if r.get("ContentLength", 0) > limit:
                raise OutputFailed(f"{self.url(key)}: {r['ContentLength']} bytes, more than the {limit} expected here")
            return body.read(limit + 1)[:limit], r["ETag"]

    def stat(self, key: str) -> Stat | None:
        try:
            r = self.call(f"{self.url(key)}: cannot stat", "head_object", Key=self.key(key))
        except FileNotFoundError:
            return None
        return Stat(r["ContentLength"], r.get("ETag"), r["LastModified"].timestamp() if r.get("LastModified") else 0.0)

    def list(self, prefix: str) -> Iterator[str]:
        more: dict[str, str] = {}
        while True:
            page = self.call(f"{self.url(prefix)}: cannot list", "list_objects_v2", Prefix=self.key(prefix), **more)
            for o in page.get("Contents", []):
                yield o["Key"].removeprefix(f"{self.prefix}/" if self.prefix else "")
            if not page.get("IsTruncated"):
                return
            more = {"ContinuationToken": page["NextContinuationToken"]}

    def deliver(self, key: str, seconds: int) -> Redirect | None:
        """A URL that gets the object without credentials, for seconds: the bytes go from the store to the client."""
        if self.stat(key) is None:
            return None
        return Redirect(self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": self.key(key)},
                                                           ExpiresIn=seconds))

    def anyone_reads(self, key: str) -> str | None:
        """Asked as anyone: an unsigned HEAD of key at the endpoint (a bucket policy or an anonymous identity
        that lets everyone read)."""
        from botocore import UNSIGNED
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        meta = self.client.meta
        unsigned = _session().client("s3", endpoint_url=meta.endpoint_url, region_name=meta.region_name,
                                     config=meta.config.merge(Config(signature_version=UNSIGNED)))
        try:
            unsigned.head_object(Bucket=self.bucket, Key=self.key(key))
        except (BotoCoreError, ClientError):
            return None
        return f"{meta.endpoint_url}/{self.bucket}/{self.key(key)}"

    def _put(self, key: str, data: bytes, content_type: str, cache: str | None = None, **conditions: str) -> str:
        extra = {"CacheControl": cache} if cache else {}
        r = self.call(
            f"{self.url(key)}: cannot write", "put_object", Key=self.key(key), Body=data, ContentType=content_type,
            ContentMD5=base64.b64encode(hashlib.md5(data).digest()).decode(), **extra, **conditions,
        )
        return r.get("ETag") or '"' + hashlib.md5(data).hexdigest() + '"'

    def put(self, key: str, data: bytes, content_type: str, cache: str | None = None, *, if_absent: bool = False,
            if_version: str | None = None) -> bool:
        conditions: dict[str, str] = {}
        if if_absent or if_version is not None:
            if_match = self._conditions()
            conditions = {"IfNoneMatch": "*"} if if_absent else {"IfMatch": if_match(str(if_version))}
        try:
            self._put(key, data, content_type, cache, **conditions)
        except _Precondition:
            return False
        return True

    def delete(self, key: str) -> None:
        try:
            self.call(f"{self.url(key)}: cannot delete", "delete_object", Key=self.key(key))
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

    # --- boxes --------------------------------------------------------------------------------

    def upload(self, key: str, *, resume: bool = True) -> _MultipartUpload:
        return _MultipartUpload(self, key, resume)


class _MultipartUpload:
    """A box streamed into a multipart upload: parts go to a temporary file each and are hashed (MD5) and
    sent by a few threads while the box is still being written. A part that an interrupted upload of
    the same key already holds, byte for byte (its ETag is the part's MD5), is not sent again."""

    def __init__(self, store: S3Store, key: str, resume: bool = True) -> None:
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
        self._upload_id, self._held = self._resume_or_create(resume)

    def _resume_or_create(self, resume: bool) -> tuple[str, dict[int, tuple[str, int]]]:
        full = self.store.key(self.key)
        what = f"{self.store.url(self.key)}: cannot upload"
        try:
            listed = self.store.call(what, "list_multipart_uploads", Prefix=full).get("Uploads", []) if resume else []
        except BoxpackError:  # no permission to list uploads: start afresh
            listed = []
        mine = sorted((u for u in listed if u["Key"] == full), key=lambda u: u["Initiated"])
        if mine:
            upload_id = mine[-1]["UploadId"]
            held: dict[int, tuple[str, int]] = {}
            try:
                marker = 0
                while True:
                    r = self.store.call(what, "list_parts", Key=full, UploadId=upload_id, PartNumberMarker=marker)
                    for p in r.get("Parts", []):
                        held[p["PartNumber"]] = (p["ETag"], p["Size"])
                    if not r.get("IsTruncated"):
                        break
                    marker = r["NextPartNumberMarker"]
                return upload_id, held
            except FileNotFoundError:  # completed or aborted meanwhile
                pass
        r = self.store.call(what, "create_multipart_upload", Key=full, ContentType="application/octet-stream",
                             CacheControl=BOX_CACHE)
        return r["UploadId"], {}

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            try:
                if self._spool is None:
                    self._raise_failed()
                    self._spool = tempfile.TemporaryFile(prefix="boxpack-part-")
                    self._spool_len = 0
                room = part_size(self._parts + 1) - self._spool_len
                piece = view[:room]
                self._spool.write(piece)
            except OSError as e:  # not the source's error: a caller reading a download would retry it, or blame it
                raise OutputFailed(f"{tempfile.gettempdir()}: cannot write the spool of an upload's part: {e.strerror} "
                                   "(TMPDIR chooses where parts wait)") from None
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
            r = self.store.call(
                f"{self.store.url(self.key)}: part {number}", "upload_part", Key=self.store.key(self.key),
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
            raise InternalError(f"internal error: {self.store.url(self.key)}: nothing to upload")
        for f in self._futures:
            f.result()
        self._pool.shutdown()

    def commit(self, replace: bool) -> None:
        what = f"{self.store.url(self.key)}: cannot complete the upload"
        parts = [{"PartNumber": n, "ETag": self._etags[n]} for n in sorted(self._etags)]
        self.store.call(what, "complete_multipart_upload", Key=self.store.key(self.key), UploadId=self._upload_id,
                         MultipartUpload={"Parts": parts})
        stat = self.store.stat(self.key)
        if stat is None or stat.size != self.size:
            raise OutputFailed(f"{self.store.url(self.key)}: the store holds {stat.size if stat else 'no'} bytes after the "
                               f"upload of {self.size}")
        # Where the store's part ETags are MD5s (not with SSE-KMS), the object's is the MD5 of theirs.
        if all(_is_md5(e) for e in self._etags.values()):
            expected = hashlib.md5(b"".join(self._md5s[n] for n in sorted(self._md5s))).hexdigest() + f"-{self._parts}"
            if (stat.etag or "").strip('"') != expected:
                raise OutputFailed(f"{self.store.url(self.key)}: the store's ETag {stat.etag} is not that of the bytes "
                                   f"sent ({expected})")

    def abort(self) -> None:
        for f in self._futures:
            f.cancel()
        self._pool.shutdown(wait=True)
        if self._spool is not None:
            self._spool.close()
        try:
            self.store.call(f"{self.store.url(self.key)}: cannot abort", "abort_multipart_upload",
                             Key=self.store.key(self.key), UploadId=self._upload_id)
        except (BoxpackError, FileNotFoundError):
            pass
