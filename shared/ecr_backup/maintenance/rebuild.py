"""Rebuild the DynamoDB index from the bucket alone: objects under blobs/, records under refs/.

The bucket is the backup; the table is a cache of what it holds, for fast lookups. This
writes back, with the index's own methods, what the backup engine wrote:
  - every object under blobs/ as a stored blob (its media type taken from the descriptors
    of the manifests that reference it; unreferenced objects as application/octet-stream),
  - every manifest reachable from a push record as complete when its whole closure is in the
    bucket, with the same total size the engine counted (this also indexes its referrers),
  - every push record through record_event, in record-name (= time) order.
Writes are puts of the same items, so running it again changes nothing, and it can run over
a table that still holds some items.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from ecr_backup.errors import EcrBackupError
from ecr_backup.model import Action, ImageEvent, ManifestRecord
from ecr_backup.oci.closure import closure_total
from ecr_backup.oci.digest import Digest, is_sha256_hex
from ecr_backup.oci.manifest import Manifest
from ecr_backup.settings import DEFAULT_CONCURRENCY
from ecr_backup.storage.blobstore import ObjectVersion, S3BlobStore
from ecr_backup.storage.index import DynamoIndex, Location
from ecr_backup.storage.pushrecords import EVENTS_DIR, read_push_records
from ecr_backup.storage.reader import BucketReader

log = logging.getLogger(__name__)

UNKNOWN_MEDIA_TYPE = "application/octet-stream"


@dataclass
class RebuildReport:
    bucket: str
    prefix: str
    table: str
    created_table: bool = False
    records: int = 0
    invalid_records: list[str] = field(default_factory=list)
    repositories: int = 0
    manifests_complete: int = 0
    manifests_incomplete: list[str] = field(default_factory=list)
    blobs: int = 0
    unreferenced_blobs: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class _Stored:
    """What the listing says about one object: its live versions' sizes and first write."""

    sizes: frozenset[int]
    current_size: int
    first_written: datetime


def _listing(store: S3BlobStore) -> dict[Digest, _Stored]:
    versions: dict[str, list[ObjectVersion]] = defaultdict(list)
    for name, version in store.iter_blob_versions():
        if is_sha256_hex(name) and not version.deleted:
            versions[name].append(version)
    stored: dict[Digest, _Stored] = {}
    for name, live in versions.items():
        # A delete marker on top hides the object, but restore still reads the versions below.
        current = next((v for v in live if v.is_latest), live[0])
        stored[Digest("sha256", name)] = _Stored(
            frozenset(v.size for v in live),
            current.size,
            min(v.last_modified for v in live),
        )
    return stored


def _records(
    store: S3BlobStore, report: RebuildReport, concurrency: int
) -> list[tuple[str, ImageEvent]]:
    names = [n for n in store.iter_record_names() if EVENTS_DIR in n]
    report.records = len(names)
    # A bucket of years of pushes holds many records: read them in parallel.
    records = read_push_records(store, names, workers=concurrency * 4)
    report.invalid_records.extend(records.invalid)
    return records.events


class _Closures:
    """Which manifests are complete, and their totals, counted as the replicator counts."""

    def __init__(self, reader: BucketReader, stored: dict[Digest, _Stored]) -> None:
        self.reader = reader
        self.stored = stored
        self.totals: dict[Digest, int | None] = {}
        self.complete: list[tuple[Manifest, int]] = []  # children before parents
        self.media_types: dict[Digest, str] = {}
        self.incomplete: list[str] = []

    def total(self, digest: Digest) -> int | None:
        if digest in self.totals:
            return self.totals[digest]
        try:
            manifest = self.reader.manifest(digest)
        except EcrBackupError as e:
            self.incomplete.append(f"{digest}: {e}")
            self.totals[digest] = None
            return None
        self.media_types.setdefault(digest, manifest.media_type)
        child_totals = [self.total(child.digest) for child in manifest.children]
        complete = all(t is not None for t in child_totals)
        for blob in manifest.unique_blobs:
            self.media_types.setdefault(blob.digest, blob.media_type)
            held = self.stored.get(blob.digest)
            # Foreign layers the registry did not serve are recorded, not stored, by the engine.
            if (held is None or blob.size not in held.sizes) and not blob.is_foreign:
                self.incomplete.append(f"{digest}: blob {blob.digest} is not in the bucket")
                complete = False
        total = closure_total(manifest, (t or 0 for t in child_totals)) if complete else None
        if total is not None:
            self.complete.append((manifest, total))
        self.totals[digest] = total
        return total


def rebuild_index(
    store: S3BlobStore,
    index: DynamoIndex,
    *,
    reader: BucketReader | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> RebuildReport:
    started = time.monotonic()
    reader = reader or BucketReader(store)
    report = RebuildReport(store.bucket, store.prefix, index.table)
    report.created_table = index.create_if_missing()
    index.claim_location(Location(store.bucket, store.prefix))

    stored = _listing(store)
    events = _records(store, report, concurrency)
    closures = _Closures(reader, stored)
    for _, event in events:
        if event.action is Action.PUSH:
            closures.total(event.digest)
    report.manifests_incomplete = closures.incomplete

    # Blobs first, then manifests, then events: the order the engine writes them in.
    def blob_rows() -> list[tuple[Digest, int, str, datetime]]:
        rows = []
        for digest, held in sorted(stored.items()):
            media_type = closures.media_types.get(digest)
            if media_type is None:
                report.unreferenced_blobs += 1
            rows.append(
                (digest, held.current_size, media_type or UNKNOWN_MEDIA_TYPE, held.first_written)
            )
        return rows

    report.blobs = index.record_blobs(blob_rows())

    for manifest, total in closures.complete:
        index.mark_complete(
            ManifestRecord.of(manifest, total, stored[manifest.digest].first_written)
        )
    report.manifests_complete = len(closures.complete)

    by_repository: dict[str, list[ImageEvent]] = defaultdict(list)
    for _, event in events:
        by_repository[event.repository].append(event)
    report.repositories = len(by_repository)

    def replay(repository_events: list[ImageEvent]) -> None:
        # One repository's events in order: ties between events of one tag resolve the same way
        # every run. Repositories are independent, so they go in parallel.
        for event in repository_events:
            index.record_event(event)

    with ThreadPoolExecutor(max(concurrency, 1), thread_name_prefix="rebuild") as pool:
        list(pool.map(replay, by_repository.values()))
    report.seconds = time.monotonic() - started
    return report
