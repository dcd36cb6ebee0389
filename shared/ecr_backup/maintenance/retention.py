"""Retention rules: which images the backup keeps, and why, from the index's history alone.

An image (repository, digest) is kept while any of these holds:
- it is currently tagged in the source (a tag's newest event is a push of it, and no later
  deletion of the digest was recorded);
- less than KeepDeletedDays have passed since it was last live: since the source deleted
  it, moved its last tag away, or (never tagged) pushed it;
- it is among the last KeepPerTag digests pushed to a tag the source still has (a removed
  tag keeps nothing by itself: KeepDeletedDays governs its images);
- it is on hold (`ecr-backup hold`);
- its deletion fell in a deletion surge nobody has acknowledged (catalog/surges.py): a mass
  deletion is held, never swept, until a person says it was meant.
Everything reachable from a kept image (child manifests, configs, layers, and the
referrers of its manifests: signatures, SBOMs) is kept with it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from ecr_backup.catalog.surges import SurgeBook
from ecr_backup.model import Action, ImageEvent, TagState, rfc3339
from ecr_backup.oci.digest import Digest
from ecr_backup.storage.ledger import Hold


class HistorySource(Protocol):
    def repositories(self) -> list[str]: ...

    def tags(self, repository: str) -> list[TagState]: ...

    def history(self, repository: str, tag: str | None) -> list[ImageEvent]: ...

    def images(self, repository: str) -> list[Digest]: ...


@dataclass(frozen=True, slots=True)
class RetentionRules:
    keep_deleted_days: int
    keep_per_tag: int

    def describe(self) -> dict[str, int]:
        return {"keep_deleted_days": self.keep_deleted_days, "keep_per_tag": self.keep_per_tag}


@dataclass
class ImageVerdict:
    repository: str
    digest: Digest
    kept: bool = False
    reasons: list[str] = field(default_factory=list)
    last_live: datetime | None = None  # None: still tagged in the source
    surge: str | None = None  # the unacknowledged surge its deletion fell in

    def why(self) -> str:
        return "; ".join(self.reasons)


@dataclass
class _Life:
    """One image's life in one repository, from its events."""

    tagged_now: list[str] = field(default_factory=list)
    last_live: datetime | None = None
    deleted_at: datetime | None = None
    deleted_by: str | None = None  # the account whose deletion event it was

    def deleted(self, event: ImageEvent) -> None:
        if self.deleted_at is None or event.time >= self.deleted_at:
            self.deleted_at = event.time
            self.deleted_by = event.source_account

    def saw(self, moment: datetime) -> None:
        if self.last_live is None or moment > self.last_live:
            self.last_live = moment


def judge(
    source: HistorySource,
    holds: list[Hold],
    rules: RetentionRules,
    now: datetime,
    *,
    surges: SurgeBook,
) -> list[ImageVerdict]:
    """A verdict for every image the index holds, kept or not, with its reasons."""
    held = {(h.repository, h.digest): h for h in holds}
    verdicts: list[ImageVerdict] = []
    for repository in source.repositories():
        lives, recent = _lives(source, repository, rules.keep_per_tag)
        for digest in source.images(repository):
            life = lives.get(digest, _Life())
            verdict = ImageVerdict(repository, digest, last_live=life.last_live)
            _apply(verdict, life, recent.get(digest, []), rules, now)
            _surge(verdict, life, surges)
            hold = held.get((repository, digest))
            if hold is not None:
                verdict.kept = True
                verdict.reasons.append(f"on hold since {rfc3339(hold.time)}")
            verdicts.append(verdict)
    return verdicts


def _surge(verdict: ImageVerdict, life: _Life, surges: SurgeBook) -> None:
    if life.deleted_at is None:
        return
    surge = surges.holding(life.deleted_by, verdict.repository, life.deleted_at)
    if surge is not None:
        verdict.kept = True
        verdict.surge = surge.id
        verdict.reasons.append(f"held by surge {surge.id} (deleted {rfc3339(life.deleted_at)})")


def _apply(
    verdict: ImageVerdict, life: _Life, recent_of: list[str], rules: RetentionRules, now: datetime
) -> None:
    if life.tagged_now:
        verdict.kept = True
        verdict.last_live = None
        verdict.reasons.append("tagged " + ", ".join(sorted(life.tagged_now)))
    elif life.last_live is None:
        # No event names it (an index written by other means): keep rather than guess.
        verdict.kept = True
        verdict.reasons.append("no recorded events")
    else:
        until = life.last_live + timedelta(days=rules.keep_deleted_days)
        what = "deleted" if life.deleted_at == life.last_live else "last tagged or pushed"
        if now < until:
            verdict.kept = True
            verdict.reasons.append(f"{what} {rfc3339(life.last_live)}, kept until {rfc3339(until)}")
        else:
            verdict.reasons.append(
                f"{what} {rfc3339(life.last_live)}, past {rules.keep_deleted_days} days"
            )
    for tag in recent_of:
        verdict.kept = True
        verdict.reasons.append(f"among the last {rules.keep_per_tag} of tag {tag}")


def _lives(
    source: HistorySource, repository: str, keep_per_tag: int
) -> tuple[dict[Digest, _Life], dict[Digest, list[str]]]:
    lives: dict[Digest, _Life] = defaultdict(_Life)
    untagged = source.history(repository, None)
    deleted: dict[Digest, datetime] = {}
    for event in untagged:
        lives[event.digest].saw(event.time)
        if event.action is Action.DELETE:
            deleted[event.digest] = max(event.time, deleted.get(event.digest, event.time))
            lives[event.digest].deleted(event)
    recent: dict[Digest, list[str]] = defaultdict(list)
    for state in source.tags(repository):
        events = source.history(repository, state.tag)
        _walk_tag(state.tag, events, lives, deleted)
        if state.action is Action.DELETE:
            continue  # a removed tag keeps nothing: KeepDeletedDays governs its images
        pushed = [e.digest for e in reversed(events) if e.action is not Action.DELETE]
        for digest in list(dict.fromkeys(pushed))[:keep_per_tag]:
            recent[digest].append(state.tag)
    return lives, recent


def _walk_tag(
    tag: str, events: list[ImageEvent], lives: dict[Digest, _Life], deleted: dict[Digest, datetime]
) -> None:
    """A tag's events, oldest first: each push makes its digest live until the next event."""
    for event, following in zip(events, [*events[1:], None], strict=True):
        life = lives[event.digest]
        life.saw(event.time)
        if event.action is Action.DELETE:
            life.deleted(event)
            continue
        if following is not None:
            life.saw(following.time)  # the tag moved away (or was removed) then
            continue
        gone = deleted.get(event.digest)
        if gone is not None and gone >= event.time:
            continue  # the digest was deleted after this push: the tag went with it
        life.tagged_now.append(tag)
