"""Prune, holds, maintain, stats, verify and rebuild-index on the in-memory fakes: the
services' own logic, in milliseconds (tests/functional/maintenance runs them on moto,
through the composition root)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from ecr_backup.catalog.catalog import Catalog
from ecr_backup.catalog.surges import Acknowledgement, Surge, SurgeBook
from ecr_backup.errors import ConfigurationError
from ecr_backup.maintenance.drill import DrillSummary
from ecr_backup.maintenance.maintain import maintain
from ecr_backup.maintenance.prune import PruneEntry
from ecr_backup.maintenance.rebuild import UNKNOWN_MEDIA_TYPE, rebuild_index
from ecr_backup.maintenance.stats import stats
from ecr_backup.maintenance.verify import verify
from ecr_backup.model import rfc3339
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Manifest
from ecr_backup.schema import render
from ecr_backup.settings import Settings
from tests.fakes import FakeAws, FakeIndex, FakeTable, MovableClock
from tests.helpers import BUCKET, TABLE, Backup, answers

NONE = SurgeBook()  # no deletion surge recorded


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def aws(clock: MovableClock) -> FakeAws:
    settings = Settings(bucket=BUCKET, table=TABLE, keep_deleted_days=90, keep_per_tag=1)
    return FakeAws(clock, settings=settings)


@pytest.fixture
def kit(aws: FakeAws, clock: MovableClock) -> Backup:
    return Backup(aws.store, aws.index, clock=clock, locks=aws.keeper)


@dataclass
class Scene:
    kept: Manifest  # tagged in the source
    gone: Manifest  # deleted, past KeepDeletedDays, sharing a layer with `kept`
    locked: Digest  # one of `gone`'s own layers, its lock extended by someone

    @property
    def unshared(self) -> set[Digest]:
        shared = self.gone.blobs[1].digest  # blobs[0] is the config
        return {self.gone.digest, *(b.digest for b in self.gone.blobs)} - {shared}


def scene(kit: Backup, aws: FakeAws, clock: MovableClock) -> Scene:
    shared = kit.layer()
    kept = kit.image("app", [shared, kit.layer()])
    gone = kit.image("app", [shared, kit.layer(), kit.layer()])
    kit.push("app", kept, "stable", clock())
    kit.push("app", gone, "old", clock())
    kit.delete("app", gone, "old", clock.advance(days=1))
    clock.advance(days=100)  # past KeepDeletedDays and past every default lock
    locked = gone.blobs[-1].digest
    aws.locks.extend(locked, "GOVERNANCE", clock() + timedelta(days=30))
    return Scene(kept, gone, locked)


def digests(entries: list[PruneEntry]) -> set[Digest]:
    return {e.digest for e in entries}


def test_prune_marks_then_deletes_what_no_kept_image_needs_and_leaves_locked_objects(
    kit: Backup, aws: FakeAws, clock: MovableClock
) -> None:
    world = scene(kit, aws, clock)
    dry = aws.pruner().run(dry_run=True)
    assert digests(dry.of("mark")) == world.unshared - {world.locked}
    assert digests(dry.of("locked")) == {world.locked}
    assert all(o.tombstone_at is None for o in aws.ledger.objects().values())

    first = aws.pruner().run(dry_run=False)
    assert digests(first.of("mark")) == world.unshared
    assert first.of("delete") == []
    clock.advance(hours=23)
    assert aws.pruner().run(dry_run=False).of("delete") == []  # within the grace period

    clock.advance(hours=2)
    second = aws.pruner().run(dry_run=False)
    assert digests(second.of("delete")) == world.unshared - {world.locked}
    assert digests(second.of("locked")) == {world.locked}
    assert second.images_pruned == [("app", world.gone.digest)]
    for digest in world.unshared - {world.locked}:
        assert aws.store.stat(digest) is None
        assert any(not v.deleted for v in aws.store.versions(digest))  # a delete marker only
    assert aws.store.stat(world.locked) is not None
    assert aws.index.images("app") == [world.kept.digest]
    report = verify(Catalog(aws.store, aws.index), deep=True)
    assert report.ok, report.problems
    assert report.images == 1


def test_prune_refuses_to_run_beside_another_prune(aws: FakeAws, clock: MovableClock) -> None:
    assert aws.ledger.take_prune_lease("another", clock(), clock() + timedelta(hours=6))
    with pytest.raises(ConfigurationError) as running:
        aws.pruner().run(dry_run=False)
    assert running.value.code == "PRUNE_RUNNING" and running.value.retryable
    assert aws.pruner().run(dry_run=True).entries == []  # a dry run takes no lease


def test_a_held_image_keeps_its_objects_under_legal_hold_until_released(
    kit: Backup, aws: FakeAws, clock: MovableClock
) -> None:
    world = scene(kit, aws, clock)
    held = aws.holds().hold("app", world.gone.digest, clock())
    closure = {world.gone.digest, *(b.digest for b in world.gone.blobs)}
    assert held.objects == len(closure)
    assert all(aws.locks.read(d).legal_hold for d in closure)
    for _ in range(2):
        assert digests(aws.pruner().run(dry_run=False).entries) & world.unshared == set()
        clock.advance(hours=25)

    released = aws.holds().release("app", world.gone.digest, clock())
    # The shared layer is not held by another hold: every legal hold of the image goes.
    assert released.objects == len(closure)
    assert not any(aws.locks.read(d).legal_hold for d in closure)
    aws.pruner().run(dry_run=False)
    clock.advance(hours=25)
    deleted = aws.pruner().run(dry_run=False)
    assert digests(deleted.of("delete")) == world.unshared - {world.locked}


def test_maintain_extends_the_locks_of_kept_images_only(
    kit: Backup, aws: FakeAws, clock: MovableClock
) -> None:
    kept = kit.image("app")
    gone = kit.image("app")
    kit.push("app", kept, "stable", clock())
    kit.push("app", gone, "old", clock())
    kit.delete("app", gone, "old", clock.advance(days=1))
    clock.advance(days=95)  # `gone` is past KeepDeletedDays; every default lock has ended
    report = maintain(aws.ledger, aws.index, aws.graph(), aws.rules, aws.keeper, surges=NONE)
    objects = {kept.digest, *(b.digest for b in kept.blobs)}
    assert report.ok is False  # the locks had lapsed: the invariant was broken
    assert {c.digest for c in report.extended} == objects
    assert {c.digest for c in report.short} == objects
    target = clock() + timedelta(days=aws.settings.lock_days * 1.5)
    assert all(aws.locks.read(d).until == target for d in objects)
    own = {b.digest for b in gone.blobs} - objects
    for digest in own:
        until = aws.locks.read(digest).until
        assert until is not None and until < clock()

    again = maintain(aws.ledger, aws.index, aws.graph(), aws.rules, aws.keeper, surges=NONE)
    assert again.ok and again.extended == [] and again.objects_checked == len(objects)


def test_stats_count_kept_and_unique_bytes(kit: Backup, aws: FakeAws, clock: MovableClock) -> None:
    shared = kit.layer(4000)
    one, two = kit.image("app", [shared]), kit.image("web", [shared])
    kit.push("app", one, "v1", clock())
    kit.push("web", two, "v1", clock())
    answer = stats(aws.ledger, aws.index, aws.graph(), aws.rules, clock(), surges=NONE)
    sizes = {d: o.size for d, o in aws.ledger.objects().items()}
    assert answer.unique_bytes == sum(sizes.values())
    closure_one = [one.digest, *(b.digest for b in one.blobs)]
    closure_two = [two.digest, *(b.digest for b in two.blobs)]
    logical = sum(sizes[d] for d in closure_one) + sum(sizes[d] for d in closure_two)
    assert answer.logical_bytes == logical
    assert answer.kept_unique_bytes == answer.unique_bytes
    assert answer.locked_bytes == answer.unique_bytes  # every lock ends in the future


def test_verify_names_a_rewritten_object_and_its_intact_version(
    kit: Backup, aws: FakeAws, clock: MovableClock
) -> None:
    image = kit.image("app")
    kit.push("app", image, "v1", clock())
    layer = image.blobs[1]
    aws.bucket.overwrite(aws.store.blob_key(layer.digest), b"x" * layer.size)
    quick = verify(Catalog(aws.store, aws.index))
    assert [p.kind for p in quick.problems] == ["rewritten"]
    deep = verify(Catalog(aws.store, aws.index), deep=True)
    assert [p.kind for p in deep.problems] == ["hash"]
    first = aws.store.versions(layer.digest)[-1].version_id
    assert f"version {first} is intact" in deep.problems[0].detail


def test_rebuild_index_from_the_bucket_gives_the_same_answers(
    kit: Backup, aws: FakeAws, clock: MovableClock
) -> None:
    first, second = kit.image("app"), kit.multi_arch("app")
    kit.push("app", first, "v1", clock())
    kit.push("app", second, "v1", clock.advance(minutes=5))
    kit.push("app", kit.signature("app", second), None, clock.advance(minutes=1))
    kit.delete("app", first, None, clock.advance(minutes=1))
    orphan = kit.layer(77)
    aws.store.put_bytes(Digest.of(orphan), orphan)
    before = answers(Catalog(aws.store, aws.index))

    table = FakeTable(TABLE, exists=False)
    report = rebuild_index(aws.store, FakeIndex(table))
    assert report.created_table
    assert report.invalid_records == [] and report.manifests_incomplete == []
    assert report.unreferenced_blobs == 1
    assert table.blobs[Digest.of(orphan)].media_type == UNKNOWN_MEDIA_TYPE
    assert answers(Catalog(aws.store, FakeIndex(table))) == before
    again = rebuild_index(aws.store, FakeIndex(table))
    assert not again.created_table
    assert answers(Catalog(aws.store, FakeIndex(table))) == before


def test_stats_show_the_surges_and_the_last_drill(
    kit: Backup, aws: FakeAws, clock: MovableClock
) -> None:
    kit.push("app", kit.image("app"), "v1", clock())
    window = (clock(), clock() + timedelta(hours=1))
    held = Surge.named("1", "app", window, deletions=9, rule="r", now=clock())
    done = Surge.named("1", None, window, deletions=60, rule="r", now=clock())
    book = SurgeBook([held, done], {done.id: Acknowledgement(done.id, "meant", "me", clock())})
    drilled = DrillSummary(clock(), True, 3, 26, 61293127, 0)
    answer = stats(
        aws.ledger, aws.index, aws.graph(), aws.rules, clock(), surges=book, last_drill=drilled
    )
    assert (answer.surges_recorded, answer.surges_holding) == (2, 1)
    assert answer.last_drill == drilled
    assert render("stats", answer)["last_drill"] == {
        "time": rfc3339(clock()),
        "ok": True,
        "images_sampled": 3,
        "objects_verified": 26,
        "bytes_read": 61293127,
        "problems": 0,
    }
