"""The one code path for an ECR event, shared by the Lambda handler and `handle-event`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ecr_backup.backup.events import EcrEvent
from ecr_backup.backup.replicator import CopyReport, Replicator
from ecr_backup.model import Action, ImageEvent

log = logging.getLogger(__name__)

# The words the CLI's text output uses too (docs/json.md).
Status = Literal["backed up", "already backed up", "deletion recorded", "ignored"]


@dataclass(frozen=True)
class EventOutcome:
    event_id: str
    status: Status
    image: ImageEvent | None = None
    report: CopyReport | None = None


def handle_ecr_event(
    event: EcrEvent, replicator_for: Callable[[str, str], Replicator]
) -> EventOutcome:
    """PUSH: back the image up; DELETE: record it, deleting nothing; anything else: ignore."""
    image = event.image_event()
    if image is None:
        log.info("ignoring event %s (%s from %s)", event.id, event.detail_type, event.source)
        return EventOutcome(event.id, "ignored")
    replicator = replicator_for(event.account, event.region)
    if image.action is Action.DELETE:
        replicator.record(image)
        return EventOutcome(event.id, "deletion recorded", image)
    report = replicator.backup_event(image)
    status: Status = "backed up" if report.manifests_stored else "already backed up"
    return EventOutcome(event.id, status, image, report)
