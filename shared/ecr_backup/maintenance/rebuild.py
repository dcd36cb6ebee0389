"""Rebuild the DynamoDB index from the bucket alone: objects under blobs/, records under refs/.

The bucket is the backup; the table is a cache of what it holds, for fast lookups. This
writes back, with the index's own methods, what the backup engine wrote:
  - every object under blobs/ as a stored blob (its media type taken from the descriptors
    of the manifests that reference it; unreferenced objects as application/octet-stream),
  - every manifest reachable from a push record as complete when its whole closure is in the
    bucket, with the same total size the engine counted (this also indexes its referrers),
  - every push record through record_event, in record-name (= time) order,
  - every hold the hold records leave in force, and each object's lock end as S3 reports it.
An object written over is recorded from the version that hashes to its name, as restore
reads it, and reported; one with no such version is not recorded at all (a problem, exit 1).
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
from ecr_backup.maintenance.ports import RebuildBucket, RebuiltIndex
from ecr_backup.model import Action, ImageEvent, ManifestRecord
from ecr_backup.oci.closure import closure_total
from ecr_backup.oci.digest import Digest, is_sha256_hex
from ecr_backup.oci.manifest import Manifest
from ecr_backup.settings import DEFAULT_CONCURRENCY
from ecr_backup.storage.blobstore import ObjectVersion
from ecr_backup.storage.holdrecords import HoldRecords, read_hold_records
from ecr_backup.storage.index import Location
from ecr_backup.storage.ledger import Hold, Ledger
from ecr_backup.storage.objectlock import S3ObjectLocks
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
    problems: list[tuple[str, Digest, str]] = field(default_factory=list)  # kind, digest, why
    holds: int = 0
    locks: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class _Stored:
    """One object as the index records it: its intact version's size, and its first write."""

    size: int
    first_written: datetime
    version_id: str | None


def _listing(
    store: RebuildBucket, reader: BucketReader, report: RebuildReport, concurrency: int
) -> dict[Digest, _Stored]:
    versions: dict[str, list[ObjectVersion]] = defaultdict(list)
    for name, version in store.iter_blob_versions():
        if is_sha256_hex(name) and not version.deleted:
            versions[name].append(version)

    def intact(item: tuple[str, list[ObjectVersion]]) -> tuple[Digest, _Stored | None]:
        name, live = item  # newest first, as S3 lists them
        digest = Digest("sha256", name)
        first = min(v.last_modified for v in live)
        # One version is the one the engine wrote, checked as it streamed in. A delete
        # marker on top (prune) hides it, but restore still reads the versions below.
        if len(live) == 1:
            return digest, _Stored(live[0].size, first, live[0].version_id)
        # Written over: the bytes of a version decide, never its size.
        if reader.hash_version(digest, live[0].version_id)[0] == digest:
            return digest, _Stored(live[0].size, first, live[0].version_id)
        for version in reversed(live[1:]):  # oldest first, as restore reads
            if reader.hash_version(digest, version.version_id)[0] == digest:
                why = f"current version not intact; recorded version {version.version_id}"
                report.problems.append(("rewritten", digest, why))
                return digest, _Stored(version.size, first, version.version_id)
        why = f"no version of {reader.where(digest)} hashes to its name: not recorded"
        report.problems.append(("tampered", digest, why))
        return digest, None

    with ThreadPoolExecutor(max(concurrency, 1), thread_name_prefix="intact") as pool:
        found = list(pool.map(intact, versions.items()))
    report.problems.sort(key=lambda p: str(p[1]))
    return {digest: held for digest, held in found if held is not None}


def _records(
    store: RebuildBucket, record_names: list[str], report: RebuildReport, concurrency: int
) -> list[tuple[str, ImageEvent]]:
    names = [n for n in record_names if EVENTS_DIR in n]
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
        self.wrong_size: set[Digest] = set()  # stored at another size than a manifest says

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
            if held is None and not blob.is_foreign:
                self.incomplete.append(f"{digest}: blob {blob.digest} is not in the bucket")
                complete = False
            elif held is not None and held.size != blob.size:
                self.incomplete.append(
                    f"{digest}: blob {blob.digest} holds {held.size} bytes, not {blob.size}"
                )
                self.wrong_size.add(blob.digest)
                complete = False
        total = closure_total(manifest, (t or 0 for t in child_totals)) if complete else None
        if total is not None:
            self.complete.append((manifest, total))
        self.totals[digest] = total
        return total


def rebuild_index(
    store: RebuildBucket,
    index: RebuiltIndex,
    *,
    reader: BucketReader | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    ledger: Ledger | None = None,
    locks: S3ObjectLocks | None = None,
) -> RebuildReport:
    """`ledger` and `locks` (the command line passes both) bring back the holds and each
    object's lock end."""
    started = time.monotonic()
    reader = reader or BucketReader(store)
    report = RebuildReport(store.bucket, store.prefix, index.table)
    report.created_table = index.create_if_missing()
    index.claim_location(Location(store.bucket, store.prefix))

    stored = _listing(store, reader, report, concurrency)
    record_names = list(store.iter_record_names())  # push and hold records: one listing
    events = _records(store, record_names, report, concurrency)
    closures = _Closures(reader, stored)
    for _, event in events:
        if event.action is Action.PUSH:
            closures.total(event.digest)
    report.manifests_incomplete = closures.incomplete
    # A lone version is the engine's own write; one whose size no manifest agrees with is
    # hashed, and not recorded unless its bytes are its name.
    for digest in sorted(closures.wrong_size):
        if reader.hash_version(digest, stored[digest].version_id)[0] != digest:
            why = f"{reader.where(digest)} does not hash to its name: not recorded"
            report.problems.append(("tampered", digest, why))
            del stored[digest]

    # Blobs first, then manifests, then events: the order the engine writes them in.
    def blob_rows() -> list[tuple[Digest, int, str, datetime]]:
        rows = []
        for digest, held in sorted(stored.items()):
            media_type = closures.media_types.get(digest)
            if media_type is None:
                report.unreferenced_blobs += 1
            rows.append((digest, held.size, media_type or UNKNOWN_MEDIA_TYPE, held.first_written))
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
    if ledger is not None and locks is not None:
        holds = read_hold_records(store, record_names, workers=concurrency * 4)
        _retention(holds, ledger, locks, list(stored), report=report, concurrency=concurrency)
    report.seconds = time.monotonic() - started
    return report


def _retention(
    holds: HoldRecords,
    ledger: Ledger,
    locks: S3ObjectLocks,
    objects: list[Digest],
    *,
    report: RebuildReport,
    concurrency: int,
) -> None:
    """The holds the bucket's hold records leave in force, and every object's lock end as
    S3 reports it (HeadObject), after the blob items that carry it are written."""
    report.invalid_records.extend(holds.invalid)
    # A table that survived may still hold a hold released since (a fresh one holds none).
    for hold in ledger.holds():
        if (hold.repository, hold.digest) in holds.released:
            ledger.remove_hold(hold.repository, hold.digest)
    for record in holds.in_force.values():
        ledger.add_hold(
            Hold(record.repository, record.digest, record.time, record.reason, len(record.objects))
        )
    report.holds = len(holds.in_force)

    def restore_lock(digest: Digest) -> bool:
        until = locks.read(digest).until
        if until is not None:
            ledger.record_lock(digest, until)
        return until is not None

    with ThreadPoolExecutor(max(concurrency * 4, 1), thread_name_prefix="locks") as pool:
        report.locks = sum(pool.map(restore_lock, objects))
