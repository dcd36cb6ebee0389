"""What the engine asks of S3 and the index, on the fakes: a replay reads and writes
nothing else; an incremental push writes only what is new, and claims only the shared
objects a prune marked. (Counted at a proxy against moto: tests/integration/test_requests.py.)"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from ecr_backup.backup.replicator import Replicator
from ecr_backup.maintenance.locks import LockKeeper
from ecr_backup.model import Action, ImageEvent
from tests.fakes import FakeAws, MovableClock
from tests.helpers import Backup

WRITES = {
    "s3.put_bytes",
    "s3.put_stream",
    "s3.put_record",
    "index.complete",
    "index.record_stored",
    "index.record_event",
    "index.claim",
    "index.record_lock",
    "locks.extend",
}


class Calls:
    """Wraps an adapter and counts its method calls, as "<prefix>.<method>"."""

    def __init__(self, target: object, counts: Counter[str], prefix: str) -> None:
        self._target = target
        self._counts = counts
        self._prefix = prefix

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self._counts[f"{self._prefix}.{name}"] += 1
            return attribute(*args, **kwargs)

        return call


def counted(aws: FakeAws, kit: Backup, counts: Counter[str]) -> Replicator:
    """The engine over counting adapters: S3 (blobs and locks) and the index (ledger too)."""
    policy = aws.keeper.policy
    locks = LockKeeper(
        Calls(aws.locks, counts, "locks"), Calls(aws.ledger, counts, "index"), policy, aws.clock
    )
    return Replicator(
        kit.source,
        Calls(aws.store, counts, "s3"),
        Calls(aws.index, counts, "index"),
        clock=aws.clock,
        locks=locks,
    )


def world() -> tuple[FakeAws, Backup, MovableClock]:
    clock = MovableClock()
    aws = FakeAws(clock)
    kit = Backup(aws.store, aws.index, clock=clock)
    kit.locks = aws.keeper
    return aws, kit, clock


def test_a_replay_reads_and_writes_nothing_more() -> None:
    aws, kit, clock = world()
    image = kit.image("app", [kit.layer() for _ in range(10)])
    event = kit.push("app", image, "v1", clock())
    counts: Counter[str] = Counter()

    report = counted(aws, kit, counts).backup_event(event)

    assert report.manifests_skipped == [image.digest] and report.blobs_copied == []
    assert {name: n for name, n in counts.items() if name in WRITES} == {}
    # The manifest from the bucket, the states of its closure, the push's items.
    assert counts == Counter({"s3.read": 1, "index.object_states": 1, "index.event_changes": 1})


def test_an_incremental_push_writes_what_is_new_and_claims_only_what_prune_marked() -> None:
    aws, kit, clock = world()
    shared = [kit.layer() for _ in range(10)]
    kit.push("app", kit.image("app", shared), "v1", clock())
    marked = aws.index.object_states([kit.image("app", shared[:1]).blobs[1].digest])
    [first] = marked.values()
    assert aws.ledger.tombstone(first.digest, clock(), clock() + timedelta(hours=1))
    newer = kit.image("app", [*shared, kit.layer()])
    counts: Counter[str] = Counter()

    event = ImageEvent("app", newer.digest, Action.PUSH, clock(), "v2")
    report = counted(aws, kit, counts).backup_event(event)

    assert report.manifests_stored == [newer.digest]
    assert len(report.blobs_copied) == 2  # the new layer and the new config
    assert counts["index.claim"] == 1  # the tombstoned shared layer, nothing else
    assert aws.ledger.objects()[first.digest].tombstone_at is None
    # Two blobs and the manifest, each written whole with its retention: no lock calls.
    assert counts["s3.put_stream"] == 2 and counts["s3.put_bytes"] == 1
    # The shared ones' recorded lock ends suffice: no HeadObject, no extension.
    assert counts["index.complete"] == 1
    assert counts["locks.read"] == 0 and counts["index.record_lock"] == 0
    assert counts["s3.stat"] == 0  # small blobs: the conditional PUT answers
    assert aws.ledger.objects()[newer.digest].lock_until is not None
