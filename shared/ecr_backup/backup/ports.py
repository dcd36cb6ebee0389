"""The small interfaces the engine needs from the outside world (registry, S3, DynamoDB)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

from ecr_backup.model import ImageEvent, ManifestRecord
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Manifest
from ecr_backup.oci.streams import Readable
from ecr_backup.storage.index import EventChanges, StoredObject
from ecr_backup.storage.ledger import ObjectState
from ecr_backup.storage.objectlock import ObjectLock


class SourceRegistry(Protocol):
    def get_manifest(self, repository: str, reference: str) -> Manifest: ...

    def open_blob(self, repository: str, digest: Digest) -> AbstractContextManager[Readable]: ...


class BlobStore(Protocol):
    part_size: int  # a blob larger than this is uploaded in parts

    def stat(self, digest: Digest) -> int | None: ...

    def put_stream(
        self, digest: Digest, size: int, source: Readable, retain: ObjectLock | None = None
    ) -> bool: ...

    def put_bytes(self, digest: Digest, data: bytes, retain: ObjectLock | None = None) -> bool: ...

    def put_record(self, name: str, body: bytes) -> bool: ...

    def read(self, digest: Digest) -> bytes: ...


class BackupIndex(Protocol):
    def object_states(self, digests: Iterable[Digest]) -> dict[Digest, ObjectState]: ...

    def complete(self, stored: Sequence[StoredObject], record: ManifestRecord) -> None: ...

    def record_stored(self, stored: Sequence[StoredObject]) -> None: ...

    def manifest(self, digest: Digest) -> ManifestRecord | None: ...

    def event_changes(self, event: ImageEvent) -> EventChanges: ...

    def record_event(self, event: ImageEvent, changes: EventChanges | None = None) -> None: ...

    def claim(self, digest: Digest, now: datetime) -> ObjectState | None: ...


class DeletionWatch(Protocol):
    """Counts recorded deletions; records a deletion surge (catalog.surges.SurgeWatch)."""

    def observe(self, event: ImageEvent) -> object: ...


class BackupLocks(Protocol):
    """Keeps the lock of every object a backup relies on (maintenance.locks.LockKeeper)."""

    def for_backup(self, digest: Digest, recorded: datetime | None) -> object: ...

    def new_object_lock(self, created_at: datetime) -> ObjectLock: ...
