"""S3 Object Lock on the bucket's objects: read a lock, extend it, legal holds, delete markers.

Locks are read with HeadObject, which returns the retention and legal hold of the current
version; GetObjectRetention is not used (stand-ins fail on it where HeadObject answers).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from botocore.exceptions import BotoCoreError, ClientError

from ecr_backup.awserrors import error_code
from ecr_backup.errors import BlobNotFoundError
from ecr_backup.oci.digest import Digest
from ecr_backup.storage.bucket import s3_error

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

LockMode = Literal["GOVERNANCE", "COMPLIANCE"]
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


@dataclass(frozen=True, slots=True)
class ObjectLock:
    """The current version's lock: retention mode and end, and the legal hold."""

    mode: LockMode | None
    until: datetime | None
    legal_hold: bool = False

    def locked_at(self, moment: datetime) -> bool:
        return self.legal_hold or (self.until is not None and self.until > moment)


class S3ObjectLocks:
    def __init__(self, bucket: str, prefix: str, client: S3Client) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self._s3 = client

    def key(self, digest: Digest) -> str:
        return f"{self.prefix}blobs/{digest.algorithm}/{digest.hex}"

    def read(self, digest: Digest) -> ObjectLock:
        key = self.key(digest)
        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if error_code(e) in _MISSING:
                raise BlobNotFoundError(f"{digest} is not in s3://{self.bucket}/{key}") from e
            raise s3_error(e, "HEAD", self.bucket, self._s3, key) from e
        except BotoCoreError as e:
            raise s3_error(e, "HEAD", self.bucket, self._s3, key) from e
        until = head.get("ObjectLockRetainUntilDate")
        mode = head.get("ObjectLockMode")
        return ObjectLock(
            mode=mode if mode in ("GOVERNANCE", "COMPLIANCE") else None,
            until=until.astimezone(UTC) if until else None,
            legal_hold=head.get("ObjectLockLegalHoldStatus") == "ON",
        )

    def extend(self, digest: Digest, mode: LockMode, until: datetime) -> None:
        """Set a later retain-until date (the caller has checked it is later: S3 lets only
        GOVERNANCE with a bypass shorten one, and we never ask for the bypass)."""
        key = self.key(digest)
        try:
            self._s3.put_object_retention(
                Bucket=self.bucket,
                Key=key,
                Retention={"Mode": mode, "RetainUntilDate": until},
            )
        except (ClientError, BotoCoreError) as e:
            raise s3_error(e, "extend the lock of", self.bucket, self._s3, key) from e

    def set_legal_hold(self, digest: Digest, on: bool) -> None:
        key = self.key(digest)
        try:
            self._s3.put_object_legal_hold(
                Bucket=self.bucket, Key=key, LegalHold={"Status": "ON" if on else "OFF"}
            )
        except (ClientError, BotoCoreError) as e:
            raise s3_error(e, "set the legal hold of", self.bucket, self._s3, key) from e

    def delete_current(self, digest: Digest) -> None:
        """A delete marker over the object (no version id): older versions stay until the
        noncurrent-version lifecycle rule expires them, which S3 does only once unlocked."""
        key = self.key(digest)
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as e:
            raise s3_error(e, "DELETE", self.bucket, self._s3, key) from e
