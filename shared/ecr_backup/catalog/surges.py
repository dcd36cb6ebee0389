"""Deletion surges: many images deleted in a short time are held from retention until a
person says the deletions were meant.

The threat this backup exists for is a mass deletion in the source. KeepDeletedDays alone
would turn one that nobody noticed into a mass deletion of the backup a few weeks later. So
every deletion the backup records (an ECR DELETE event, or reconcile finding an image gone)
is counted once, per account and per repository, in ten-minute slots (storage/deletions.py).
When the deletions of the last hour (the deletion's slot and the five before it):
- exceed `images` for an account or a repository, or
- exceed `percent` of a repository's images (those live before them), at least
  `min_images` of them,
a surge is recorded for that hour: an immutable record in the bucket, `refs/_surges/<id>.json`,
so prune, `surges` and a rebuilt index read it from the bucket alone.

Retention keeps every image whose deletion falls in an unacknowledged surge (retention.py).
`ecr-backup surges acknowledge` writes an immutable record, `refs/_audit/surge-ack/<id>.json`,
that no function role may write (template.yaml denies it to each): only a person with
operator credentials releases a surge's images to retention.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from ecr_backup.errors import InvalidInputError, NotFoundError
from ecr_backup.model import Action, ImageEvent, format_time, parse_time
from ecr_backup.oci.digest import Digest
from ecr_backup.settings import (
    DEFAULT_SURGE_IMAGES,
    DEFAULT_SURGE_PERCENT,
    SURGE_MIN_IMAGES,
)

log = logging.getLogger(__name__)

SLOT = timedelta(minutes=10)
WINDOW = timedelta(hours=1)
SURGES_DIR = "_surges/"
ACKNOWLEDGEMENTS_DIR = "_audit/surge-ack/"
# A deletion whose event names no account (a CLI replicate of a non-ECR source).
NO_ACCOUNT = "-"


class DeletionCounts(Protocol):
    def note_deletion(
        self, account: str, repository: str, digest: Digest, slot: datetime
    ) -> bool: ...

    def count_deletions(
        self, account: str, repository: str | None, start: datetime, end: datetime
    ) -> int: ...


class ImageStates(Protocol):
    def image_states(self, repository: str) -> dict[Digest, bool]: ...


class RecordStore(Protocol):
    def put_record(self, name: str, body: bytes) -> bool: ...

    def iter_records(self, under: str = "") -> Iterator[tuple[str, bytes]]: ...


@dataclass(frozen=True, slots=True)
class SurgeRules:
    images: int = DEFAULT_SURGE_IMAGES
    percent: int = DEFAULT_SURGE_PERCENT
    min_images: int = SURGE_MIN_IMAGES


def slot_of(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return moment.replace(minute=moment.minute - moment.minute % 10, second=0, microsecond=0)


def window_of(moment: datetime) -> tuple[datetime, datetime]:
    """The hour of slots that ends with the slot `moment` falls in."""
    end = slot_of(moment) + SLOT
    return end - WINDOW, end


@dataclass(frozen=True, slots=True)
class Surge:
    id: str
    account: str
    repository: str | None  # None: the whole account
    start: datetime
    end: datetime
    deletions: int
    rule: str
    detected_at: datetime

    @classmethod
    def named(
        cls,
        account: str,
        repository: str | None,
        window: tuple[datetime, datetime],
        *,
        deletions: int,
        rule: str,
        now: datetime,
    ) -> Surge:
        # The same hour of the same scope gets the same id, whoever detects it first.
        scope = "all" if repository is None else hashlib.sha256(repository.encode()).hexdigest()
        start, end = window
        name = f"{start:%Y%m%dT%H%MZ}-{account}-{scope[:8]}"
        return cls(name, account, repository, start, end, deletions, rule, now)

    @property
    def scope(self) -> str:
        where = "every repository" if self.repository is None else self.repository
        return f"account {self.account}, {where}"

    def covers(self, account: str, repository: str, moment: datetime) -> bool:
        return (
            account == self.account
            and self.repository in (None, repository)
            and self.start <= moment < self.end
        )

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "id": self.id,
                "account": self.account,
                "repository": self.repository,
                "start": format_time(self.start),
                "end": format_time(self.end),
                "deletions": self.deletions,
                "rule": self.rule,
                "detected_at": format_time(self.detected_at),
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Surge:
        body = json.loads(data)
        return cls(
            id=str(body["id"]),
            account=str(body["account"]),
            repository=body["repository"],
            start=parse_time(body["start"]),
            end=parse_time(body["end"]),
            deletions=int(body["deletions"]),
            rule=str(body["rule"]),
            detected_at=parse_time(body["detected_at"]),
        )


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    surge_id: str
    reason: str
    by: str
    time: datetime

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "id": self.surge_id,
                "reason": self.reason,
                "by": self.by,
                "time": format_time(self.time),
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Acknowledgement:
        body = json.loads(data)
        return cls(str(body["id"]), str(body["reason"]), str(body["by"]), parse_time(body["time"]))


@dataclass
class SurgeBook:
    """Every recorded surge and acknowledgement, as the bucket holds them."""

    surges: list[Surge] = field(default_factory=list)
    acknowledgements: dict[str, Acknowledgement] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)  # keys of records that do not parse

    def unacknowledged(self) -> list[Surge]:
        return [s for s in self.surges if s.id not in self.acknowledgements]

    def holding(self, account: str | None, repository: str, moment: datetime) -> Surge | None:
        """The unacknowledged surge a deletion at `moment` falls in, if any."""
        account = account or NO_ACCOUNT
        return next(
            (s for s in self.unacknowledged() if s.covers(account, repository, moment)), None
        )

    def find(self, surge_id: str) -> Surge:
        for surge in self.surges:
            if surge.id == surge_id:
                return surge
        raise NotFoundError(f"no surge {surge_id!r}: `ecr-backup surges` lists them")


def read_surges(records: RecordStore) -> SurgeBook:
    book = SurgeBook()
    for key, data in records.iter_records(SURGES_DIR):
        try:
            book.surges.append(Surge.from_json(data))
        except (ValueError, KeyError, TypeError) as e:
            # A record we cannot read might be a surge: say so, hold nothing less.
            book.unreadable.append(f"{key}: {e}")
    for key, data in records.iter_records(ACKNOWLEDGEMENTS_DIR):
        try:
            ack = Acknowledgement.from_json(data)
        except (ValueError, KeyError, TypeError) as e:
            book.unreadable.append(f"{key}: {e}")
            continue
        book.acknowledgements.setdefault(ack.surge_id, ack)
    book.surges.sort(key=lambda s: (s.start, s.id))
    return book


def acknowledge(
    records: RecordStore, surge_id: str, reason: str, by: str, now: datetime
) -> Acknowledgement:
    """Record, once and for good, that a person judged a surge's deletions as meant."""
    if not reason.strip():
        raise InvalidInputError("--reason must say why the deletions were meant")
    book = read_surges(records)
    book.find(surge_id)
    if surge_id in book.acknowledgements:
        done = book.acknowledgements[surge_id]
        raise InvalidInputError(
            f"surge {surge_id} was acknowledged already, {format_time(done.time)} by {done.by}"
        )
    ack = Acknowledgement(surge_id, reason.strip(), by, now)
    if not records.put_record(f"{ACKNOWLEDGEMENTS_DIR}{surge_id}.json", ack.to_json()):
        raise InvalidInputError(f"surge {surge_id} was acknowledged already, by someone else")
    return ack


class SurgeWatch:
    """Counts each recorded deletion and records a surge when a rule is crossed."""

    def __init__(
        self,
        counts: DeletionCounts,
        images: ImageStates,
        records: RecordStore,
        rules: SurgeRules,
        *,
        clock: Callable[[], datetime],
        on_surge: Callable[[Surge], None] | None = None,
    ) -> None:
        self._counts = counts
        self._images = images
        self._records = records
        self.rules = rules
        self._clock = clock
        self._on_surge = on_surge

    def observe(self, event: ImageEvent) -> list[Surge]:
        """The surges this deletion completes (recorded now); [] for anything else."""
        if event.action is not Action.DELETE:
            return []
        account = event.source_account or NO_ACCOUNT
        self._counts.note_deletion(account, event.repository, event.digest, slot_of(event.time))
        # Judged on a replay too: a surge whose record failed to write is written then.
        return [self._record(s) for s in self._crossed(account, event.repository, event.time)]

    def _crossed(self, account: str, repository: str, moment: datetime) -> Iterable[Surge]:
        window = window_of(moment)
        now = self._clock()
        limit = self.rules.images
        in_account = self._counts.count_deletions(account, None, *window)
        if in_account > limit:
            rule = f"{in_account} deletions in the account within an hour (over {limit})"
            yield Surge.named(account, None, window, deletions=in_account, rule=rule, now=now)
        in_repository = self._counts.count_deletions(account, repository, *window)
        if in_repository > limit:
            rule = f"{in_repository} deletions within an hour (over {limit})"
            yield Surge.named(
                account, repository, window, deletions=in_repository, rule=rule, now=now
            )
        elif in_repository >= self.rules.min_images:
            live = sum(1 for gone in self._images.image_states(repository).values() if not gone)
            before = live + in_repository
            if in_repository * 100 > self.rules.percent * before:
                rule = (
                    f"{in_repository} of {before} images deleted within an hour "
                    f"(over {self.rules.percent}%)"
                )
                yield Surge.named(
                    account, repository, window, deletions=in_repository, rule=rule, now=now
                )

    def _record(self, surge: Surge) -> Surge:
        if self._records.put_record(f"{SURGES_DIR}{surge.id}.json", surge.to_json()):
            log.warning("deletion surge %s: %s; %s", surge.id, surge.scope, surge.rule)
            if self._on_surge is not None:
                self._on_surge(surge)
        return surge
