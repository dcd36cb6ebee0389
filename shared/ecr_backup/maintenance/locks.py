"""The lock model: Object Lock retention that never lapses on an object a kept image needs.

Invariant (docs/deploy.md, "Retention"): at every maintenance check, every object reachable
from a kept image is locked until at least `now + LockDays`; a backup leaves every object
under the image it backs up locked until at least `push time + LockDays/2`.

How it holds, with L = LockDays:
- A new object is locked for L: by the bucket's default retention, or, when a backup
  writes it whole (PutObject), by the retention that PUT sets, `now + L` by the backup's
  clock, which the backup records without asking S3 again. A blob uploaded in parts has
  its lock read back (HeadObject) like any object whose recorded end is unknown.
- A backup that relies on an object (new or reused) whose lock ends before `now + L/2`
  extends it to `now + 1.5 L` (PutObjectRetention, the object's own mode).
- `maintain` (scheduled daily, and `ecr-backup maintain`) extends every object of every kept
  image whose lock ends before `now + L` to `now + 1.5 L`, and reports as *short* the locks
  it found ending before `now + L/2`: those mean checks did not run for half a period.
- After an extension an object has 1.5 L left, so the next one is due no sooner than L/2
  later: at most about one PutObjectRetention per object per L/2.
- The index records each object's lock end (`lock_until`), so a check costs no S3 call
  while the recorded end is far enough; below it, the lock is read again with HeadObject
  (the truth) before anything is extended.
- Extending is the only change ever asked for: a new date is sent only when it is later
  than the one read. Shortening GOVERNANCE needs s3:BypassGovernanceRetention, which no
  role of this stack holds, and COMPLIANCE cannot be shortened at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from ecr_backup.oci.digest import Digest
from ecr_backup.storage.objectlock import LockMode, ObjectLock

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


class LockReader(Protocol):
    def read(self, digest: Digest) -> ObjectLock: ...

    def extend(self, digest: Digest, mode: LockMode, until: datetime) -> None: ...


class LockRecorder(Protocol):
    def record_lock(self, digest: Digest, until: datetime) -> None: ...


@dataclass(frozen=True, slots=True)
class LockPolicy:
    lock_days: int
    default_mode: LockMode = "GOVERNANCE"  # for an object that has no retention yet

    @property
    def period(self) -> timedelta:
        return timedelta(days=self.lock_days)

    def backup_floor(self, now: datetime) -> datetime:
        return now + self.period / 2

    def check_floor(self, now: datetime) -> datetime:
        return now + self.period

    def target(self, now: datetime) -> datetime:
        return now + self.period * 3 / 2


@dataclass(frozen=True, slots=True)
class LockCheck:
    """What one check found and did for one object."""

    digest: Digest
    found: datetime | None  # the lock end read (None: not read, the record sufficed)
    until: datetime | None  # the lock end now
    extended: bool = False
    short: bool = False  # found ending before now + LockDays/2


class LockKeeper:
    def __init__(
        self,
        locks: LockReader,
        ledger: LockRecorder,
        policy: LockPolicy,
        clock: Clock = system_clock,
    ) -> None:
        self._locks = locks
        self._ledger = ledger
        self.policy = policy
        self.clock = clock

    def for_backup(self, digest: Digest, recorded: datetime | None) -> LockCheck:
        now = self.clock()
        return self._ensure(digest, recorded, self.policy.backup_floor(now), now)

    def new_object_lock(self, created_at: datetime) -> ObjectLock:
        """The retention a backup sets on an object it creates: what the bucket's default
        gives (mode, `created_at + L`), but dated by our clock, so that its end is known."""
        return ObjectLock(self.policy.default_mode, created_at + self.policy.period)

    def for_check(self, digest: Digest, recorded: datetime | None) -> LockCheck:
        now = self.clock()
        return self._ensure(digest, recorded, self.policy.check_floor(now), now)

    def _ensure(
        self, digest: Digest, recorded: datetime | None, floor: datetime, now: datetime
    ) -> LockCheck:
        if recorded is not None and recorded >= floor:
            return LockCheck(digest, None, recorded)
        lock = self._locks.read(digest)
        short = lock.until is None or lock.until < self.policy.backup_floor(now)
        if lock.until is not None and lock.until >= floor:
            self._ledger.record_lock(digest, lock.until)
            return LockCheck(digest, lock.until, lock.until, short=short)
        target = self.policy.target(now)
        # Only ever later: `lock.until < floor < target` here, so this is an extension.
        self._locks.extend(digest, lock.mode or self.policy.default_mode, target)
        self._ledger.record_lock(digest, target)
        return LockCheck(digest, lock.until, target, extended=True, short=short)
