"""Legal holds on demand: `ecr-backup hold REF` / `release REF`, on the image's closure.

A hold is an S3 legal hold on every object of the image (and of its referrers), an
immutable record in the bucket (so `rebuild-index` brings it back), and an item in the
index that keeps the image under the retention rules. Holding applies the S3 holds first
and records the hold last; releasing writes its own record and forgets the hold first and
lifts the S3 holds of objects no other hold covers last, so neither the index nor the
bucket ever claims a hold S3 does not have.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ecr_backup.errors import RefusedError
from ecr_backup.maintenance.graph import ObjectGraph
from ecr_backup.maintenance.ports import HoldLedger, LegalHolds, RecordWriter
from ecr_backup.model import rfc3339
from ecr_backup.oci.digest import Digest
from ecr_backup.storage.holdrecords import HoldRecord, write_hold_record
from ecr_backup.storage.ledger import Hold


@dataclass(frozen=True)
class HoldResult:
    repository: str
    digest: Digest
    held: bool
    changed: tuple[Digest, ...]  # objects whose legal hold was set (hold) or turned off
    reason: str | None = None

    @property
    def objects(self) -> int:
        return len(self.changed)


def hold_row(hold: Hold) -> dict[str, object]:
    """One line of `ecr-backup holds --json`."""
    return {
        "repository": hold.repository,
        "digest": str(hold.digest),
        "objects": hold.objects,
        "placed_at": rfc3339(hold.time),
        "reason": hold.reason,
    }


@dataclass
class Holds:
    ledger: HoldLedger
    locks: LegalHolds
    graph: ObjectGraph
    store: RecordWriter  # the bucket: each hold and release as an immutable record

    def in_force(self, repository: str | None = None) -> list[Hold]:
        held = self.ledger.holds()
        chosen = [h for h in held if repository is None or h.repository == repository]
        return sorted(chosen, key=lambda h: (h.repository, h.time, str(h.digest)))

    def hold(
        self, repository: str, digest: Digest, now: datetime, reason: str | None = None
    ) -> HoldResult:
        objects = tuple(sorted(self._objects([digest]), key=str))
        for each in objects:
            self.locks.set_legal_hold(each, True)
        write_hold_record(self.store, HoldRecord(repository, digest, "hold", now, reason, objects))
        self.ledger.add_hold(Hold(repository, digest, now, reason, len(objects)))
        return HoldResult(repository, digest, True, objects, reason)

    def release(self, repository: str, digest: Digest, now: datetime) -> HoldResult:
        """Lift a hold placed with `hold`; refused (nothing changed) when there is none."""
        held = {(h.repository, h.digest): h for h in self.ledger.holds()}
        placed = held.pop((repository, digest), None)
        if placed is None:
            raise RefusedError(
                f"no hold on {repository}@{digest}: nothing lifted "
                "(`ecr-backup holds` lists the holds)",
                code="NO_HOLD",
            )
        still_held = self._objects([h.digest for h in held.values()])
        candidates = sorted(self._objects([digest]) - still_held, key=str)
        # Recorded first: a rebuild after a failure half-way must not bring the hold back.
        release = HoldRecord(repository, digest, "release", now, placed.reason, tuple(candidates))
        write_hold_record(self.store, release)
        self.ledger.remove_hold(repository, digest)
        lifted = []
        for each in candidates:
            if self.locks.read(each).legal_hold:
                self.locks.set_legal_hold(each, False)
                lifted.append(each)
        return HoldResult(repository, digest, False, tuple(lifted), placed.reason)

    def _objects(self, roots: list[Digest]) -> set[Digest]:
        stored = self.ledger.objects().keys()  # foreign layers are referenced, not stored
        return self.graph.reach(roots, referrers=True) & stored
