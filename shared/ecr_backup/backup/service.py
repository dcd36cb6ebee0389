"""The one code path for an ECR event, shared by the Lambda handler and `handle-event`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ecr_backup.backup.events import EcrChange, EcrEvent, EventKind
from ecr_backup.backup.replicator import CopyReport, Replicator
from ecr_backup.model import Action, ImageEvent, StorageClass, StorageClassChange
from ecr_backup.oci.digest import Digest

log = logging.getLogger(__name__)

# The words the CLI's text output uses too (docs/json.md).
Status = Literal[
    "backed up", "already backed up", "deletion recorded", "storage class recorded", "ignored"
]


@dataclass(frozen=True)
class EventOutcome:
    event_id: str
    status: Status
    image: ImageEvent | None = None
    report: CopyReport | None = None
    kind: EventKind | None = None
    storage: StorageClassChange | None = None
    origin: str | None = None  # logged: where a replicated or cached image came from

    # What the --json document and the log line name (schema.EventOutcome reads them).
    @property
    def repository(self) -> str | None:
        named = self.image or self.storage
        return named.repository if named else None

    @property
    def digest(self) -> Digest | None:
        named = self.image or self.storage
        return named.digest if named else None

    @property
    def tag(self) -> str | None:
        return self.image.tag if self.image else None

    @property
    def storage_class(self) -> str | None:
        return str(self.storage.storage_class) if self.storage else None


def handle_ecr_event(
    event: EcrEvent,
    replicator_for: Callable[[str, str], Replicator],
    *,
    pull_through_cache: bool = True,
) -> EventOutcome:
    """PUSH (an image's, a referrer's, a replicated or a pull-through cached one): back it
    up; DELETE: record it, deleting nothing; ARCHIVE: record it; restore from the archive:
    back the image up if the backup lacks it, and record it; anything else: ignore."""
    change = event.change()
    if change is None or (change.kind is EventKind.PULL_THROUGH_CACHE and not pull_through_cache):
        log.info("ignoring event %s (%s from %s)", event.id, event.detail_type, event.source)
        return EventOutcome(event.id, "ignored", kind=event.kind)
    replicator = replicator_for(event.account, event.region)
    if change.storage is not None:
        return _storage_changed(event.id, change, change.storage, replicator)
    image = change.image
    assert image is not None  # EcrChange holds one of the two
    if image.action is Action.DELETE:
        replicator.record(image)
        return EventOutcome(event.id, "deletion recorded", image, kind=change.kind)
    return _back_up(event.id, change, image, replicator)


def _back_up(
    event_id: str,
    change: EcrChange,
    image: ImageEvent,
    replicator: Replicator,
    storage: StorageClassChange | None = None,
) -> EventOutcome:
    report = replicator.backup_event(image)
    status: Status = "backed up" if report.manifests_stored else "already backed up"
    return EventOutcome(event_id, status, image, report, change.kind, storage, change.origin)


def _storage_changed(
    event_id: str, change: EcrChange, storage: StorageClassChange, replicator: Replicator
) -> EventOutcome:
    outcome = EventOutcome(event_id, "storage class recorded", kind=change.kind, storage=storage)
    if storage.storage_class is StorageClass.STANDARD and not replicator.holds(storage.digest):
        # Restored from the archive and pullable again, but never backed up (it was archived
        # first, or before this backup existed): back it up as a push at the restore's time.
        restored = ImageEvent(
            repository=storage.repository,
            digest=storage.digest,
            action=Action.PUSH,
            time=storage.time,
            media_type=storage.media_type,
            source_account=storage.source_account,
            source_region=storage.source_region,
            event_id=storage.event_id,
        )
        outcome = _back_up(event_id, change, restored, replicator, storage)
    # After the backup: the record says what the bucket held when it was written.
    replicator.record_storage_class(storage)
    return outcome
