"""Retention rules, prune's two phases, holds and stats, on a backup made by the engine."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ecr_backup.catalog.catalog import Catalog
from ecr_backup.catalog.surges import SurgeBook
from ecr_backup.composition import AwsServices
from ecr_backup.coverage.reconcile import Reconciler, Source
from ecr_backup.maintenance.rebuild import rebuild_index
from ecr_backup.maintenance.retention import judge
from ecr_backup.maintenance.stats import s3_standard_monthly, stats
from ecr_backup.maintenance.verify import verify
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Manifest
from ecr_backup.settings import Settings
from tests.fakes import MovableClock
from tests.functional.maintenance.conftest import PREFIX
from tests.helpers import BUCKET, Backup, FakeEcr

NONE = SurgeBook()  # no deletion surge recorded


@dataclass
class Scene:
    kept: Manifest  # tagged in the source
    gone: Manifest  # deleted, past KeepDeletedDays, sharing `shared` with `kept`
    shared: Digest
    locked: Digest  # one of `gone`'s own layers, under a retention someone extended
    locked_until: datetime

    def unshared(self) -> set[Digest]:
        return {self.gone.digest, *(b.digest for b in self.gone.blobs)} - {self.shared}


def scene(kit: Backup, services: AwsServices, clock: MovableClock, s3: Any) -> Scene:
    shared = kit.layer()
    kept = kit.image("app", [shared, kit.layer()])
    gone = kit.image("app", [shared, kit.layer(), kit.layer()])
    kit.push("app", kept, "stable", clock())
    kit.push("app", gone, "old", clock())
    kit.delete("app", gone, "old", clock.advance(days=1))
    clock.advance(days=100)  # past KeepDeletedDays (90) and past every default lock
    locked = gone.blobs[-1].digest
    until = clock() + timedelta(days=30)
    s3.put_object_retention(
        Bucket=BUCKET,
        Key=services.locks.key(locked),
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until},
    )
    return Scene(kept, gone, gone.blobs[1].digest, locked, until)


def digests(entries: list[Any]) -> set[Digest]:
    return {e.digest for e in entries}


def test_two_phases_delete_only_unshared_unlocked_objects_and_kept_images_verify(
    kit: Backup, services: AwsServices, clock: MovableClock, s3: Any
) -> None:
    world = scene(kit, services, clock, s3)
    unshared = world.unshared()

    dry = services.pruner().run(dry_run=True)
    assert digests(dry.of("mark")) == unshared - {world.locked}
    assert digests(dry.of("locked")) == {world.locked}
    assert dry.of("delete") == []
    reasons = {e.reason for e in dry.of("mark")}
    assert all(f"app@{world.gone.digest}" in r and "past 90 days" in r for r in reasons)
    assert services.ledger.objects()[world.gone.digest].tombstone_at is None  # changed nothing

    first = services.pruner().run(dry_run=False)
    assert digests(first.of("mark")) == unshared  # phase one marks, locked or not
    assert first.of("delete") == []

    clock.advance(hours=23)  # within the grace period: nothing goes yet
    assert services.pruner().run(dry_run=True).of("delete") == []

    clock.advance(hours=2)
    would = services.pruner().run(dry_run=True)
    assert digests(would.of("delete")) == unshared - {world.locked}
    assert would.bytes_freed == sum(
        services.ledger.objects()[d].size for d in unshared - {world.locked}
    )

    second = services.pruner().run(dry_run=False)
    assert digests(second.of("delete")) == unshared - {world.locked}
    (locked,) = second.of("locked")
    assert locked.digest == world.locked and locked.lock_until is not None
    assert abs(locked.lock_until - world.locked_until) < timedelta(seconds=1)
    assert second.images_pruned == [("app", world.gone.digest)]
    for digest in unshared - {world.locked}:
        versions = services.store.versions(digest)
        assert versions[-1].deleted and any(not v.deleted for v in versions)  # delete marker
    assert services.store.stat(world.locked) is not None
    assert services.index.manifest(world.gone.digest) is None
    assert services.index.images("app") == [world.kept.digest]
    assert [e.action for e in services.index.history("app", "old")] == ["PUSH", "DELETE"]

    report = verify(Catalog(services.store, services.index), deep=True)
    assert report.ok, report.problems
    assert report.images == 1


def test_a_pruned_blob_is_copied_again_by_the_next_image_that_needs_it(
    kit: Backup, services: AwsServices, clock: MovableClock, s3: Any
) -> None:
    world = scene(kit, services, clock, s3)
    own = world.gone.blobs[2].digest
    services.pruner().run(dry_run=False)
    clock.advance(hours=25)
    services.pruner().run(dry_run=False)
    assert services.store.stat(own) is None
    layer = kit.source.blobs[own]
    again = kit.image("app", [layer])
    kit.push("app", again, "again", clock())
    assert services.store.stat(own) == len(layer)
    assert verify(Catalog(services.store, services.index), deep=True).ok


def test_an_image_pushed_again_after_its_prune_is_kept_by_the_next_prunes(
    kit: Backup, services: AwsServices, clock: MovableClock, s3: Any
) -> None:
    """Prune marks the image pruned; a later push copies it back. That push must end the
    mark, or retention would not judge the image and a later prune would delete it live."""
    world = scene(kit, services, clock, s3)
    services.pruner().run(dry_run=False)
    clock.advance(hours=25)
    services.pruner().run(dry_run=False)
    assert world.gone.digest not in services.index.images("app")

    kit.push("app", world.gone, "back", clock())  # the source pushes the same digest again
    assert world.gone.digest in services.index.images("app")
    clock.advance(days=2)  # past the grace period: youth no longer protects the copy
    for _ in range(2):  # a mark, then a sweep
        pruned = services.pruner().run(dry_run=False)
        assert world.gone.digest not in digests(pruned.entries)
        clock.advance(hours=25)
    assert services.index.manifest(world.gone.digest) is not None
    checked = verify(Catalog(services.store, services.index), deep=True)
    assert checked.ok, checked.problems


def test_after_rebuild_index_retention_prunes_the_pruned_image_again_and_keeps_the_rest(
    kit: Backup, services: AwsServices, clock: MovableClock, s3: Any
) -> None:
    """A prune's delete marker looks like anyone's, so rebuild-index brings a pruned image
    back from its older versions. Retention must then judge it again, as before the
    rebuild: mark and sweep its own objects, touch nothing a kept image needs."""
    world = scene(kit, services, clock, s3)
    services.pruner().run(dry_run=False)
    clock.advance(hours=25)
    assert services.pruner().run(dry_run=False).images_pruned == [("app", world.gone.digest)]

    settings = Settings(
        bucket=BUCKET, table="rebuilt-index", prefix=PREFIX, keep_deleted_days=90, keep_per_tag=1
    )
    rebuilt = AwsServices(settings, services.session, clock=clock)
    report = rebuild_index(rebuilt.store, rebuilt.index)
    assert report.manifests_incomplete == []
    assert set(rebuilt.index.images("app")) == {world.kept.digest, world.gone.digest}

    marked = rebuilt.pruner().run(dry_run=False)
    assert digests(marked.of("mark")) == world.unshared()
    clock.advance(hours=25)
    swept = rebuilt.pruner().run(dry_run=False)
    assert digests(swept.of("delete")) == world.unshared() - {world.locked}
    assert swept.images_pruned == [("app", world.gone.digest)]
    assert rebuilt.index.images("app") == [world.kept.digest]
    checked = verify(Catalog(rebuilt.store, rebuilt.index), deep=True)
    assert checked.ok, checked.problems
    assert checked.images == 1
    rebuilt.store.close()


def test_reconcile_does_not_copy_back_what_retention_pruned_while_ecr_keeps_it(
    kit: Backup, services: AwsServices, clock: MovableClock
) -> None:
    """KeepPerTag prunes a digest its tag left, though ECR keeps it untagged: backfill must
    not copy it again only for the next prune to remove it. A new tag on it is news."""
    start = clock()
    old, new = kit.image("web"), kit.image("web")
    kit.push("web", old, "v1", start)
    kit.push("web", new, "v1", start + timedelta(days=1))
    clock.advance(days=100)  # the tag left `old` more than KeepDeletedDays (90) ago
    services.pruner().run(dry_run=False)
    clock.advance(hours=25)
    assert services.pruner().run(dry_run=False).images_pruned == [("web", old.digest)]
    ecr = FakeEcr()
    ecr.add("web", old.digest, pushed_at=start)  # untagged in ECR, still there
    ecr.add("web", new.digest, "v1", pushed_at=start + timedelta(days=1))
    reconciler = Reconciler(ecr, services.index, Source("111122223333", "eu-west-1"), clock=clock)

    drift = reconciler.repository("web")
    assert [i.digest for i in drift.pruned] == [old.digest]
    assert drift.missing == [] and drift.pushes == [] and drift.drifted == []
    assert not drift.has_drift

    ecr.retag("web", "v2", old.digest)  # its push event never arrived
    drift = reconciler.repository("web")
    assert drift.pruned == []
    assert [m.image.digest for m in drift.missing] == [old.digest]


def test_retention_rules(kit: Backup, services: AwsServices, clock: MovableClock) -> None:
    start = clock()
    first, second, third = (kit.image("web") for _ in range(3))
    kit.push("web", first, "v1", start)
    kit.push("web", second, "v1", start + timedelta(days=1))
    kit.push("web", third, "v1", start + timedelta(days=2))
    untagged = kit.image("web")
    kit.push("web", untagged, None, start + timedelta(days=3))
    clock.advance(days=60)
    verdicts = {
        v.digest: v for v in judge(services.index, [], services.rules, clock(), surges=SurgeBook())
    }
    assert verdicts[third.digest].kept and "tagged v1" in verdicts[third.digest].why()
    assert verdicts[second.digest].kept  # moved away 59 days ago, within 90 days
    assert verdicts[untagged.digest].kept
    clock.advance(days=40)
    verdicts = {
        v.digest: v for v in judge(services.index, [], services.rules, clock(), surges=SurgeBook())
    }
    assert verdicts[third.digest].kept
    assert not verdicts[second.digest].kept and not verdicts[first.digest].kept
    assert not verdicts[untagged.digest].kept
    wider = type(services.rules)(keep_deleted_days=90, keep_per_tag=2)
    verdicts = {v.digest: v for v in judge(services.index, [], wider, clock(), surges=NONE)}
    assert verdicts[second.digest].kept and "last 2 of tag v1" in verdicts[second.digest].why()
    assert not verdicts[first.digest].kept


def test_hold_keeps_an_image_past_retention_with_s3_legal_holds(
    kit: Backup, services: AwsServices, clock: MovableClock, s3: Any
) -> None:
    world = scene(kit, services, clock, s3)
    held = services.holds().hold("app", world.gone.digest, clock())
    objects = {world.gone.digest, *(b.digest for b in world.gone.blobs)}
    assert held.objects == len(objects)
    for digest in objects:
        assert services.locks.read(digest).legal_hold
    assert services.pruner().run(dry_run=False).entries == []
    released = services.holds().release("app", world.gone.digest, clock())
    assert released.objects == len(objects)
    assert not any(services.locks.read(d).legal_hold for d in objects)
    assert digests(services.pruner().run(dry_run=False).of("mark")) == world.unshared()


def test_stats_match_a_hand_count(
    kit: Backup, services: AwsServices, clock: MovableClock, s3: Any
) -> None:
    world = scene(kit, services, clock, s3)
    objects = services.ledger.objects()

    def size(manifest: Manifest) -> int:
        return manifest.size + sum(b.size for b in manifest.blobs)

    answer = stats(
        services.ledger,
        services.index,
        services.graph(),
        services.rules,
        clock(),
        surges=SurgeBook(),
    )
    everything = {world.kept.digest, world.gone.digest}
    everything |= {b.digest for m in (world.kept, world.gone) for b in m.blobs}
    assert answer.objects == len(everything)
    assert answer.unique_bytes == sum(objects[d].size for d in everything)
    assert answer.logical_bytes == size(world.kept)  # `gone` is no longer kept
    assert answer.kept_unique_bytes == size(world.kept)
    assert answer.dedup_ratio == 1.0
    assert answer.locked_bytes == 0  # every lock recorded at backup time has ended
    assert answer.unlocked_bytes == answer.unique_bytes
    (repo,) = answer.repositories
    assert (repo.repository, repo.images_kept, repo.logical_bytes) == ("app", 1, size(world.kept))

    held = services.holds()
    held.hold("app", world.gone.digest, clock())
    answer = stats(
        services.ledger,
        services.index,
        services.graph(),
        services.rules,
        clock(),
        surges=SurgeBook(),
    )
    assert answer.logical_bytes == size(world.kept) + size(world.gone)
    shared_size = objects[world.shared].size
    assert answer.kept_unique_bytes == size(world.kept) + size(world.gone) - shared_size
    expected = round((size(world.kept) + size(world.gone)) / answer.kept_unique_bytes, 3)
    assert answer.dedup_ratio == expected > 1


def test_s3_standard_price_is_tiered() -> None:
    tb = 1024**4
    assert s3_standard_monthly(0) == 0
    assert s3_standard_monthly(1024**3) == 0.02  # one GB at USD 0.023, rounded to cents
    assert s3_standard_monthly(50 * tb) == round(50 * 1024 * 0.023, 2)
    assert s3_standard_monthly(100 * tb) == round(50 * 1024 * 0.023 + 50 * 1024 * 0.022, 2)
