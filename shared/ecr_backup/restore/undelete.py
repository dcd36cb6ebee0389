"""Undelete: what the source deleted in a window, as it was just before each deletion.

From the backup's event history alone (index or bucket):
- an image deletion (a DELETE event without a tag) in the window brings the image back,
  with every tag that pointed at it just before (ECR removes an image's tags with it, and
  not always with an event per tag);
- a tag removal (a DELETE event with a tag) in the window brings the tag back, at the
  digest it pointed at when it was removed.
Whether a tag was pushed again since is the target's to say, read just before the push
(restore/push.py refuses to move a tag unless asked): the history only knows what ECR
reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from ecr_backup.errors import NotFoundError
from ecr_backup.model import Action, ImageEvent, TagState
from ecr_backup.oci.digest import Digest

# "Just before" a deletion: the history's times are microseconds.
BEFORE = timedelta(microseconds=1)


class History(Protocol):
    def tags(self, repository: str, at: datetime | None = None) -> list[TagState]: ...

    def history(
        self, repository: str, tag: str | None, at: datetime | None = None
    ) -> list[ImageEvent]: ...

    def tag_at(self, repository: str, tag: str, at: datetime) -> ImageEvent | None: ...


@dataclass
class Deleted:
    """One image to bring back into one repository, with the tags it had."""

    repository: str
    digest: Digest
    deleted_at: datetime  # the last deletion (of the image or of one of its tags) in the window
    image_deleted: bool  # False: only tags were removed, the image may still be in the source
    tags: list[str] = field(default_factory=list)
    source_account: str | None = None
    source_region: str | None = None

    def saw(self, event: ImageEvent) -> None:
        self.deleted_at = max(event.time, self.deleted_at)
        self.source_account = self.source_account or event.source_account
        self.source_region = self.source_region or event.source_region


def deleted_in(
    catalog: History, repository: str, since: datetime, until: datetime
) -> list[Deleted]:
    """Everything deleted from `repository` between `since` and `until` (both included)."""
    found: dict[Digest, Deleted] = {}

    def entry(event: ImageEvent, *, image: bool) -> Deleted:
        item = found.get(event.digest)
        if item is None:
            item = Deleted(repository, event.digest, event.time, image_deleted=image)
            found[event.digest] = item
        item.image_deleted = item.image_deleted or image
        item.saw(event)
        return item

    for event in _in_window(_history(catalog, repository, None), since, until):
        deleted = entry(event, image=True)
        # The tags that pointed at it just before: gone with it, event or not.
        for state in catalog.tags(repository, event.time - BEFORE):
            if state.action is Action.PUSH and state.digest == event.digest:
                _add_tag(deleted, state.tag)
    for state in catalog.tags(repository):
        for event in _in_window(_history(catalog, repository, state.tag), since, until):
            _add_tag(entry(event, image=False), state.tag)
    ordered = sorted(found.values(), key=lambda d: (d.deleted_at, str(d.digest)))
    # A tag deleted twice in the window (with one image, then with another) comes back as it
    # was last: on the image deleted last.
    last: dict[str, Deleted] = {}
    for item in ordered:
        for tag in item.tags:
            last[tag] = item
    for item in ordered:
        item.tags = [t for t in item.tags if last[t] is item]
    return ordered


def _history(catalog: History, repository: str, tag: str | None) -> list[ImageEvent]:
    try:
        return catalog.history(repository, tag)
    except NotFoundError:
        return []  # no untagged events (or none of this tag): nothing deleted there


def _in_window(events: Iterable[ImageEvent], since: datetime, until: datetime) -> list[ImageEvent]:
    return [e for e in events if e.action is Action.DELETE and since <= e.time <= until]


def _add_tag(deleted: Deleted, tag: str) -> None:
    if tag not in deleted.tags:
        deleted.tags.append(tag)
        deleted.tags.sort()
