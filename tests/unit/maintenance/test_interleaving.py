"""A backup and a prune on the same blob, interleaved at every step of each: no manifest is
ever complete while an object under it is gone, and the backup always ends complete.

The blob `shared` belonged to a deleted image past retention, so prune's first run
tombstoned it; a grace period later a new image that reuses it is backed up while prune's
second run deletes what is still unreachable. Each party is paused before its k-th call
to S3 or DynamoDB, the other runs whole, then the first resumes; k takes every value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ecr_backup.backup.replicator import Replicator
from ecr_backup.errors import ObjectBeingPrunedError
from ecr_backup.maintenance.graph import ObjectGraph
from ecr_backup.maintenance.prune import Pruner
from ecr_backup.model import Action, ImageEvent
from ecr_backup.oci.manifest import Manifest
from ecr_backup.settings import Settings
from tests.fakes import FakeAws, MovableClock
from tests.helpers import Backup


class PauseAt:
    """Wraps adapters so that one sequence of their calls is counted, and `interruption`
    runs once, before call number k."""

    def __init__(self, k: int, interruption: Callable[[], None]) -> None:
        self.k = k
        self.calls = 0
        self.fired = False
        self._interruption = interruption

    def wrap(self, target: object) -> Any:
        return _Forward(target, self)

    def before_call(self) -> None:
        if self.calls == self.k and not self.fired:
            self.fired = True
            self._interruption()
        self.calls += 1


class _Forward:
    def __init__(self, target: object, pause: PauseAt) -> None:
        self._target = target
        self._pause = pause

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self._pause.before_call()
            return attribute(*args, **kwargs)

        return call


class World:
    def __init__(self, name: str, clock: MovableClock) -> None:
        settings = Settings(bucket=name, table=name, keep_deleted_days=90, keep_per_tag=1)
        self.services = FakeAws(clock, settings=settings)
        self.clock = clock
        self.kit = Backup(self.services.store, self.services.index, clock=clock)
        self.kit.locks = self.services.keeper
        shared = self.kit.layer()
        old = self.kit.image("app", [shared, self.kit.layer()])
        self.kit.push("app", old, "old", clock())
        self.kit.delete("app", old, "old", clock.advance(days=1))
        clock.advance(days=100)
        self.pruner().run(dry_run=False)  # phase one: tombstones every object of `old`
        clock.advance(hours=25)
        self.new = self.kit.image("app", [shared, self.kit.layer()])
        self.shared = old.blobs[1].digest

    def pruner(self, ledger: Any = None, locks: Any = None) -> Pruner:
        pruner = self.services.pruner()
        if ledger is not None:
            pruner.ledger, pruner.locks = ledger, locks
        return pruner

    def event(self) -> ImageEvent:
        return ImageEvent("app", self.new.digest, Action.PUSH, self.clock(), "new")

    def replicator(self, store: Any = None, index: Any = None) -> Replicator:
        services = self.services
        return Replicator(
            self.kit.source,
            store or services.store,
            index or services.index,
            clock=self.clock,
            locks=services.keeper,
        )

    def back_up(self, replicator: Replicator | None = None) -> bool:
        """True when the backup finished; False when it met a prune mid-delete (its event
        is then retried, as SQS does)."""
        try:
            (replicator or self.replicator()).backup_event(self.event())
        except ObjectBeingPrunedError:
            return False
        return True

    def problems(self) -> list[str]:
        """Complete manifests with an object under them gone from the bucket."""
        store, graph = self.services.store, ObjectGraph(self.services.store, self.services.index)
        found = []
        for manifest in self.services.ledger.complete_manifests():
            for digest in graph.closure(manifest):
                if store.stat(digest) is None:
                    found.append(f"{manifest} is complete but {digest} is gone")
        return found

    def shared_was_deleted(self) -> bool:
        return any(v.deleted for v in self.services.store.versions(self.shared))

    def assert_final(self, new: Manifest) -> None:
        assert self.problems() == []
        record = self.services.index.manifest(new.digest)
        assert record is not None, "the backup ends complete"
        for blob in new.blobs:
            assert self.services.store.stat(blob.digest) == blob.size
        assert self.services.store.read(new.digest) == new.raw


def undisturbed_backup_calls() -> int:
    """How many calls to S3 and the index the backup makes when nothing interrupts it."""
    world = World("backup-counted", MovableClock())
    count = PauseAt(-1, lambda: None)
    store, index = world.services.store, world.services.index
    assert world.back_up(world.replicator(count.wrap(store), count.wrap(index)))
    return count.calls


def test_prune_runs_whole_before_each_backup_step() -> None:
    k, outcomes = 0, set()
    while True:
        world = World(f"backup-paused-{k}", MovableClock())
        checks: list[list[str]] = []

        def prune_now(world: World = world, checks: list[list[str]] = checks) -> None:
            world.pruner().run(dry_run=False)
            checks.append(world.problems())

        pause = PauseAt(k, prune_now)
        replicator = world.replicator(
            pause.wrap(world.services.store), pause.wrap(world.services.index)
        )
        if not world.back_up(replicator):
            assert world.back_up(), "the retried event completes"
        assert checks in ([], [[]])
        world.assert_final(world.new)
        outcomes.add(world.shared_was_deleted())
        if not pause.fired:
            break  # k passed the backup's last call: every step was covered
        k += 1
    # Every call of the backup (to S3 and to the index) had a prune run before it.
    assert k == undisturbed_backup_calls() > 5
    # Early pauses let prune delete `shared` (the backup copies it again); later ones see
    # the backup's claim win: both races were run.
    assert outcomes == {True, False}


def test_backup_runs_whole_before_each_prune_step() -> None:
    k, outcomes, deferred = 0, set(), 0
    while True:
        world = World(f"prune-paused-{k}", MovableClock())
        outcome: list[bool] = []

        def back_up_now(world: World = world, outcome: list[bool] = outcome) -> None:
            outcome.append(world.back_up())
            assert world.problems() == []

        pause = PauseAt(k, back_up_now)
        pruner = world.pruner(pause.wrap(world.services.ledger), pause.wrap(world.services.locks))
        pruner.run(dry_run=False)
        assert world.problems() == []
        deferred += outcome == [False]
        if outcome == [False] or not pause.fired:
            assert world.back_up(), "the retried (or first) backup completes"
        world.assert_final(world.new)
        outcomes.add(world.shared_was_deleted())
        if not pause.fired:
            break
        k += 1
    assert k > 5
    assert outcomes == {True, False}
    assert deferred > 0  # some backups met a prune mid-delete and were retried
