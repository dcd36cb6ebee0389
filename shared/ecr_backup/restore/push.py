"""Restore images from the bucket into any registry (ECR included), digest for digest.

Order of work, so that a restore that fails halfway leaves nothing tagged at the target:
plan everything from the bucket first (every manifest read and verified, every blob found);
then blobs (HEAD and skip what the target holds, mount what a sibling repository holds,
upload the rest, each in one request streamed from S3); then manifests by digest, children
before the indexes that list them, with their exact stored bytes; then, last, the tags.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from ecr_backup.cancellation import cancellable_sleep, check_cancelled
from ecr_backup.errors import (
    DigestMismatchError,
    InvalidInputError,
    RefusedError,
    RegistryError,
    RegistryThrottledError,
)
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Descriptor, Manifest
from ecr_backup.oci.streams import Readable, read_full
from ecr_backup.progress import Counted, Progress, ProgressFactory, no_progress
from ecr_backup.restore.plan import RestorePlan
from ecr_backup.restore.ports import TargetRegistry
from ecr_backup.restore.referrers import ReferrersOutcome, index_referrers
from ecr_backup.retry import RetryPolicy
from ecr_backup.settings import DEFAULT_CONCURRENCY, MIN_PART_SIZE, UPLOAD_BUFFER_SIZE
from ecr_backup.storage.reader import BucketReader
from ecr_backup.text import counted

log = logging.getLogger(__name__)


class _ReadAhead:
    """Reads the next chunk from the bucket while the registry takes the current one.

    An upload alternates "read from S3" and "send to the registry"; done in turn, each side
    waits for the other. One piece of read-ahead overlaps them, for one more piece of
    memory per upload. Errors (a digest mismatch on the last chunk) reach the
    uploader in place of the chunk, so the upload is never committed.
    """

    def __init__(self, source: Readable, chunk_size: int) -> None:
        self._source = source
        self._chunk_size = chunk_size
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=1)
        self._buffer = b""
        self._finished = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, name="read-ahead", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = read_full(self._source, self._chunk_size)
                self._hand_over(chunk)
                if not chunk:
                    return
        except BaseException as e:  # handed to the reading thread, raised there
            self._hand_over(e)

    def _hand_over(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, amt: int = -1, /) -> bytes:
        if not self._buffer and not self._finished:
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._finished = True
                raise item
            self._buffer = item
            self._finished = not item
        if amt < 0 or amt >= len(self._buffer):
            data, self._buffer = self._buffer, b""  # whole chunks pass without a copy
        else:
            data, self._buffer = self._buffer[:amt], self._buffer[amt:]
        return data

    def close(self) -> None:
        """Stop reading ahead; the bucket's stream may be closed after this returns."""
        self._stop.set()
        self._thread.join()


# -- tags ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TagMove:
    """A tag of the target that points at another digest than the one restored to it."""

    repository: str
    tag: str
    current: Digest
    restored: Digest

    def line(self) -> str:
        return f"{self.repository}:{self.tag} {self.current} -> {self.restored}"

    def as_dict(self) -> dict[str, object]:
        return {
            "repository": self.repository,
            "tag": self.tag,
            "from": str(self.current),
            "to": str(self.restored),
        }


@dataclass
class TagPlan:
    """What setting the plan's tags does to the target's tags, as read before any push."""

    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    moved: list[TagMove] = field(default_factory=list)


def refuse_moves(moves: list[TagMove], notes: tuple[str, ...] = ()) -> RefusedError:
    """One line per move (then `notes`), and a last one saying how to allow them."""
    return RefusedError(
        f"{counted(len(moves), 'tag')} of the target point at another digest: nothing was "
        "pushed; "
        "pass --allow-tag-moves to move them",
        details=tuple(m.line() for m in moves) + notes,
        code="TAG_MOVES_REFUSED",
    )


# -- pushing ---------------------------------------------------------------------------------


@dataclass
class RestoreReport:
    target: str
    dry_run: bool = False
    created_repository: bool = False
    images: list[tuple[str, str | None]] = field(default_factory=list)  # (digest, tag)
    manifests_pushed: list[Digest] = field(default_factory=list)
    manifests_present: list[Digest] = field(default_factory=list)
    blobs_uploaded: list[Digest] = field(default_factory=list)
    blobs_mounted: list[Digest] = field(default_factory=list)
    blobs_present: list[Digest] = field(default_factory=list)
    bytes_uploaded: int = 0
    bytes_mounted: int = 0
    bytes_present: int = 0
    tags_created: list[str] = field(default_factory=list)
    tags_unchanged: list[str] = field(default_factory=list)
    tags_moved: list[TagMove] = field(default_factory=list)
    recovered_versions: dict[str, str | None] = field(default_factory=dict)
    referrers: ReferrersOutcome = field(default_factory=ReferrersOutcome)
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def blob(self, kind: Literal["uploaded", "mounted", "present"], blob: Descriptor) -> None:
        # -v's account of the work, blob by blob (cli/options.py).
        log.debug("blob %s %s%s (%d bytes)", blob.digest, "to be " * self.dry_run, kind, blob.size)
        with self._lock:
            if kind == "uploaded":
                self.blobs_uploaded.append(blob.digest)
                self.bytes_uploaded += blob.size
            elif kind == "mounted":
                self.blobs_mounted.append(blob.digest)
                self.bytes_mounted += blob.size
            else:
                self.blobs_present.append(blob.digest)
                self.bytes_present += blob.size

    @property
    def tags_set(self) -> list[str]:
        """Tags written: created or moved."""
        return self.tags_created + [m.tag for m in self.tags_moved]

    @property
    def tag_counts(self) -> dict[str, int]:
        return {
            "created": len(self.tags_created),
            "unchanged": len(self.tags_unchanged),
            "moved": len(self.tags_moved),
        }


class Restorer:
    """Pushes a plan into one repository of one registry."""

    def __init__(
        self,
        reader: BucketReader,
        registry: TargetRegistry,
        *,
        chunk_size: int | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        mount_from: Iterable[str] = (),
        progress: ProgressFactory = no_progress,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = cancellable_sleep,
        allow_tag_moves: bool = False,
    ) -> None:
        """`chunk_size` None uploads each blob in one streamed request (what ECR needs);
        a size sends PATCHes of that size, for registries that refuse big requests.
        Without `allow_tag_moves`, a tag of the target at another digest stops the restore
        before anything is pushed."""
        if chunk_size is not None and chunk_size < MIN_PART_SIZE:
            raise InvalidInputError("upload chunks must be at least 5 MiB (ECR's minimum part)")
        if concurrency < 1:
            raise InvalidInputError("concurrency must be at least 1")
        self._reader = reader
        self._registry = registry
        self._chunk_size = chunk_size
        self._concurrency = concurrency
        self._mount_from = list(dict.fromkeys(mount_from))
        self._progress = progress
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._allow_tag_moves = allow_tag_moves

    def tag_plan(self, plan: RestorePlan) -> TagPlan:
        """Each target tag's current digest, read now: which tags the restore creates,
        leaves as they are, or moves."""
        repository = plan.target.repository
        tags = TagPlan()
        for root in plan.roots:
            if not root.target_tag:
                continue
            current = self._registry.manifest_digest(repository, root.target_tag)
            if current is None:
                tags.created.append(root.target_tag)
            elif current == root.closure.digest:
                tags.unchanged.append(root.target_tag)
            else:
                move = TagMove(repository, root.target_tag, current, root.closure.digest)
                tags.moved.append(move)
        return tags

    def run(self, plan: RestorePlan, report: RestoreReport | None = None) -> RestoreReport:
        started = time.monotonic()
        report = report or RestoreReport(str(plan.target))
        report.images = [(str(r.closure.digest), r.target_tag) for r in plan.roots]
        repository = plan.target.repository
        moves = self.tag_plan(plan).moved
        if moves and not self._allow_tag_moves:
            raise refuse_moves(moves)
        progress = self._progress(plan.total_bytes, "restore")
        # 1. Blobs, concurrently; map() re-raises the first failure before any manifest.
        with ThreadPoolExecutor(self._concurrency, thread_name_prefix="restore") as pool:
            list(pool.map(lambda b: self._blob(repository, b, report, progress), plan.blobs))
        progress.finish()
        # 2. Manifests by digest, children first: untagged until everything is there.
        for manifest in plan.manifests:
            check_cancelled()
            if self._registry.manifest_digest(repository, str(manifest.digest)) is not None:
                report.manifests_present.append(manifest.digest)
                continue
            self._registry.put_manifest(repository, str(manifest.digest), manifest)
            log.debug("manifest %s pushed to %s", manifest.digest, repository)
            report.manifests_pushed.append(manifest.digest)
        # 3. Tags, last.
        for root in plan.roots:
            if root.target_tag:
                check_cancelled()
                self._tag(repository, root.target_tag, root.closure.root, report)
        # 4. Referrers findable from their subjects (the API, else the referrers tags).
        referrers = [r.root for r in plan.referrers]
        index_referrers(self._registry, repository, referrers, report.referrers, write=True)
        report.recovered_versions = {str(d): v for d, v in self._reader.recovered.items()}
        report.seconds = time.monotonic() - started
        return report

    def preview(self, plan: RestorePlan, report: RestoreReport | None = None) -> RestoreReport:
        """A dry run: what the target lacks, asked with HEAD requests only."""
        report = report or RestoreReport(str(plan.target))
        report.dry_run = True
        report.images = [(str(r.closure.digest), r.target_tag) for r in plan.roots]
        repository = plan.target.repository

        def check(blob: Descriptor) -> None:
            if self._registry.blob_size(repository, blob.digest) is not None:
                report.blob("present", blob)
            elif self._mount_source(repository, blob) is not None:
                report.blob("mounted", blob)
            else:
                report.blob("uploaded", blob)

        with ThreadPoolExecutor(self._concurrency, thread_name_prefix="preview") as pool:
            list(pool.map(check, plan.blobs))
        for manifest in plan.manifests:
            if self._registry.manifest_digest(repository, str(manifest.digest)) is not None:
                report.manifests_present.append(manifest.digest)
            else:
                report.manifests_pushed.append(manifest.digest)
        tags = self.tag_plan(plan)
        report.tags_created, report.tags_unchanged = tags.created, tags.unchanged
        report.tags_moved = tags.moved
        referrers = [r.root for r in plan.referrers]
        index_referrers(self._registry, repository, referrers, report.referrers, write=False)
        report.recovered_versions = {str(d): v for d, v in self._reader.recovered.items()}
        return report

    def _mount_source(self, repository: str, blob: Descriptor) -> str | None:
        for candidate in self._mount_from:
            if candidate != repository and (
                self._registry.blob_size(candidate, blob.digest) is not None
            ):
                return candidate
        return None

    def _blob(
        self, repository: str, blob: Descriptor, report: RestoreReport, progress: Progress
    ) -> None:
        check_cancelled()  # a blob still queued when the run is interrupted is not started
        if self._registry.blob_size(repository, blob.digest) is not None:
            report.blob("present", blob)
            progress.advance(blob.size)
            return
        source = self._mount_source(repository, blob)
        if source is not None and self._registry.mount_blob(repository, blob.digest, source):
            report.blob("mounted", blob)
            progress.advance(blob.size)
            return
        self._upload(repository, blob, progress)
        report.blob("uploaded", blob)

    def _upload(self, repository: str, blob: Descriptor, progress: Progress) -> None:
        """Upload one blob; every new attempt is a new upload session reading the bucket anew.

        A streamed body cannot be sent twice, so a throttled, dropped or refused upload
        starts over from the bucket (and is verified again while it streams), after the
        backoff the registry asked for. A digest mismatch reads the blob's intact version.
        """
        recovered = False
        attempt = 0
        while True:
            counted: Counted | None = None
            try:
                with self._reader.open_blob(blob.digest, blob.size) as stream:
                    counted = Counted(stream, progress)
                    ahead = _ReadAhead(counted, self._chunk_size or UPLOAD_BUFFER_SIZE)
                    try:
                        self._registry.upload_blob(
                            repository,
                            blob.digest,
                            blob.size,
                            ahead,
                            chunk_size=self._chunk_size,
                        )
                    finally:
                        ahead.close()
                return
            except DigestMismatchError:
                # The current object version is not what the backup wrote (the upload was
                # never committed): read the intact version instead.
                if recovered:
                    raise
                self._reader.recover(blob.digest, blob.size)
                recovered = True
            except RegistryError as e:
                attempt += 1
                if not e.retryable or attempt >= self._retry.attempts:
                    raise
                retry_after = e.retry_after if isinstance(e, RegistryThrottledError) else None
                wait = self._retry.delay(attempt - 1, retry_after)
                log.warning("upload of %s failed (%s); again in %.1f s", blob.digest, e, wait)
                self._sleep(wait)
            if counted is not None:
                progress.advance(-counted.count)

    def _tag(self, repository: str, tag: str, manifest: Manifest, report: RestoreReport) -> None:
        # Read again: someone may have moved the tag since the plan read it.
        current = self._registry.manifest_digest(repository, tag)
        if current == manifest.digest:
            report.tags_unchanged.append(tag)
            return
        move = TagMove(repository, tag, current, manifest.digest) if current else None
        if move is not None and not self._allow_tag_moves:
            raise refuse_moves([move])
        self._registry.put_manifest(repository, tag, manifest)
        log.debug("tag %s:%s set to %s", repository, tag, manifest.digest)
        if move is None:
            report.tags_created.append(tag)
        else:
            report.tags_moved.append(move)
