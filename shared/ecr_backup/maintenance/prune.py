"""Prune: delete (delete-mark) the objects no kept image needs, in two phases, never one a
kept or in-flight image needs.

Phase one (mark): an object unreachable from every kept image (maintenance.retention), and
older than the grace period, gets a tombstone in the index. Phase two (sweep), in a later
run, at least one grace period after the tombstone: objects still unreachable, still
tombstoned and no longer locked are deleted; locked ones are reported with their lock end.

Why a backup running at the same time can never end with a complete manifest over a
deleted object (the interleavings; tests/unit/maintenance/test_interleaving.py replays each):
1. Before marking a manifest complete, a backup has made sure of every object under it
   (backup.replicator): it recorded it (which claims it) or read it, consistently, held,
   untombstoned and not being swept; one the read showed tombstoned it claimed. A claim
   removes the tombstone and fails while `sweeping` is set.
2. Prune deletes an object only after `start_sweep`, a conditional write that needs the
   very tombstone it saw and no `sweeping`. So for one object, either
   a. the claim came first: the tombstone is gone, start_sweep fails, nothing is deleted;
   b. start_sweep came first: the claim fails. If the index item is already gone (sweep
      finished) the backup copies the object again (a new current version over the delete
      marker); while `sweeping` is still set the backup stops with a retryable error and
      its event is retried later. Either way it marks nothing complete on a deleted object.
3. Phase one does not tombstone an object a backup claimed within the grace period, so a
   backup's claim cannot be overtaken by a fresh tombstone while it still runs; an object
   a backup read untombstoned gets a tombstone only after that read, and is swept a grace
   period later at the earliest, when the backup (shorter than the grace period) has
   marked its manifest complete and rule 4 keeps the object.
4. A complete manifest is un-completed (its MANIFEST item deleted) before any object is
   delete-marked; objects under a complete manifest that was not swept (a backup claimed
   it, or it is young) are kept, whatever the tombstones say.
5. One prune at a time (a lease in the index); a run that finds `sweeping` left by an
   interrupted one finishes it if the object is already gone, or gives the object back.
Push records (refs/ and the index's history) are never deleted.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from ecr_backup.catalog.surges import SurgeBook
from ecr_backup.errors import BlobNotFoundError, ConfigurationError
from ecr_backup.maintenance.graph import ObjectGraph
from ecr_backup.maintenance.ports import PruneLedger, PruneLocks
from ecr_backup.maintenance.retention import HistorySource, ImageVerdict, RetentionRules, judge
from ecr_backup.oci.digest import Digest
from ecr_backup.settings import PRUNE_LEASE_HOURS
from ecr_backup.storage.ledger import ObjectState

PruneAction = Literal["mark", "delete", "locked", "in-use", "finished"]
LEASE = timedelta(hours=PRUNE_LEASE_HOURS)


@dataclass(frozen=True, slots=True)
class PruneEntry:
    digest: Digest
    size: int
    action: PruneAction
    reason: str
    lock_until: datetime | None = None


@dataclass
class PruneReport:
    dry_run: bool
    time: datetime
    entries: list[PruneEntry] = field(default_factory=list)
    images_pruned: list[tuple[str, Digest]] = field(default_factory=list)
    # (repository, digest, surge id): deleted images kept because a surge is unacknowledged
    held_by_surge: list[tuple[str, Digest, str]] = field(default_factory=list)

    def of(self, action: PruneAction) -> list[PruneEntry]:
        return [e for e in self.entries if e.action == action]

    @property
    def bytes_freed(self) -> int:
        return sum(e.size for e in self.entries if e.action in ("delete", "finished"))

    @property
    def bytes_marked(self) -> int:
        return sum(e.size for e in self.of("mark"))


@dataclass
class _Run:
    """One run's view: the time, what is reachable, which images hold each object."""

    report: PruneReport
    token: str
    cutoff: datetime
    reach: set[Digest]
    verdicts: list[ImageVerdict]
    owners: dict[Digest, list[ImageVerdict]]

    @property
    def now(self) -> datetime:
        return self.report.time

    def add(self, state: ObjectState, action: PruneAction, detail: str | None = None) -> None:
        reason = _reason(state.digest, self.owners)
        text = f"{reason}; {detail}" if detail else reason
        self.report.entries.append(PruneEntry(state.digest, state.size, action, text))


@dataclass
class Pruner:
    ledger: PruneLedger
    locks: PruneLocks
    index: HistorySource
    graph: ObjectGraph
    rules: RetentionRules
    grace: timedelta
    surges: Callable[[], SurgeBook]  # read at each run: a new surge holds at once
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def run(self, *, dry_run: bool) -> PruneReport:
        now = self.clock()
        report = PruneReport(dry_run, now)
        owner = uuid.uuid4().hex
        if not dry_run and not self.ledger.take_prune_lease(owner, now, now + LEASE):
            raise ConfigurationError(
                "another prune is running (its lease in the index has not expired)",
                code="PRUNE_RUNNING",
                retryable=True,
            )
        try:
            self._run(report, owner)
        finally:
            if not dry_run:
                self.ledger.drop_prune_lease(owner)
        return report

    def _run(self, report: PruneReport, token: str) -> None:
        now, cutoff = report.time, report.time - self.grace
        objects = self.ledger.objects()
        verdicts = judge(self.index, self.ledger.holds(), self.rules, now, surges=self.surges())
        kept = [v.digest for v in verdicts if v.kept]
        young = {d for d, o in objects.items() if _young(o, cutoff)}
        reach = self.graph.reach(kept, referrers=True) | young
        # A young complete manifest protects its closure too (only manifests are read).
        reach |= self.graph.reach([d for d in young if objects[d].complete], referrers=False)
        report.held_by_surge = [(v.repository, v.digest, v.surge) for v in verdicts if v.surge]
        run = _Run(report, token, cutoff, reach, verdicts, self._owners(verdicts))
        if not report.dry_run:
            self._finish_interrupted(objects, run)
        unreachable = [o for d, o in objects.items() if d not in reach and o.sweeping is None]
        for state in unreachable:
            if state.tombstone_at is None:
                self._mark(state, run)
        due = [o for o in unreachable if o.tombstone_at is not None and o.tombstone_at <= cutoff]
        unlocked = [o for o in due if not self._locked(o, run)]
        if report.dry_run:
            in_use = self._in_use(reach, {o.digest for o in unlocked if o.complete})
            for state in unlocked:
                run.add(state, "in-use" if state.digest in in_use else "delete")
            return
        self._sweep(unlocked, run)

    def _mark(self, state: ObjectState, run: _Run) -> None:
        if run.report.dry_run:
            # Phase one does not look at locks; the dry run does, to say what will go.
            if not self._locked(state, run):
                run.add(state, "mark")
        elif self.ledger.tombstone(state.digest, run.now, run.cutoff):
            run.add(state, "mark")

    def _locked(self, state: ObjectState, run: _Run) -> bool:
        try:
            lock = self.locks.read(state.digest)
        except BlobNotFoundError:
            return False  # already gone from the bucket: only the index item is left
        if not lock.locked_at(run.now):
            return False
        until = lock.until if lock.until and lock.until > run.now else None
        held = " and a legal hold" if lock.legal_hold else ""
        reason = f"{_reason(state.digest, run.owners)}; locked{held}, left in place"
        run.report.entries.append(PruneEntry(state.digest, state.size, "locked", reason, until))
        return True

    def _in_use(self, reach: set[Digest], leaving: set[Digest]) -> set[Digest]:
        """Objects under a complete manifest that stays complete (rule 4)."""
        staying = self.ledger.complete_manifests() - leaving
        return reach | self.graph.reach(staying, referrers=False)

    def _sweep(self, unlocked: list[ObjectState], run: _Run) -> None:
        swept: list[ObjectState] = []
        for state in unlocked:
            if state.tombstone_at is None:
                continue  # not selected without one; keeps the type checker informed
            if self.ledger.start_sweep(state.digest, state.tombstone_at, run.token):
                swept.append(state)
            else:
                run.add(state, "in-use", "a backup relied on it since it was marked")
        # After start_sweep no backup can claim these; complete manifests that stay
        # complete now decide what is still in use (rule 4).
        in_use = self._in_use(run.reach, {o.digest for o in swept if o.complete})
        gone: list[ObjectState] = []
        for state in swept:
            if state.digest in in_use:
                self.ledger.abandon_sweep(state.digest, run.token)
                run.add(state, "in-use", "under a manifest that stays complete")
            else:
                gone.append(state)
        for state in gone:  # un-complete every manifest before deleting any object
            if state.complete:
                self._uncomplete(state.digest, run)
        for state in gone:
            self.locks.delete_current(state.digest)
            self.ledger.finish_sweep(state.digest, run.token)
            run.add(state, "delete")

    def _uncomplete(self, digest: Digest, run: _Run) -> None:
        self.ledger.uncomplete(digest)
        for verdict in run.verdicts:
            if verdict.digest == digest:
                self.ledger.mark_pruned(verdict.repository, digest, run.now)
                run.report.images_pruned.append((verdict.repository, digest))

    def _finish_interrupted(self, objects: dict[Digest, ObjectState], run: _Run) -> None:
        """`sweeping` left by a run that stopped (we hold the lease: no other run is on)."""
        for state in objects.values():
            if state.sweeping is None:
                continue
            try:
                self.locks.read(state.digest)
            except BlobNotFoundError:
                if state.complete:
                    self._uncomplete(state.digest, run)
                self.ledger.finish_sweep(state.digest, state.sweeping)
                run.add(state, "finished", "deleted by an interrupted prune")
                continue
            # Still there: give it back; it is marked and swept again if still unneeded.
            self.ledger.abandon_sweep(state.digest, state.sweeping)

    def _owners(self, verdicts: list[ImageVerdict]) -> dict[Digest, list[ImageVerdict]]:
        owners: dict[Digest, list[ImageVerdict]] = defaultdict(list)
        for verdict in verdicts:
            for digest in self.graph.closure(verdict.digest):
                owners[digest].append(verdict)
        return owners


def _young(state: ObjectState, cutoff: datetime) -> bool:
    """Written or relied on within the grace period: in-flight backups need it."""
    return state.stored_at > cutoff or (state.claimed_at is not None and state.claimed_at > cutoff)


def _reason(digest: Digest, owners: dict[Digest, list[ImageVerdict]]) -> str:
    images = owners.get(digest, [])
    if not images:
        return "no image references it (left by an interrupted backup or a pruned image)"
    return "only in " + "; ".join(
        f"{v.repository}@{v.digest} ({v.why() or 'not kept'})" for v in images
    )
