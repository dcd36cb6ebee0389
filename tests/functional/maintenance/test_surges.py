"""A mass deletion in the source, end to end under moto: counted in the index, recorded in the
bucket, held from prune until a person acknowledges it."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from ecr_backup.backup.replicator import Replicator
from ecr_backup.catalog.surges import acknowledge, window_of
from ecr_backup.cli import main
from ecr_backup.composition import AwsServices
from ecr_backup.model import Action, ImageEvent
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Manifest
from ecr_backup.storage.deletions import DynamoDeletionLog
from tests.fakes import MovableClock
from tests.functional.maintenance.conftest import PREFIX
from tests.helpers import BUCKET, TABLE, Backup

ACCOUNT = "123456789012"


def deletion(image: Manifest, clock: MovableClock, tag: str | None = None) -> ImageEvent:
    return ImageEvent(
        "app",
        image.digest,
        Action.DELETE,
        clock(),
        tag=tag,
        source_account=ACCOUNT,
        event_id=f"del-{image.digest.hex[:8]}",
    )


def test_a_mass_deletion_is_held_from_prune_until_acknowledged(
    kit: Backup, services: AwsServices, clock: MovableClock
) -> None:
    images = [kit.image("app") for _ in range(10)]
    for n, image in enumerate(images):
        kit.push("app", image, f"v{n}", clock())
    engine = Replicator(
        kit.source,
        services.store,
        services.index,
        clock=clock,
        locks=services.keeper,
        deletions=services.surge_watch,
    )
    clock.advance(hours=1)
    gone = images[:6]  # 6 of 10 at once: from the 5th on, over 20% of the repository
    for n, image in enumerate(gone):  # the image, then its tag, as ECR reports them
        engine.record(deletion(image, clock))
        engine.record(deletion(image, clock, f"v{n}"))
    for image in gone:  # EventBridge delivers again: nothing more is counted or recorded
        engine.record(deletion(image, clock))

    book = services.surges()
    assert [s.repository for s in book.surges] == ["app"]
    surge = book.surges[0]
    # Recorded when the 5th deletion crossed the rule; the 6th falls in the same window.
    assert surge.deletions == 5 and "5 of 10 images" in surge.rule
    assert (surge.start, surge.end) == window_of(clock())
    assert [s.id for s in services.surges_recorded] == [surge.id]

    clock.advance(days=100)  # past KeepDeletedDays (90)
    held = services.pruner().run(dry_run=True)
    assert sorted(d for _, d, _ in held.held_by_surge) == sorted(i.digest for i in gone)
    assert {s for _, _, s in held.held_by_surge} == {surge.id}
    deleted_objects = {d for image in gone for d in _objects(image)}
    assert not deleted_objects & {e.digest for e in held.entries}

    acknowledge(services.store, surge.id, "planned clean-up", "arn:aws:iam::1:user/ops", clock())
    released = services.pruner().run(dry_run=True)
    assert released.held_by_surge == []
    marked = {e.digest for e in released.entries if e.action == "mark"}
    assert {i.digest for i in gone} <= marked
    assert not marked & {d for image in images[6:] for d in _objects(image)}


def test_a_replayed_deletion_writes_no_count(services: AwsServices, kit: Backup) -> None:
    deletions = DynamoDeletionLog(services.index.table, client=services.client("dynamodb"))
    slot = kit.clock()
    digest = Digest.of(b"image")
    assert deletions.note_deletion(ACCOUNT, "app", digest, slot) is True
    assert deletions.note_deletion(ACCOUNT, "app", digest, slot) is False
    assert deletions.count_deletions(ACCOUNT, None, slot, slot + timedelta(minutes=10)) == 1
    assert deletions.count_deletions(ACCOUNT, "app", slot, slot + timedelta(minutes=10)) == 1
    assert deletions.count_deletions(ACCOUNT, "app", slot + timedelta(minutes=10), slot) == 0
    assert deletions.count_deletions(ACCOUNT, "other", slot, slot + timedelta(minutes=10)) == 0


def _objects(image: Manifest) -> set[Digest]:
    return {image.digest, *(b.digest for b in image.blobs)}


def test_the_commands_list_a_surge_show_what_it_holds_and_acknowledge_it(
    kit: Backup,
    services: AwsServices,
    clock: MovableClock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in (("BUCKET", BUCKET), ("TABLE", TABLE), ("PREFIX", PREFIX)):
        monkeypatch.setenv(f"ECR_BACKUP_{name}", value)
    images = [kit.image("app") for _ in range(6)]
    for n, image in enumerate(images):
        kit.push("app", image, f"v{n}", clock())
    engine = Replicator(kit.source, services.store, services.index, deletions=services.surge_watch)
    for image in images[:5]:  # 5 of 6: over 20%
        engine.record(deletion(image, clock))
    (surge,) = services.surges().surges

    assert main(["surges"]) == 0
    listed = capsys.readouterr().out
    assert surge.id in listed and "HOLDING" in listed and "1 holding deleted images" in listed
    assert main(["prune", "--dry-run"]) == 0
    held = capsys.readouterr().out
    for image in images[:5]:
        assert f"held by surge {surge.id}: app@{image.digest}" in held
    assert main(["surges", "acknowledge", surge.id, "--reason", "clean-up of CI images"]) == 0
    assert f"acknowledged surge {surge.id} (clean-up of CI images)" in capsys.readouterr().out
    assert main(["surges", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["holding"] == 0
    assert document["surges"][0]["acknowledged"]["reason"] == "clean-up of CI images"
    assert main(["surges", "acknowledge", surge.id, "--reason", "again"]) == 2
    assert "acknowledged already" in capsys.readouterr().err
