"""Content-addressed storage of blobs and manifests in S3: `<prefix>blobs/sha256/<hex>`.

Each object's bytes hash to its name, as in an OCI image layout. Writes are
conditional (If-None-Match: *) so an object, once there, is never overwritten, and a
concurrent identical write is success. Large blobs stream through a multipart upload;
the upload completes (becomes visible) only after the whole stream matched its
descriptor's SHA-256 and size, else it is aborted and nothing is stored.

Integrity end to end: the SHA-256 of every byte read is checked against the digest
before completion, and each part carries a CRC32 that S3 checks on receipt, so a part
damaged on its way is refused. The parts' checksum is CRC32, not SHA-256, because
the digest already proves the content: a second SHA-256 pass only catches transport
damage, which CRC32 catches too and which S3 composes cheaply at completion (boto3's
default too). zlib-ng computes it: the same CRC32 as zlib's, with the CPU's CRC
instructions (carry-less multiply on x86-64, CRC32 on arm64): 0.014 CPU s/GiB here against
zlib's 0.19 (hashlib's SHA-256: 0.58). Objects written whole (manifests, small blobs)
carry their SHA-256 digest, which costs nothing.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, cast

from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import HTTPError as Urllib3Error
from zlib_ng.zlib_ng import crc32

from ecr_backup.awserrors import error_code, translate
from ecr_backup.cancellation import CANCELLATION, check_cancelled
from ecr_backup.errors import (
    BlobNotFoundError,
    DigestMismatchError,
    EcrBackupError,
    InvalidInputError,
    StorageError,
)
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.streams import Readable, VerifyingReader
from ecr_backup.settings import DEFAULT_PART_SIZE_MIB, HASH_PIECE_SIZE, MIN_PART_SIZE, MiB
from ecr_backup.storage.bucket import s3_error
from ecr_backup.storage.objectlock import ObjectLock

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

_ALREADY_THERE = frozenset({"PreconditionFailed", "412"})
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


@dataclass(frozen=True, slots=True)
class ObjectVersion:
    """One version of an object under blobs/ (restore and verify look past the current one)."""

    version_id: str | None  # None when the listing gives none; "null" in unversioned buckets
    size: int
    last_modified: datetime
    is_latest: bool
    deleted: bool = False  # a delete marker: the object looks gone, older versions remain


class S3BlobStore:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: S3Client,
        patient_client: S3Client | None = None,
        part_size: int = DEFAULT_PART_SIZE_MIB * MiB,
        parts_in_flight: int = 8,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise InvalidInputError("S3 multipart parts must be at least 5 MiB")
        self.bucket = bucket
        self.prefix = prefix
        self.part_size = part_size
        self._s3 = client  # built by the composition root, with its timeouts and retries
        # For the calls whose answer may take long: CompleteMultipartUpload, ListObjectVersions
        # (settings.AWS_PATIENT_READ_TIMEOUT_SECONDS says why)
        self._patient = patient_client or client
        # One budget of part buffers for the whole store bounds memory whatever the number of
        # blobs copied at once: peak ~= (parts_in_flight + copies reading) * part_size.
        self._budget = threading.BoundedSemaphore(parts_in_flight)
        self._uploads = ThreadPoolExecutor(parts_in_flight, thread_name_prefix="s3-part")

    def close(self) -> None:
        self._uploads.shutdown(wait=True)

    # -- keys --------------------------------------------------------------------

    def blob_key(self, digest: Digest) -> str:
        return f"{self.prefix}blobs/{digest.algorithm}/{digest.hex}"

    def record_key(self, name: str) -> str:
        return f"{self.prefix}refs/{name}"

    def _error(
        self, error: ClientError | BotoCoreError | Urllib3Error, operation: str, key: str
    ) -> EcrBackupError:
        if isinstance(error, Urllib3Error):
            return _dropped(error, f"{operation} s3://{self.bucket}/{key}")
        return s3_error(error, operation, self.bucket, self._s3, key)

    # -- reading -------------------------------------------------------------------

    def stat(self, digest: Digest) -> int | None:
        """The stored size of a blob, or None when the bucket does not hold it."""
        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=self.blob_key(digest))
        except (ClientError, BotoCoreError) as e:
            if error_code(e) in _MISSING:
                return None
            raise self._error(e, "HEAD", self.blob_key(digest)) from e
        return int(head["ContentLength"])

    @contextmanager
    def open(
        self,
        digest: Digest,
        *,
        version_id: str | None = None,
        byte_range: tuple[int, int] | None = None,
    ) -> Iterator[Readable]:
        """The object's bytes, or those from `byte_range`'s first to last offset (inclusive)."""
        key = self.blob_key(digest)
        extra: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        if byte_range is not None:
            extra["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=key, **extra)["Body"]
        except (ClientError, BotoCoreError) as e:
            if error_code(e) in _MISSING:
                raise BlobNotFoundError(
                    f"{digest} is not in s3://{self.bucket}/{key}", code=error_code(e)
                ) from e
            raise self._error(e, "GET", key) from e
        try:
            with CANCELLATION.closing_on_cancel(lambda: _shut_down(body)):
                yield body
        except (BotoCoreError, Urllib3Error) as e:
            check_cancelled()  # the connection was shut by an interrupt, not dropped
            # The body streams while the caller reads: a dropped connection surfaces here.
            raise self._error(e, "read", key) from e
        finally:
            body.close()

    def presigned_get(self, digest: Digest, version_id: str | None, expires_in: int) -> str:
        """A URL anyone holding it may GET the object (that version) with, for `expires_in`
        seconds, signed with this client's credentials (no request is sent)."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.blob_key(digest)}
        if version_id:
            params["VersionId"] = version_id
        try:
            url: str = self._s3.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires_in
            )
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, "presign GET", self.blob_key(digest)) from e
        return url

    def read(self, digest: Digest) -> bytes:
        """Read a small object (a manifest) whole, checking it still hashes to its name."""
        with self.open(digest) as body:
            data = body.read()
        if Digest.of(data) != digest:
            raise DigestMismatchError(digest, "stored object no longer hashes to its name")
        return data

    def iter_records(self, under: str = "") -> Iterator[tuple[str, bytes]]:
        """Every record object under `<prefix>refs/<under>`, with its bytes."""
        for key, _ in self._list(self.record_key(under)):
            try:
                body = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"]
            except (ClientError, BotoCoreError) as e:
                raise self._error(e, "GET", key) from e
            yield key, _read_body(body, key)

    def versions(self, digest: Digest) -> list[ObjectVersion]:
        """Every version of a blob's object: versions newest first, then any delete markers."""
        key = self.blob_key(digest)
        return [v for k, v in self._list_versions(key) if k == key]

    def iter_blob_versions(self) -> Iterator[tuple[str, ObjectVersion]]:
        """Every version of every object under blobs/sha256/, with the name after that prefix.

        Names are not parsed: verify reports objects whose name is not a digest.
        """
        prefix = f"{self.prefix}blobs/sha256/"
        for key, version in self._list_versions(prefix):
            yield key.removeprefix(prefix), version

    def iter_record_names(self, under: str = "") -> Iterator[str]:
        """The names (keys after `<prefix>refs/`) of the records under `under`, not their bytes."""
        start = len(self.record_key(""))
        for key, _ in self._list(self.record_key(under)):
            yield key[start:]

    def read_record(self, name: str) -> bytes:
        """One record's bytes, by the name iter_record_names gives (for reading in parallel)."""
        key = self.record_key(name)
        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"]
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, "GET", key) from e
        return _read_body(body, key)

    def _list_versions(self, prefix: str) -> Iterator[tuple[str, ObjectVersion]]:
        paginator = self._patient.get_paginator("list_object_versions")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                # S3 lists a key's versions newest first; its delete markers come apart.
                for item in page.get("Versions", []):
                    yield (
                        item["Key"],
                        ObjectVersion(
                            item.get("VersionId"),
                            int(item["Size"]),
                            item["LastModified"],
                            bool(item.get("IsLatest")),
                        ),
                    )
                for marker in page.get("DeleteMarkers", []):
                    yield (
                        marker["Key"],
                        ObjectVersion(
                            marker.get("VersionId"),
                            0,
                            marker["LastModified"],
                            bool(marker.get("IsLatest")),
                            deleted=True,
                        ),
                    )
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, "list versions under", prefix) from e

    # -- writing -------------------------------------------------------------------

    def put_bytes(self, digest: Digest, data: bytes, retain: ObjectLock | None = None) -> bool:
        """Store bytes under their digest; False when the object was already there.
        `retain`: the new object's retention, set with the PUT (instead of the bucket's
        default), so that its lock end is known without asking."""
        if Digest.of(data) != digest:
            raise DigestMismatchError(digest, f"bytes hash to {Digest.of(data)}")
        return self._put_object(self.blob_key(digest), data, digest.checksum_sha256(), retain)

    def put_stream(
        self, digest: Digest, size: int, source: Readable, retain: ObjectLock | None = None
    ) -> bool:
        """Copy a stream into the store, verified; False when the object was already there.
        `retain` as for put_bytes; a multipart upload asks for it at its creation."""
        reader = VerifyingReader(source, digest, size)
        if size <= self.part_size:
            with self._budget:
                data = reader.read_exactly(size + 1)
                reader.verify()
                checksum = digest.checksum_sha256()
                return self._put_object(self.blob_key(digest), data, checksum, retain)
        return self._put_multipart(reader, retain)

    def put_record(self, name: str, body: bytes) -> bool:
        """Write an immutable record under refs/; False when that record already exists."""
        checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()
        return self._put_object(
            self.record_key(name), body, checksum, content_type="application/json"
        )

    def _put_object(
        self,
        key: str,
        body: bytes,
        checksum: str,
        retain: ObjectLock | None = None,
        *,
        content_type: str = "application/octet-stream",
    ) -> bool:
        try:
            self._s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                # The algorithm header is what Object Lock buckets require; the value is ours,
                # so S3 checks the bytes against the digest we verified.
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
                ContentType=content_type,
                IfNoneMatch="*",
                **_retention(retain),
            )
        except (ClientError, BotoCoreError) as e:
            if error_code(e) in _ALREADY_THERE:
                return False
            raise self._error(e, "PUT", key) from e
        return True

    def _put_multipart(self, reader: VerifyingReader, retain: ObjectLock | None) -> bool:
        key = self.blob_key(reader.digest)
        try:
            upload_id = self._s3.create_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                ChecksumAlgorithm="CRC32",
                ContentType="application/octet-stream",
                **_retention(retain),
            )["UploadId"]
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, "start multipart upload of", key) from e
        completed = False
        try:
            parts = self._upload_parts(reader, key, upload_id)
            reader.verify()
            try:
                self._patient.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    IfNoneMatch="*",
                )
            except (ClientError, BotoCoreError) as e:
                if error_code(e) in _ALREADY_THERE:
                    return False
                raise self._error(e, "complete multipart upload of", key) from e
            completed = True
            return True
        finally:
            if not completed:
                self._abort(key, upload_id)

    def _upload_parts(
        self, reader: VerifyingReader, key: str, upload_id: str
    ) -> list[CompletedPartTypeDef]:
        futures: list[Future[CompletedPartTypeDef]] = []
        try:
            number = 1
            while True:
                check_cancelled()  # no new part once interrupted; the caller aborts
                self._budget.acquire()
                try:
                    part = _Part.read(reader, self.part_size)
                except BaseException:
                    self._budget.release()
                    raise
                if not part.size:
                    self._budget.release()
                    break
                future = self._uploads.submit(self._upload_part, key, upload_id, number, part)
                future.add_done_callback(lambda _: self._budget.release())
                futures.append(future)
                number += 1
            return [f.result() for f in futures]
        except BaseException:
            # Parts already sending may still land after an abort (AWS says so for
            # AbortMultipartUpload), leaving billed, invisible parts: drop the ones not
            # started, wait for the rest, and only then let the caller abort.
            for f in futures:
                f.cancel()
            wait(futures)
            raise

    def _upload_part(
        self, key: str, upload_id: str, number: int, part: _Part
    ) -> CompletedPartTypeDef:
        checksum = base64.b64encode(part.crc32.to_bytes(4, "big")).decode()
        try:
            answer = self._s3.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=cast("IO[bytes]", part.body()),  # a file in all but its class
                ChecksumAlgorithm="CRC32",
                ChecksumCRC32=checksum,
            )
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, f"upload part {number} of", key) from e
        return {"PartNumber": number, "ETag": answer["ETag"], "ChecksumCRC32": checksum}

    def _abort(self, key: str, upload_id: str) -> None:
        # The bucket's lifecycle rule removes abandoned uploads; the original error matters.
        with contextlib.suppress(ClientError, BotoCoreError):
            self._s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def _list(self, prefix: str) -> Iterator[tuple[str, int]]:
        paginator = self._s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield item["Key"], int(item["Size"])
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, "list", prefix) from e


def _dropped(error: Urllib3Error, what: str) -> EcrBackupError:
    return StorageError(
        f"{what}: {type(error).__name__}", code=type(error).__name__, retryable=True
    )


def _retention(retain: ObjectLock | None) -> dict[str, Any]:
    """The Object Lock arguments of a PUT that sets a new object's retention."""
    if retain is None or retain.mode is None or retain.until is None:
        return {}
    return {"ObjectLockMode": retain.mode, "ObjectLockRetainUntilDate": retain.until}


@dataclass(frozen=True, slots=True)
class _Part:
    """One multipart part: its bytes as read, in pieces, and their CRC32.

    Each piece is hashed (SHA-256, by the reader) and CRC'd as it arrives, while it is still
    in the CPU's cache, and is sent as it is: no part is ever joined into one buffer.
    Against reading 16 MiB at once, then hashing it, CRC'ing it and sending it through a
    copy, this saved about 0.2 s of CPU per GiB here (docs/bench.md, "CPU per GiB")."""

    pieces: tuple[bytes, ...]
    crc32: int

    @classmethod
    def read(cls, reader: VerifyingReader, size: int) -> _Part:
        pieces: list[bytes] = []
        crc = 0
        remaining = size
        while remaining:
            piece = reader.read(min(HASH_PIECE_SIZE, remaining))
            if not piece:
                break
            crc = crc32(piece, crc)
            pieces.append(piece)
            remaining -= len(piece)
        return cls(tuple(pieces), crc)

    @property
    def size(self) -> int:
        return sum(len(p) for p in self.pieces)

    def body(self) -> _PartBody:
        return _PartBody(self.pieces)


class _PartBody(io.RawIOBase):
    """A part's pieces as the HTTP client reads them, block by block, without copying them
    (memoryview slices). Seekable, so botocore can resend it on a retry. An interrupt stops
    the send mid-part, so the part never lands and the abort that follows frees everything."""

    def __init__(self, pieces: tuple[bytes, ...]) -> None:
        self._pieces = [memoryview(p) for p in pieces]
        self._size = sum(len(p) for p in pieces)
        self._position = 0
        self._piece = 0  # the piece holding self._position
        self._offset = 0  # self._position within that piece

    def __len__(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = min(max(0, base + offset), self._size)
        self._piece, self._offset = 0, self._position
        while self._piece < len(self._pieces) and self._offset >= len(self._pieces[self._piece]):
            self._offset -= len(self._pieces[self._piece])
            self._piece += 1
        return self._position

    def readinto(self, buffer: Any, /) -> int:
        """For readers that bring their own buffer (botocore's CRT signer, when installed)."""
        view = memoryview(buffer).cast("B")
        block = self.read(len(view))
        view[: len(block)] = block
        return len(block)

    def read(self, size: int | None = -1, /) -> bytes | memoryview:
        check_cancelled()
        if size is None or size < 0:  # the rest, as one object (not how HTTP clients read)
            rest = b"".join(self._pieces[self._piece :])[self._offset :]
            self.seek(0, io.SEEK_END)
            return rest
        if self._piece >= len(self._pieces):
            return b""
        piece = self._pieces[self._piece]
        end = min(len(piece), self._offset + size)
        block = piece[self._offset : end]
        self._position += len(block)
        self._offset = end
        if end == len(piece):
            self._piece, self._offset = self._piece + 1, 0
        return block


def _shut_down(body: Any) -> None:
    """Shut the socket under a streaming GET, so a read blocked on it returns at once."""
    shutdown = getattr(getattr(body, "_raw_stream", None), "shutdown", None)
    if shutdown is not None:
        shutdown()


def _read_body(body: Any, key: str) -> bytes:
    try:
        with body:
            data: bytes = body.read()
    except (BotoCoreError, Urllib3Error) as e:
        raise (
            _dropped(e, f"read {key}")
            if isinstance(e, Urllib3Error)
            else translate(e, f"read {key}", StorageError)
        ) from e
    return data
