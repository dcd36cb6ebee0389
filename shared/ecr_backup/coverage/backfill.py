"""Backfill: act on what reconcile found. Missing images are copied here (bounded
concurrency) or sent to the replicate queue as ECR events; pushes, moved tags and deleted
images are recorded as events. Held images are never fetched: no registry request."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from ecr_backup.backup.events import ecr_event_document
from ecr_backup.backup.replicator import CopyReport
from ecr_backup.cancellation import check_cancelled
from ecr_backup.coverage.reconcile import MissingImage, Reconciler, RepositoryDrift
from ecr_backup.errors import EcrBackupError
from ecr_backup.model import ImageEvent
from ecr_backup.progress import ProgressFactory, no_progress
from ecr_backup.settings import DEFAULT_IMAGE_CONCURRENCY

log = logging.getLogger(__name__)


class Recorder(Protocol):
    def record(self, event: ImageEvent) -> None: ...


class Copier(Recorder, Protocol):
    def replicate(
        self, repository: str, reference: str, report: CopyReport | None = None
    ) -> CopyReport: ...


class Sender(Protocol):
    def send(self, bodies: Sequence[dict[str, object]]) -> int: ...


@dataclass(frozen=True)
class CopyFailure:
    missing: MissingImage
    error: EcrBackupError


@dataclass
class BackfillReport:
    repositories: list[RepositoryDrift] = field(default_factory=list)
    copied: list[MissingImage] = field(default_factory=list)
    failed: list[CopyFailure] = field(default_factory=list)
    enqueued: int = 0
    recorded: int = 0

    @property
    def has_drift(self) -> bool:
        return any(r.has_drift for r in self.repositories)


def enqueue_missing(drift: RepositoryDrift, queue: Sender) -> int:
    """Send each missing, pullable image to the replicate queue as ECR's push event."""
    return queue.send([ecr_event_document(m.message) for m in drift.missing])


def settle(drift: RepositoryDrift, recorder: Recorder) -> int:
    """Record the events that name held images only; returns how many."""
    for event in drift.to_record:
        recorder.record(event)
    return len(drift.to_record)


class Backfill:
    def __init__(
        self,
        reconciler: Reconciler,
        copier: Copier,
        *,
        queue: Sender | None = None,
        image_concurrency: int = DEFAULT_IMAGE_CONCURRENCY,
        progress: ProgressFactory = no_progress,
    ) -> None:
        self._reconciler = reconciler
        self._copier = copier
        self._queue = queue
        self._image_concurrency = image_concurrency
        self._progress = progress

    def run(self, prefixes: Sequence[str] = (), *, dry_run: bool = False) -> BackfillReport:
        names = self._reconciler.repositories(prefixes, include_held=True)
        report = BackfillReport(list(self._reconciler.many(names)))
        if dry_run:
            return report
        for drift in report.repositories:
            report.recorded += settle(drift, self._copier)
        if self._queue is not None:
            report.enqueued = sum(enqueue_missing(d, self._queue) for d in report.repositories)
            return report
        missing = [m for drift in report.repositories for m in drift.missing]
        if missing:
            self._copy_all(missing, report)
        return report

    def _copy_all(self, missing: list[MissingImage], report: BackfillReport) -> None:
        progress = self._progress(sum(m.image.size for m in missing), "backfill")
        with ThreadPoolExecutor(self._image_concurrency, thread_name_prefix="backfill") as pool:
            for missing_image, error in zip(
                missing, pool.map(self._copy_one, missing), strict=True
            ):
                if error is None:
                    report.copied.append(missing_image)
                    report.recorded += len(missing_image.events)
                else:
                    report.failed.append(CopyFailure(missing_image, error))
                progress.advance(missing_image.image.size)
        progress.finish()

    def _copy_one(self, missing: MissingImage) -> EcrBackupError | None:
        """Copy one image, then record its events; a failure is reported, not raised, so
        that one bad image does not stop the others."""
        image = missing.image
        check_cancelled()  # an image still queued when the run is interrupted is not started
        try:
            self._copier.replicate(image.repository, str(image.digest))
            for event in missing.events:
                self._copier.record(event)
        except EcrBackupError as e:
            log.warning("%s@%s not backed up: %s", image.repository, image.digest, e)
            return e
        return None
