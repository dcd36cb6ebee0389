"""Reading the bucket back: manifests and blobs checked against their digest, from the
oldest version that still hashes to its name when an object was written over.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from ecr_backup.awserrors import ACCESS_DENIED_CODES
from ecr_backup.errors import (
    BlobNotFoundError,
    ConfigurationError,
    DigestMismatchError,
    InvalidInputError,
    ManifestNotFoundError,
)
from ecr_backup.oci.closure import Closure, build_closure
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Manifest, parse_manifest
from ecr_backup.oci.streams import Readable, VerifyingReader, read_full
from ecr_backup.settings import MAX_MANIFEST_SIZE, MiB
from ecr_backup.storage.blobstore import ObjectVersion

# -- reading the bucket ----------------------------------------------------------------

log = logging.getLogger(__name__)


class CheckedStream(VerifyingReader):
    """A blob stream whose digest is checked *before* its last bytes are handed out.

    The registry upload sends its final chunk only after reading it, so a blob that does
    not hash to its name fails here, with its digest named, and is never committed.
    """

    def read(self, amt: int = -1, /) -> bytes:
        data = super().read(amt)
        if self.bytes_read == self.size or (not data and amt != 0):
            self.verify()
        return data


class VersionedObjects(Protocol):
    """What BucketReader reads through (storage.blobstore.S3BlobStore in production)."""

    @property
    def bucket(self) -> str: ...

    def blob_key(self, digest: Digest) -> str: ...

    def stat(self, digest: Digest) -> int | None: ...

    def open(
        self, digest: Digest, *, version_id: str | None = None
    ) -> AbstractContextManager[Readable]: ...

    def versions(self, digest: Digest) -> list[ObjectVersion]: ...


class BucketReader:
    """Manifests and blobs out of the bucket, each verified against its digest."""

    def __init__(self, store: VersionedObjects) -> None:
        self.store = store
        self._manifests: dict[Digest, Manifest] = {}
        self._located: dict[Digest, str | None] = {}
        self._lock = threading.Lock()
        self._versions_denied = False
        # Objects read from an older version because the current one was not intact.
        self.recovered: dict[Digest, str | None] = {}

    def where(self, digest: Digest) -> str:
        return f"s3://{self.store.bucket}/{self.store.blob_key(digest)}"

    def manifest(self, digest: Digest) -> Manifest:
        with self._lock:
            cached = self._manifests.get(digest)
        if cached is not None:
            return cached
        try:
            raw = self._read_manifest(digest, self.locate(digest, limit=MAX_MANIFEST_SIZE))
            if Digest.of(raw) != digest:
                raw = self._read_manifest(digest, self.recover(digest))
        except BlobNotFoundError as e:
            raise ManifestNotFoundError(f"manifest {digest} is not in the backup: {e}") from e
        if Digest.of(raw) != digest:
            raise DigestMismatchError(digest, f"{self.where(digest)} no longer hashes to its name")
        manifest = parse_manifest(raw)
        with self._lock:
            self._manifests[digest] = manifest
        return manifest

    def _read_manifest(self, digest: Digest, version: str | None) -> bytes:
        with self.store.open(digest, version_id=version) as body:
            return read_full(body, MAX_MANIFEST_SIZE + 1)

    @contextmanager
    def open_blob(
        self, digest: Digest, size: int, *, thorough: bool = False
    ) -> Iterator[CheckedStream]:
        """Stream a blob; its last read raises DigestMismatchError if it does not match.

        After such an error, `recover()` finds an intact older version and the next
        open_blob reads that one. `thorough` looks before reading (see `locate`).
        """
        version = self.locate(digest, size=size, thorough=thorough)
        with self.store.open(digest, version_id=version) as body:
            yield CheckedStream(body, digest, size)

    def locate(
        self,
        digest: Digest,
        *,
        size: int | None = None,
        limit: int | None = None,
        thorough: bool = False,
    ) -> str | None:
        """Which version of the object to read: None for the current one.

        Quick (the default, one HEAD): a current version of the right size is read, and its
        hash checked while it streams. Thorough (one version listing): an object written
        more than once, deleted or of the wrong size is someone else's doing, and the oldest
        version that hashes to the name is chosen before anything is read. Either way, a
        missing or wrongly sized current version leads to the listing.
        """
        with self._lock:
            if digest in self._located:
                return self._located[digest]
        version: str | None = None
        stored = None if thorough else self.store.stat(digest)
        fits = stored is not None and (size is None or stored == size)
        if not (fits and (limit is None or (stored or 0) <= limit)):
            version = self._locate(digest, size, limit, check_single=False)
        with self._lock:
            self._located[digest] = version
        return version

    def recover(self, digest: Digest, size: int | None = None) -> str | None:
        """After a read that did not hash to its name: the intact version to read instead.

        Raises DigestMismatchError naming the digest when no version is intact.
        """
        version = self._locate(digest, size, None, check_single=True)
        with self._lock:
            self._located[digest] = version
        return version

    def _locate(
        self, digest: Digest, size: int | None, limit: int | None, *, check_single: bool
    ) -> str | None:
        versions = self._versions(digest)
        if versions is None:
            self._current_only(digest, size, limit)
            if check_single:
                raise DigestMismatchError(
                    digest,
                    f"{self.where(digest)} does not hash to its name (older versions "
                    "cannot be listed: s3:ListBucketVersions is denied)",
                )
            return None
        live = [v for v in versions if not v.deleted]
        if not live:
            gone = " (deleted, and no earlier version remains)" if versions else ""
            raise BlobNotFoundError(f"{digest} is not in the bucket: {self.where(digest)}{gone}")
        if limit is not None and all(v.size > limit for v in live):
            raise InvalidInputError(
                f"{digest} is a {live[0].size} byte object, not a manifest (a layer or config?)"
            )
        if not check_single and len(versions) == 1 and (size is None or live[0].size == size):
            return None
        current = next((v for v in versions if v.is_latest), None)
        for version in reversed(live):  # oldest first: the backup wrote the first one
            if (size is not None and version.size != size) or (
                limit is not None and version.size > limit
            ):
                continue
            if self.hash_version(digest, version.version_id)[0] == digest:
                if version is not current:
                    log.warning(
                        "%s: the current version of %s is not intact; reading version %s",
                        digest,
                        self.where(digest),
                        version.version_id,
                    )
                    with self._lock:
                        self.recovered[digest] = version.version_id
                return version.version_id
        expected = f" of {size} bytes" if size is not None else ""
        raise DigestMismatchError(
            digest, f"no version{expected} of {self.where(digest)} hashes to its name"
        )

    def _versions(self, digest: Digest) -> list[ObjectVersion] | None:
        if self._versions_denied:
            return None
        try:
            return self.store.versions(digest)
        except ConfigurationError as e:
            # A role without s3:ListBucketVersions still restores; it only loses the fallback.
            if e.code not in ACCESS_DENIED_CODES:
                raise
            log.warning("cannot list object versions (%s): reading current versions only", e)
            self._versions_denied = True
            return None

    def _current_only(self, digest: Digest, size: int | None, limit: int | None) -> None:
        stored = self.store.stat(digest)
        if stored is None:
            raise BlobNotFoundError(f"{digest} is not in the bucket: {self.where(digest)}")
        if size is not None and stored != size:
            raise DigestMismatchError(
                digest, f"{self.where(digest)} holds {stored} bytes, expected {size}"
            )
        if limit is not None and stored > limit:
            raise InvalidInputError(f"{digest} is a {stored} byte object, not a manifest")

    def hash_version(self, digest: Digest, version_id: str | None) -> tuple[Digest, int]:
        """Re-read one object version and hash it, streamed: (its real digest, its size)."""
        hasher = hashlib.sha256()
        size = 0
        with self.store.open(digest, version_id=version_id) as body:
            while chunk := body.read(MiB):
                hasher.update(chunk)
                size += len(chunk)
        return Digest.from_hash(hasher), size

    def closure(self, digest: Digest) -> Closure:
        return build_closure(digest, self.manifest)
