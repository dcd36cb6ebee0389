"""What the maintenance services (prune, holds, maintain, stats, rebuild) need from the index,
the ledger and the bucket: each Protocol holds only the calls its service makes.

storage.ledger.Ledger, storage.objectlock.S3ObjectLocks, storage.index.DynamoIndex and
storage.blobstore.S3BlobStore satisfy them in production; tests/fakes.py in the unit tests.
Verify reads through the catalog, whose own Protocols (catalog.catalog.CatalogStore,
catalog.eventlog.IndexReads) the same fakes satisfy.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Protocol

from ecr_backup.model import ImageEvent, ManifestRecord
from ecr_backup.oci.digest import Digest
from ecr_backup.storage.blobstore import ObjectVersion
from ecr_backup.storage.index import Location
from ecr_backup.storage.ledger import Hold, ObjectState
from ecr_backup.storage.objectlock import ObjectLock
from ecr_backup.storage.reader import VersionedObjects


class ObjectLedger(Protocol):
    """The index's view of every object and of the holds (maintain, stats)."""

    def objects(self) -> dict[Digest, ObjectState]: ...

    def holds(self) -> list[Hold]: ...


class PruneLedger(ObjectLedger, Protocol):
    """The conditional writes that keep a prune and a backup from racing (prune's rules)."""

    def take_prune_lease(self, owner: str, now: datetime, until: datetime) -> bool: ...

    def drop_prune_lease(self, owner: str) -> None: ...

    def complete_manifests(self) -> set[Digest]: ...

    def tombstone(self, digest: Digest, now: datetime, claimed_before: datetime) -> bool: ...

    def start_sweep(self, digest: Digest, tombstone_at: datetime, token: str) -> bool: ...

    def abandon_sweep(self, digest: Digest, token: str) -> None: ...

    def finish_sweep(self, digest: Digest, token: str) -> None: ...

    def uncomplete(self, digest: Digest) -> None: ...

    def mark_pruned(self, repository: str, digest: Digest, now: datetime) -> None: ...


class HoldLedger(ObjectLedger, Protocol):
    def add_hold(self, hold: Hold) -> None: ...

    def remove_hold(self, repository: str, digest: Digest) -> bool: ...


class PruneLocks(Protocol):
    """The bucket's Object Lock as prune meets it: read a lock, delete-mark an object."""

    def read(self, digest: Digest) -> ObjectLock: ...

    def delete_current(self, digest: Digest) -> None: ...


class LegalHolds(Protocol):
    def read(self, digest: Digest) -> ObjectLock: ...

    def set_legal_hold(self, digest: Digest, on: bool) -> None: ...


class RecordWriter(Protocol):
    """Where holds and releases are written as immutable records (storage/holdrecords.py)."""

    def put_record(self, name: str, body: bytes) -> bool: ...


class RebuildBucket(VersionedObjects, Protocol):
    """What rebuild-index lists and reads in the bucket (its manifests through BucketReader)."""

    @property
    def prefix(self) -> str: ...

    def iter_blob_versions(self) -> Iterator[tuple[str, ObjectVersion]]: ...

    def iter_record_names(self, under: str = "") -> Iterator[str]: ...

    def read_record(self, name: str) -> bytes: ...

    def record_key(self, name: str) -> str: ...


class RebuiltIndex(Protocol):
    """The index writes rebuild-index makes: the engine's own, in the engine's order."""

    @property
    def table(self) -> str: ...

    def create_if_missing(self) -> bool: ...

    def claim_location(self, here: Location) -> None: ...

    def record_blobs(self, blobs: Iterable[tuple[Digest, int, str, datetime]]) -> int: ...

    def mark_complete(self, record: ManifestRecord) -> None: ...

    def record_event(self, event: ImageEvent) -> None: ...
