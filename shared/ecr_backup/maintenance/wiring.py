"""The maintenance services wired over one backup's adapters, written once for both sides:
the composition root (ecr_backup.composition.AwsServices) over S3 and DynamoDB, and the
unit tests' fakes (tests/fakes.FakeAws) over memory. Each side names its four adapters
in `maintained()`; which service gets which adapter, and with which settings, is here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Protocol

from ecr_backup.catalog.surges import RecordStore, SurgeBook, read_surges
from ecr_backup.maintenance.graph import ManifestSource, ObjectGraph, ReferrerSource
from ecr_backup.maintenance.holds import Holds
from ecr_backup.maintenance.locks import Clock, LockKeeper, LockPolicy, LockReader, LockRecorder
from ecr_backup.maintenance.ports import (
    HoldLedger,
    LegalHolds,
    PruneLedger,
    PruneLocks,
    RecordWriter,
)
from ecr_backup.maintenance.prune import Pruner
from ecr_backup.maintenance.retention import HistorySource, RetentionRules
from ecr_backup.settings import Settings


class MaintainedStore(ManifestSource, RecordWriter, RecordStore, Protocol):
    """The bucket: manifests for the object graph, records for holds and surges."""


class MaintainedIndex(ReferrerSource, HistorySource, Protocol):
    """The index's read side: referrers for the graph, tag history for retention."""


class MaintainedLedger(PruneLedger, HoldLedger, LockRecorder, Protocol):
    """The index's object items: prune's conditional writes, holds, recorded lock ends."""


class MaintainedLocks(LockReader, PruneLocks, LegalHolds, Protocol):
    """The bucket's Object Lock: retention read and extended, legal holds, delete markers."""


@dataclass(frozen=True)
class Maintained:
    """The four adapters the maintenance services run over."""

    store: MaintainedStore
    index: MaintainedIndex
    ledger: MaintainedLedger
    locks: MaintainedLocks


class MaintenanceServices:
    """Lock keeper, retention rules, object graph, pruner, holds and surges over the
    adapters a subclass gives in `maintained()` (built lazily there: a backup that never
    prunes builds no pruner)."""

    settings: Settings
    clock: Clock

    def maintained(self) -> Maintained:
        raise NotImplementedError

    @cached_property
    def keeper(self) -> LockKeeper:
        adapters = self.maintained()
        policy = LockPolicy(self.settings.lock_days, self.settings.lock_mode)
        return LockKeeper(adapters.locks, adapters.ledger, policy, self.clock)

    @property
    def rules(self) -> RetentionRules:
        return RetentionRules(self.settings.keep_deleted_days, self.settings.keep_per_tag)

    def graph(self) -> ObjectGraph:
        """A fresh cache of manifests for one maintenance run: the one thing not kept, since
        manifests it has not seen may arrive between runs. (Pruner and Holds are built per
        call too, but only over the kept adapters.)"""
        adapters = self.maintained()
        return ObjectGraph(adapters.store, adapters.index)

    def pruner(self) -> Pruner:
        adapters = self.maintained()
        return Pruner(
            adapters.ledger,
            adapters.locks,
            adapters.index,
            self.graph(),
            self.rules,
            timedelta(hours=self.settings.prune_grace_hours),
            self.surges,
            self.clock,
        )

    def surges(self) -> SurgeBook:
        """Every recorded deletion surge and acknowledgement, read from the bucket now."""
        return read_surges(self.maintained().store)

    def holds(self) -> Holds:
        adapters = self.maintained()
        return Holds(adapters.ledger, adapters.locks, self.graph(), adapters.store)
