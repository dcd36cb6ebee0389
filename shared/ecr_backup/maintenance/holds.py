"""Legal holds on demand: `ecr-backup hold REF` / `release REF`, on the image's closure.

A hold is an S3 legal hold on every object of the image (and of its referrers), plus an
item in the index that keeps the image under the retention rules. Holding applies the S3
holds first and records the hold last; releasing forgets it first and lifts the S3 holds
of objects no other hold covers last, so the index never claims a hold S3 does not have.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ecr_backup.maintenance.graph import ObjectGraph
from ecr_backup.oci.digest import Digest
from ecr_backup.storage.ledger import Ledger
from ecr_backup.storage.objectlock import S3ObjectLocks


@dataclass(frozen=True)
class HoldResult:
    repository: str
    digest: Digest
    held: bool
    objects: int  # objects whose legal hold was set (hold) or lifted (release)


@dataclass
class Holds:
    ledger: Ledger
    locks: S3ObjectLocks
    graph: ObjectGraph

    def hold(self, repository: str, digest: Digest, now: datetime) -> HoldResult:
        objects = self._objects([digest])
        for each in sorted(objects, key=str):
            self.locks.set_legal_hold(each, True)
        self.ledger.add_hold(repository, digest, now)
        return HoldResult(repository, digest, True, len(objects))

    def release(self, repository: str, digest: Digest) -> HoldResult:
        self.ledger.remove_hold(repository, digest)
        still_held = self._objects([h.digest for h in self.ledger.holds()])
        lifted = self._objects([digest]) - still_held
        for each in sorted(lifted, key=str):
            self.locks.set_legal_hold(each, False)
        return HoldResult(repository, digest, False, len(lifted))

    def _objects(self, roots: list[Digest]) -> set[Digest]:
        stored = self.ledger.objects().keys()  # foreign layers are referenced, not stored
        return self.graph.reach(roots, referrers=True) & stored
