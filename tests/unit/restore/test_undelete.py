"""Undelete's finder: what a window's deletions took, from the history alone (fakes)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from ecr_backup.catalog.catalog import Catalog
from ecr_backup.model import Action, ImageEvent
from ecr_backup.oci.manifest import Manifest
from ecr_backup.restore.undelete import deleted_in
from ecr_backup.settings import Settings
from tests.fakes import FakeAws, MovableClock
from tests.helpers import BUCKET, TABLE, Backup


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def aws(clock: MovableClock) -> FakeAws:
    return FakeAws(clock, settings=Settings(bucket=BUCKET, table=TABLE))


@pytest.fixture
def kit(aws: FakeAws, clock: MovableClock) -> Backup:
    return Backup(aws.store, aws.index, clock=clock, locks=aws.keeper)


def delete(kit: Backup, image: Manifest, tag: str | None, at: datetime) -> None:
    event = ImageEvent(
        "app", image.digest, Action.DELETE, at, tag, source_account="1", source_region="r"
    )
    kit.replicator.record(event)


def test_a_deleted_image_comes_back_with_the_tags_it_had_just_before(
    kit: Backup, aws: FakeAws, clock: MovableClock
) -> None:
    start = clock()
    old, current, other = kit.image("app"), kit.image("app"), kit.image("app")
    kit.push("app", old, "v1", start)
    kit.push("app", current, "v1", start + timedelta(minutes=1))  # v1 moved off `old`
    kit.push("app", current, "latest", start + timedelta(minutes=2))
    kit.push("app", other, "stable", start + timedelta(minutes=3))
    # ECR deletes `current` (and its tags, without an event per tag); then a tag removal.
    delete(kit, current, None, start + timedelta(hours=1))
    delete(kit, other, "stable", start + timedelta(hours=2))
    found = deleted_in(Catalog(aws.store, aws.index), "app", start, start + timedelta(hours=3))
    assert [(d.digest, d.tags, d.image_deleted) for d in found] == [
        (current.digest, ["latest", "v1"], True),
        (other.digest, ["stable"], False),
    ]
    assert (found[0].source_account, found[0].source_region) == ("1", "r")
    assert found[0].deleted_at == start + timedelta(hours=1)


def test_deletions_outside_the_window_are_left_alone(
    kit: Backup, aws: FakeAws, clock: MovableClock
) -> None:
    start = clock()
    image = kit.image("app")
    kit.push("app", image, "v1", start)
    delete(kit, image, None, start + timedelta(days=2))
    catalog = Catalog(aws.store, aws.index)
    assert deleted_in(catalog, "app", start, start + timedelta(days=1)) == []
    assert deleted_in(catalog, "app", start + timedelta(days=3), start + timedelta(days=4)) == []
    (found,) = deleted_in(catalog, "app", start, start + timedelta(days=2))
    assert found.digest == image.digest and found.tags == ["v1"]


def test_an_untagged_image_comes_back_untagged(
    kit: Backup, aws: FakeAws, clock: MovableClock
) -> None:
    start = clock()
    image = kit.image("app")
    kit.push("app", image, None, start)
    delete(kit, image, None, start + timedelta(minutes=5))
    (found,) = deleted_in(Catalog(aws.store, aws.index), "app", start, start + timedelta(hours=1))
    assert found.digest == image.digest and found.tags == [] and found.image_deleted


def test_a_tag_deleted_twice_comes_back_on_the_image_deleted_last(
    kit: Backup, aws: FakeAws, clock: MovableClock
) -> None:
    start = clock()
    first, second = kit.image("app"), kit.image("app")
    kit.push("app", first, "v1", start)
    delete(kit, first, None, start + timedelta(minutes=10))
    kit.push("app", second, "v1", start + timedelta(minutes=20))
    delete(kit, second, None, start + timedelta(minutes=30))
    found = deleted_in(Catalog(aws.store, aws.index), "app", start, start + timedelta(hours=1))
    assert [(d.digest, d.tags) for d in found] == [(first.digest, []), (second.digest, ["v1"])]
