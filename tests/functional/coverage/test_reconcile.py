"""Reconcile's comparison: a fake ECR control plane against the real index under moto."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import pytest

from ecr_backup.coverage.reconcile import OBSERVED, PUSH_FROM_ECR, Reconciler, Source
from ecr_backup.model import Action, ImageEvent, ManifestRecord
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Manifest
from ecr_backup.registry.ecr_listing import ImageStatus
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex
from tests.helpers import Backup, FakeEcr, minutes

REPO = "team/app"
SOURCE = Source("111122223333", "eu-west-1")
NOW = minutes(600)


@pytest.fixture
def backup(store: S3BlobStore, index: DynamoIndex) -> Backup:
    return Backup(store, index)


@pytest.fixture
def ecr() -> FakeEcr:
    return FakeEcr()


def reconciler(ecr: FakeEcr, index: DynamoIndex, now: datetime = NOW) -> Reconciler:
    return Reconciler(ecr, index, SOURCE, clock=lambda: now)


def pushed(backup: Backup, manifest: Manifest, tag: str | None, at: datetime) -> None:
    """An image backed up through its ECR event."""
    backup.replicator.backup_event(
        ImageEvent(REPO, manifest.digest, Action.PUSH, at, tag, event_id=f"event-{tag}")
    )


def record_all(backup: Backup, events: list[ImageEvent]) -> None:
    for event in events:
        backup.replicator.record(event)


def test_held_images_need_nothing_and_missing_ones_carry_their_push(
    backup: Backup, ecr: FakeEcr, index: DynamoIndex
) -> None:
    held, missing = backup.image(REPO), backup.image(REPO)
    pushed(backup, held, "v1", minutes(1))
    ecr.add(REPO, held.digest, "v1", pushed_at=minutes(1))
    ecr.add(REPO, missing.digest, "v2", "latest", pushed_at=minutes(2))

    drift = reconciler(ecr, index).repository(REPO)

    assert drift.images == 2
    (found,) = drift.missing
    assert found.image.digest == missing.digest
    assert [(e.tag, e.time, e.event_id) for e in found.events] == [
        ("latest", minutes(2), PUSH_FROM_ECR),
        ("v2", minutes(2), PUSH_FROM_ECR),
    ]
    assert found.message == found.events[0]
    assert drift.drifted == [] and drift.gone == []
    assert drift.to_record == []  # a missing image's pushes wait for its copy
    assert drift.has_drift


def test_archived_images_are_reported_never_copied(
    backup: Backup, ecr: FakeEcr, index: DynamoIndex
) -> None:
    held, lacking = backup.image(REPO), backup.image(REPO)
    pushed(backup, held, "v1", minutes(1))
    ecr.add(REPO, held.digest, "v1", pushed_at=minutes(1), status=ImageStatus.ARCHIVED)
    ecr.add(REPO, lacking.digest, "v2", status=ImageStatus.ACTIVATING)

    drift = reconciler(ecr, index).repository(REPO)

    assert [i.digest for i in drift.archived_held] == [held.digest]
    assert [i.digest for i in drift.archived_missing] == [lacking.digest]
    assert drift.missing == [] and drift.pushes == [] and drift.drifted == []


def test_a_tag_is_pushed_at_ecrs_time_unless_the_index_knows_a_later_state(
    backup: Backup, ecr: FakeEcr, index: DynamoIndex
) -> None:
    old, new = backup.image(REPO), backup.image(REPO)
    pushed(backup, old, "stable", minutes(1))
    pushed(backup, new, "v2", minutes(5))
    ecr.add(REPO, old.digest, "stable", "v1", pushed_at=minutes(1))
    ecr.add(REPO, new.digest, "v2", pushed_at=minutes(5))
    record_all(backup, reconciler(ecr, index).repository(REPO).to_record)
    assert index.tag(REPO, "v1") is not None
    # "stable" moves onto the newer image: explained by its push (a missed event).
    ecr.retag(REPO, "stable", new.digest)
    (push,) = reconciler(ecr, index).repository(REPO).pushes
    assert (push.tag, push.digest, push.time, push.event_id) == (
        "stable",
        new.digest,
        minutes(5),
        PUSH_FROM_ECR,
    )
    record_all(backup, [push])
    # ... and back onto the older one: only an observation can say so.
    ecr.retag(REPO, "stable", old.digest)
    drift = reconciler(ecr, index).repository(REPO)
    (moved,) = drift.drifted
    assert (moved.tag, moved.digest, moved.time, moved.event_id) == (
        "stable",
        old.digest,
        NOW,
        OBSERVED,
    )
    assert drift.pushes == []
    record_all(backup, drift.to_record)
    assert not reconciler(ecr, index, minutes(900)).repository(REPO).has_drift


def test_deleted_images_and_removed_tags_are_observed_once(
    backup: Backup, ecr: FakeEcr, index: DynamoIndex
) -> None:
    kept, deleted = backup.image(REPO), backup.image(REPO)
    pushed(backup, kept, "v1", minutes(1))
    pushed(backup, kept, "extra", minutes(1))
    pushed(backup, deleted, "v2", minutes(2))
    ecr.add(REPO, kept.digest, "v1", pushed_at=minutes(1))  # "extra" removed

    drift = reconciler(ecr, index).repository(REPO)

    assert [(e.action, e.tag, e.digest) for e in drift.drifted] == [
        (Action.DELETE, "extra", kept.digest)
    ]
    assert sorted((e.tag or "", e.digest == deleted.digest) for e in drift.gone) == [
        ("", True),
        ("v2", True),
    ]
    assert all(e.time == NOW and e.event_id == OBSERVED for e in drift.to_record)
    record_all(backup, drift.to_record)
    assert index.image_states(REPO)[deleted.digest] is True
    assert index.manifest(deleted.digest) is not None  # the backup keeps it

    again = reconciler(ecr, index, minutes(900)).repository(REPO)
    assert not again.has_drift


def test_an_image_pushed_again_after_its_deletion_is_back(
    backup: Backup, ecr: FakeEcr, index: DynamoIndex
) -> None:
    image = backup.image(REPO)
    pushed(backup, image, None, minutes(1))
    record_all(backup, reconciler(ecr, index).repository(REPO).to_record)  # ECR lacks it
    assert index.image_states(REPO)[image.digest] is True
    ecr.add(REPO, image.digest, pushed_at=minutes(1))
    drift = reconciler(ecr, index, minutes(700)).repository(REPO)
    (back,) = drift.drifted
    assert (back.action, back.tag, back.time) == (Action.PUSH, None, minutes(700))
    record_all(backup, drift.to_record)
    assert index.image_states(REPO)[image.digest] is False
    assert not reconciler(ecr, index, minutes(800)).repository(REPO).has_drift


def test_a_repository_deleted_from_ecr_is_listed_only_for_a_single_source(
    backup: Backup, ecr: FakeEcr, index: DynamoIndex
) -> None:
    pushed(backup, backup.image(REPO), "v1", minutes(1))
    ecr.add("team/other", backup.image("team/other").digest, "v1")
    assert reconciler(ecr, index).repositories(include_held=True) == [REPO, "team/other"]
    assert reconciler(ecr, index).repositories(include_held=False) == ["team/other"]
    assert reconciler(ecr, index).repositories(["team/o"], include_held=True) == ["team/other"]
    gone = reconciler(ecr, index).repository(REPO)
    assert [e.tag for e in gone.gone] == [None, "v1"]


def test_many_repositories_share_batch_reads_and_agree_with_one_at_a_time(
    backup: Backup, ecr: FakeEcr, index: DynamoIndex
) -> None:
    sizes = {"r/a": 150, "r/b": 10, "r/c": 0, "r/d": 60, "r/e": 100, "r/f": 5}
    n = 0
    for repository, size in sizes.items():
        ecr.images_by_repository[repository] = []
        for _ in range(size):
            n += 1
            # Digests only: completeness is what is compared; every third one is held.
            digest = Digest.of(str(n).encode())
            ecr.add(repository, digest, pushed_at=minutes(1))
            if n % 3 == 0:
                index.mark_complete(ManifestRecord(digest, "x", 1, 1, minutes(1)))
    calls: list[int] = []
    original = index.complete_manifests

    def counted(digests: Iterable[Digest]) -> set[Digest]:
        wanted = list(digests)
        calls.append(len(wanted))
        return original(wanted)

    index.complete_manifests = counted  # type: ignore[method-assign]
    shared = {d.repository: d for d in reconciler(ecr, index).many(sorted(sizes))}
    assert sum(calls) == sum(sizes.values()) and calls[:-1] == [100] * (len(calls) - 1)
    index.complete_manifests = original  # type: ignore[method-assign]
    for repository, size in sizes.items():
        alone = reconciler(ecr, index).repository(repository)
        assert [m.image.digest for m in shared[repository].missing] == [
            m.image.digest for m in alone.missing
        ]
        assert len(alone.missing) == size - sum(
            1 for i in ecr.images_by_repository[repository] if index.manifest(i.digest)
        )
