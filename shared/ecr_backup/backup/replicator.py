"""The backup engine: copy one pushed image into the bucket, incrementally, manifest last.

Against a concurrent prune (ecr_backup.maintenance.prune), the rule is: before a manifest is
marked complete, every object under it (its blobs, its child manifests, itself) has been
claimed in the index, which clears a prune tombstone and fails while a prune is deleting
the object; a claim that finds the object gone from the index copies it again. The same
holds when the manifest was already complete (a replay, a new tag on an old digest): its
whole closure is claimed again, read from the bucket, never from the registry.
"""

from __future__ import annotations

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
from ecr_backup.errors import BlobNotFoundError, InvalidInputError, NotFoundError, StorageError
from ecr_backup.model import Action, ImageEvent, ManifestRecord, StorageClassChange
from ecr_backup.oci.closure import build_closure, check_index_depth, closure_total
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Descriptor, Manifest, parse_manifest
from ecr_backup.progress import Counted, Progress, ProgressFactory, no_progress
from ecr_backup.settings import DEFAULT_CONCURRENCY

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
        """Record an event: the bucket's record first (rebuild-index reads it), then the index."""
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
            if self._index.manifest(digest) is not None and self._reclaim(digest):
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
        existing = self._index.manifest(manifest.digest)
        if existing is not None and self._reclaim(manifest.digest):
            log.debug("manifest %s already complete", manifest.digest)
            report.manifests_skipped.append(manifest.digest)
            return existing.total_size

        child_totals = []
        for child in manifest.children:
            check_index_depth(depth + 1, child.digest)
            child_manifest = self._registry.get_manifest(repository, str(child.digest))
            child_totals.append(
                self._replicate_manifest(
                    repository, child_manifest, report, copying, depth=depth + 1
                )
            )

        blobs = manifest.unique_blobs
        known = self._index.stored_blobs(b.digest for b in blobs)
        recorded: dict[Digest, datetime | None] = {}
        for blob in blobs:
            if blob.digest in known:
                claimed = self._index.claim(blob.digest, self._clock())
                if claimed is not None:
                    recorded[blob.digest] = claimed.lock_until
                    report.skipped(blob.digest)
        # Claimed above, or copied (recording is claiming) now; a blob whose claim found it
        # pruned meanwhile is copied again.
        missing = [b for b in blobs if b.digest not in recorded]
        copying.progress.grow(sum(b.size for b in missing))
        # list() waits for every copy and re-raises the first failure: manifest last.
        list(
            copying.pool.map(
                lambda blob: self._copy_blob(repository, blob, report, copying.progress),
                missing,
            )
        )
        total = closure_total(manifest, child_totals)

        check_cancelled()  # manifest last, and not at all once interrupted
        now = self._clock()
        self._store.put_bytes(manifest.digest, manifest.raw)
        self._index.record_blob(manifest.digest, manifest.size, manifest.media_type, now)
        foreign = set(report.blobs_foreign)
        self._keep_locked(
            [(b.digest, recorded.get(b.digest)) for b in blobs if b.digest not in foreign]
            + [(manifest.digest, None)]
        )
        self._index.mark_complete(ManifestRecord.of(manifest, total, now))
        log.debug("manifest %s stored, complete", manifest.digest)
        report.manifests_stored.append(manifest.digest)
        return total

    def _reclaim(self, digest: Digest) -> bool:
        """Claim every object of a complete manifest's closure again (read from the bucket)
        and keep it locked; False when one is gone from the index: back it up again."""
        try:
            closure = build_closure(digest, lambda d: parse_manifest(self._store.read(d)))
        except NotFoundError:
            return False
        blobs = [b.digest for b in closure.blobs]
        known = self._index.stored_blobs(blobs)
        if any(b.digest not in known and not b.is_foreign for b in closure.blobs):
            return False
        objects = [n.manifest.digest for n in closure.nodes] + [d for d in blobs if d in known]
        recorded: list[tuple[Digest, datetime | None]] = []
        for object_digest in objects:
            claimed = self._index.claim(object_digest, self._clock())
            if claimed is None:
                return False
            recorded.append((object_digest, claimed.lock_until))
        self._keep_locked(recorded)
        return True

    def _keep_locked(self, objects: list[tuple[Digest, datetime | None]]) -> None:
        """Extend the locks that end too soon (maintenance.locks: the lock model)."""
        if self._locks is None:
            return
        for digest, recorded in objects:
            self._locks.for_backup(digest, recorded)

    def _copy_blob(
        self, repository: str, blob: Descriptor, report: CopyReport, progress: Progress
    ) -> None:
        check_cancelled()  # a copy still queued when the run is interrupted is not started
        stored_size = self._store.stat(blob.digest)
        if stored_size is None:
            self._check_time(blob.size, f"copy of {blob.digest} ({blob.size} bytes)")
            try:
                with self._registry.open_blob(repository, blob.digest) as stream:
                    counted = Counted(stream, progress)
                    written = self._store.put_stream(blob.digest, blob.size, counted)
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
                return
            if written:
                report.copied(blob.digest, blob.size)
            else:
                report.skipped(blob.digest)  # a concurrent copy stored it first
        elif stored_size != blob.size:
            raise StorageError(
                f"{blob.digest} is stored with {stored_size} bytes, but its descriptor says "
                f"{blob.size}"
            )
        else:
            report.skipped(blob.digest)  # left by an earlier run that stopped before indexing
            progress.advance(blob.size)
        self._index.record_blob(blob.digest, blob.size, blob.media_type, self._clock())

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
