"""The backup engine: copy one pushed image into the bucket, incrementally, manifest last.

Against a concurrent prune (ecr_backup.maintenance.prune), the rule is: before a manifest is
marked complete, every object under it (its blobs, its child manifests, itself) is either
recorded by this backup (which claims it: clears a prune tombstone, fails while a prune is
deleting it) or was read from the index, in one consistent BatchGetItem, held and free of
any tombstone; an object the read shows tombstoned is claimed, one it shows being deleted
stops the backup (retryable), one it does not hold is copied again. An object read free of
tombstones can be swept no sooner than one grace period after a tombstone set later, and
the backup has marked its manifest complete by then (prune's rule 3: a backup runs for less
than the grace period); from then on the complete manifest keeps it (prune's rule 4).
The same holds when the manifest was already complete (a replay, a new tag on an old
digest): its whole closure is read again, from the bucket, never from the registry, and a
replay of an image whose closure shows no tombstone writes nothing at all.

Requests (issue 19, pinned by tests/integration/test_requests.py): one BatchGetItem per
manifest for the states of its objects; no HEAD before a small blob's conditional PUT (its
412 answers the question); the new objects' records and the manifest's completion in one
TransactWriteItems; no lock call for an object this backup wrote whole (its PUT set its
retention, maintenance.locks) or whose recorded lock end suffices.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ecr_backup.backup.deadline import Deadline
from ecr_backup.backup.ports import (
    BackupIndex,
    BackupLocks,
    BlobStore,
    DeletionWatch,
    SourceRegistry,
)
from ecr_backup.cancellation import check_cancelled
from ecr_backup.errors import (
    BlobNotFoundError,
    EcrBackupError,
    InvalidInputError,
    NotFoundError,
    ObjectBeingPrunedError,
    StorageError,
)
from ecr_backup.model import Action, ImageEvent, ManifestRecord, StorageClassChange
from ecr_backup.oci.closure import build_closure, check_index_depth, closure_total
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Descriptor, Manifest, parse_manifest
from ecr_backup.progress import Counted, Progress, ProgressFactory, no_progress
from ecr_backup.settings import DEFAULT_CONCURRENCY
from ecr_backup.storage.index import StoredObject
from ecr_backup.storage.ledger import ObjectState
from ecr_backup.storage.objectlock import ObjectLock

log = logging.getLogger(__name__)


@dataclass
class CopyReport:
    """What one replication did; safe to update from the copy threads."""

    manifests_stored: list[Digest] = field(default_factory=list)
    manifests_skipped: list[Digest] = field(default_factory=list)
    blobs_copied: list[Digest] = field(default_factory=list)
    blobs_skipped: list[Digest] = field(default_factory=list)
    blobs_foreign: list[Digest] = field(default_factory=list)
    bytes_copied: int = 0
    root: Digest | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    # The debug lines are -v's account of the work, blob by blob (cli/options.py).
    def copied(self, digest: Digest, size: int) -> None:
        log.debug("blob %s copied (%d bytes)", digest, size)
        with self._lock:
            self.blobs_copied.append(digest)
            self.bytes_copied += size

    def skipped(self, digest: Digest) -> None:
        log.debug("blob %s already in the bucket", digest)
        with self._lock:
            self.blobs_skipped.append(digest)

    def foreign(self, digest: Digest) -> None:
        log.debug("blob %s foreign, not served: recorded, not copied", digest)
        with self._lock:
            self.blobs_foreign.append(digest)


class Replicator:
    def __init__(
        self,
        registry: SourceRegistry,
        store: BlobStore,
        index: BackupIndex,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        progress: ProgressFactory = no_progress,
        locks: BackupLocks | None = None,
        deadline: Deadline | None = None,
        deletions: DeletionWatch | None = None,
    ) -> None:
        if concurrency < 1:
            raise InvalidInputError("concurrency must be at least 1")
        self._registry = registry
        self._store = store
        self._index = index
        self._concurrency = concurrency
        self._clock = clock
        self._progress = progress
        self._locks = locks
        self._deadline = deadline
        self._deletions = deletions

    def backup_event(self, event: ImageEvent) -> CopyReport:
        """Back up what an ECR event names, then record the event: bucket first, index second."""
        report = CopyReport()
        if event.action is Action.PUSH:
            self.replicate(event.repository, str(event.digest), report)
        self.record(event)
        return report

    def record(self, event: ImageEvent) -> None:
        """Record an event: the bucket's record first (rebuild-index reads it), then the index.
        A push already recorded (a replay) writes nothing: the index's history item is
        written after the bucket's record, so its presence says both are there."""
        if event.action is Action.PUSH:
            changes = self._index.event_changes(event)
            if changes.history:
                self._store.put_record(event.record_name, event.to_json())
            if changes.any:
                self._index.record_event(event, changes)
        else:
            self._store.put_record(event.record_name, event.to_json())
            self._index.record_event(event)
        if self._deletions is not None:
            # After the index holds the deletion: a surge counts the images still live.
            self._deletions.observe(event)

    def record_storage_class(self, change: StorageClassChange) -> None:
        """Record an archive or restore in the bucket; nothing is copied or deleted."""
        self._store.put_record(change.record_name, change.to_json())

    def holds(self, digest: Digest) -> bool:
        """Whether the index holds this manifest complete (its closure is durable)."""
        return self._index.manifest(digest) is not None

    def replicate(
        self, repository: str, reference: str, report: CopyReport | None = None
    ) -> CopyReport:
        """Copy a manifest (by tag or digest) and everything under it that we lack."""
        report = report if report is not None else CopyReport()
        check_cancelled()
        if reference.startswith("sha256:"):
            digest = Digest.parse(reference)
            if self._reclaim(digest):
                # A replay: the index says the whole closure is durable; touch no registry.
                report.manifests_skipped.append(digest)
                report.root = digest
                return report
        separator = "@" if reference.startswith("sha256:") else ":"
        self._check_time(0, f"backup of {repository}{separator}{reference}")
        manifest = self._registry.get_manifest(repository, reference)
        report.root = manifest.digest
        # The total grows as each manifest's missing blobs are found.
        progress = self._progress(0, "replicate")
        with ThreadPoolExecutor(self._concurrency, thread_name_prefix="blob-copy") as pool:
            self._replicate_manifest(
                repository, manifest, report, _Copying(pool, progress), depth=0
            )
        progress.finish()
        return report

    def _replicate_manifest(
        self,
        repository: str,
        manifest: Manifest,
        report: CopyReport,
        copying: _Copying,
        *,
        depth: int,
    ) -> int:
        """Store a manifest's closure, then the manifest; returns the closure's total size."""
        blobs = manifest.unique_blobs
        states = self._index.object_states([manifest.digest, *(b.digest for b in blobs)])
        root = states.get(manifest.digest)
        if root is not None and root.complete:
            if manifest.children:
                reclaimed = self._reclaim(manifest.digest)
            else:  # the read above holds the whole closure (a foreign layer may be absent)
                held = [b.digest for b in blobs if b.digest in states or not b.is_foreign]
                reclaimed = self._rely_all([manifest.digest, *held], states)
            if reclaimed:
                report.manifests_skipped.append(manifest.digest)
                if depth == 0:
                    return 0  # replicate() has no use for the root's total: spare a read
                existing = self._index.manifest(manifest.digest)
                return existing.total_size if existing else root.size

        child_totals = []
        for child in manifest.children:
            check_index_depth(depth + 1, child.digest)
            child_manifest = self._registry.get_manifest(repository, str(child.digest))
            child_totals.append(
                self._replicate_manifest(
                    repository, child_manifest, report, copying, depth=depth + 1
                )
            )

        recorded = self._rely([b.digest for b in blobs], states)
        for digest in recorded:
            report.skipped(digest)
        # Relied on above, or copied (and recorded with the manifest) now; a blob the index
        # does not hold, or whose claim found it pruned meanwhile, is copied again.
        missing = [b for b in blobs if b.digest not in recorded]
        copying.progress.grow(sum(b.size for b in missing))
        stored: list[StoredObject] = []
        lock_known: set[Digest] = set()  # written whole with its retention
        try:
            # list() waits for every copy and re-raises the first failure: manifest last.
            for outcome in copying.pool.map(
                lambda blob: self._copy_blob(repository, blob, report, copying.progress),
                missing,
            ):
                if outcome is not None:
                    stored.append(outcome[0])
                    if outcome[1]:
                        lock_known.add(outcome[0].digest)
        except Exception:
            # What was stored stays recorded: the redelivered event copies only the rest.
            # (Not on an interrupt: that answers at once and writes nothing more.)
            self._record_stored(stored)
            raise
        total = closure_total(manifest, child_totals)

        check_cancelled()  # manifest last, and not at all once interrupted
        now = self._clock()
        retain = self._new_lock(now)
        created_manifest = self._store.put_bytes(manifest.digest, manifest.raw, retain)
        if created_manifest:
            lock_known.add(manifest.digest)
        until = retain.until if created_manifest and retain is not None else None
        stored.append(StoredObject(manifest.digest, manifest.size, manifest.media_type, now, until))
        # Locks: an object this backup wrote whole has the retention its PUT set; the
        # others keep theirs if the recorded end suffices, else are read and extended.
        foreign = set(report.blobs_foreign)
        self._keep_locked(
            [
                (d, recorded.get(d))
                for d in [*(b.digest for b in blobs), manifest.digest]
                if d not in foreign and d not in lock_known
            ]
        )
        self._index.complete(stored, ManifestRecord.of(manifest, total, now))
        log.debug("manifest %s stored, complete", manifest.digest)
        report.manifests_stored.append(manifest.digest)
        return total

    def _record_stored(self, stored: list[StoredObject]) -> None:
        # Best effort on the way out: the copy's own failure is the one to report.
        if stored:
            with contextlib.suppress(EcrBackupError):
                self._index.record_stored(stored)

    def _rely(
        self, digests: list[Digest], states: dict[Digest, ObjectState]
    ) -> dict[Digest, datetime | None]:
        """The objects a backup can rely on as the index read holds them, with their
        recorded lock ends: claimed only where the read shows a tombstone (a claim that
        finds one gone leaves it out: copy it again); ObjectBeingPrunedError (retryable)
        for one a prune is deleting."""
        relied: dict[Digest, datetime | None] = {}
        for digest in digests:
            state = states.get(digest)
            if state is None:
                continue
            if state.sweeping is not None:
                raise ObjectBeingPrunedError(digest)
            if state.tombstone_at is not None:
                claimed = self._index.claim(digest, self._clock())
                if claimed is None:
                    continue
                state = claimed
            relied[digest] = state.lock_until
        return relied

    def _rely_all(self, digests: list[Digest], states: dict[Digest, ObjectState]) -> bool:
        """Rely on every object of a complete manifest's closure and keep it locked; False
        when one is gone from the index: back it up again."""
        relied = self._rely(digests, states)
        if any(d not in relied for d in digests):
            return False
        self._keep_locked(list(relied.items()))
        return True

    def _reclaim(self, digest: Digest) -> bool:
        """Rely again on every object of a complete manifest's closure (read from the
        bucket) and keep it locked; False when the manifest is not complete or one object
        is gone from the index: back it up again."""
        try:
            closure = build_closure(digest, lambda d: parse_manifest(self._store.read(d)))
        except NotFoundError:
            return False
        nodes = [n.manifest.digest for n in closure.nodes]
        states = self._index.object_states(nodes + [b.digest for b in closure.blobs])
        root = states.get(digest)
        if root is None or not root.complete:
            return False
        if any(b.digest not in states and not b.is_foreign for b in closure.blobs):
            return False
        return self._rely_all(
            nodes + [b.digest for b in closure.blobs if b.digest in states], states
        )

    def _keep_locked(self, objects: list[tuple[Digest, datetime | None]]) -> None:
        """Extend the locks that end too soon (maintenance.locks: the lock model)."""
        if self._locks is None:
            return
        for digest, recorded in objects:
            self._locks.for_backup(digest, recorded)

    def _copy_blob(
        self, repository: str, blob: Descriptor, report: CopyReport, progress: Progress
    ) -> tuple[StoredObject, bool] | None:
        """Copy a blob the index does not hold: what to record, and whether its lock end is
        known (this copy wrote it whole, with its retention); None for a foreign layer the
        registry does not serve."""
        check_cancelled()  # a copy still queued when the run is interrupted is not started
        # A small blob is PUT conditionally at once (its 412 says it was there); a large one
        # is looked for first, so that a stored one is not read from the registry again.
        whole = blob.size <= self._store.part_size
        stored_size = None if whole else self._store.stat(blob.digest)
        retain = None
        if stored_size is None:
            self._check_time(blob.size, f"copy of {blob.digest} ({blob.size} bytes)")
            retain = self._new_lock(self._clock())
            try:
                with self._registry.open_blob(repository, blob.digest) as stream:
                    counted = Counted(stream, progress)
                    written = self._store.put_stream(blob.digest, blob.size, counted, retain)
                progress.advance(blob.size - counted.count)
            except BlobNotFoundError:
                if not blob.is_foreign:
                    raise
                log.warning(
                    "foreign layer %s is not served by the registry; recorded, not copied",
                    blob.digest,
                )
                report.foreign(blob.digest)
                progress.advance(blob.size)
                return None
            if written:
                report.copied(blob.digest, blob.size)
            else:
                report.skipped(blob.digest)  # already there: a concurrent copy, an earlier run
        elif stored_size != blob.size:
            raise StorageError(
                f"{blob.digest} is stored with {stored_size} bytes, but its descriptor says "
                f"{blob.size}"
            )
        else:
            report.skipped(blob.digest)  # left by an earlier run that stopped before indexing
            progress.advance(blob.size)
            written = False
        # A lock set with a single PUT is known; one asked of a multipart upload is read
        # back (_keep_locked) like any lock not recorded: stand-ins may not apply it.
        known = written and whole and retain is not None
        until = retain.until if known and retain is not None else None
        stored = StoredObject(blob.digest, blob.size, blob.media_type, self._clock(), until)
        return stored, known

    def _new_lock(self, now: datetime) -> ObjectLock | None:
        """The retention of an object this backup creates (maintenance.locks)."""
        return self._locks.new_object_lock(now) if self._locks is not None else None

    def _check_time(self, size: int, what: str) -> None:
        # Checked as each copy starts (copies run in parallel): blobs stored before the
        # deadline stay stored, and the redelivered event copies only the rest.
        if self._deadline is not None:
            self._deadline.check(size, what)


@dataclass(frozen=True)
class _Copying:
    """What one replication's blob copies share: the thread pool and the progress bar."""

    pool: ThreadPoolExecutor
    progress: Progress
