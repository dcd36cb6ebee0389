"""The lock model: reused layers get their lock extended, maintain keeps kept images locked,
and nothing ever asks S3 for a shorter lock (moto would allow it; real S3 would not)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ecr_backup.composition import AwsServices
from ecr_backup.errors import ConfigurationError, StorageError
from ecr_backup.maintenance.maintain import maintain
from ecr_backup.oci.digest import Digest
from ecr_backup.schema import render
from ecr_backup.storage.objectlock import ObjectLock
from tests.fakes import MovableClock
from tests.functional.maintenance.conftest import RecordingLocks, head_lock
from tests.helpers import Backup

LOCK = timedelta(days=35)


def run_maintain(services: AwsServices) -> Any:
    return maintain(
        services.ledger,
        services.index,
        services.graph(),
        services.rules,
        services.keeper,
        surges=services.surges(),
    )


def test_reused_base_layer_is_extended_past_half_the_lock_period(
    kit: Backup, services: AwsServices, clock: MovableClock, s3: Any, recorded: RecordingLocks
) -> None:
    base = kit.layer()
    image_a = kit.image("app", [base, kit.layer()])
    kit.push("app", image_a, "a", clock())
    base_digest = image_a.blobs[1].digest
    written = head_lock(s3, base_digest)
    assert recorded.extensions == []  # fresh objects hold the bucket's default, LockDays

    clock.advance(days=10)  # less than half the period: the recorded lock suffices
    kit.push("app", kit.image("app", [base, kit.layer()]), "b", clock())
    assert head_lock(s3, base_digest) == written
    assert base_digest not in {d for d, _, _ in recorded.extensions}

    clock.advance(days=10)  # 20 days in: less than LockDays/2 left on the base layer
    image_c = kit.image("app", [base, kit.layer()])
    kit.push("app", image_c, "c", clock())
    assert head_lock(s3, base_digest) >= clock() + LOCK
    assert base_digest in {d for d, _, _ in recorded.extensions}
    assert recorded.shortenings() == []


def test_maintain_extends_the_closure_of_kept_images_and_reports_short_locks(
    kit: Backup, services: AwsServices, clock: MovableClock, s3: Any, recorded: RecordingLocks
) -> None:
    image = kit.image("app")
    kit.push("app", image, "v1", clock())
    objects = [image.digest, *(b.digest for b in image.blobs)]

    clock.advance(days=30)  # 5 days left: the checks did not run for half a period
    report = run_maintain(services)
    assert report.images_kept == 1 and report.objects_checked == len(objects)
    assert {c.digest for c in report.extended} == set(objects)
    assert {c.digest for c in report.short} == set(objects) and not report.ok
    for digest in objects:
        assert head_lock(s3, digest) >= clock() + LOCK

    clock.advance(days=1)  # a day later the locks have half a period of headroom
    again = run_maintain(services)
    assert again.extended == [] and again.short == [] and again.ok
    assert recorded.shortenings() == []


def test_a_lock_longer_than_needed_is_left_alone(
    kit: Backup, services: AwsServices, clock: MovableClock, s3: Any, recorded: RecordingLocks
) -> None:
    image = kit.image("app")
    kit.push("app", image, "v1", clock())
    layer = image.blobs[-1].digest
    far = clock() + timedelta(days=400)
    s3.put_object_retention(
        Bucket="backup-bucket",
        Key=services.locks.key(layer),
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": far},
    )
    clock.advance(days=34)
    run_maintain(services)
    assert layer not in {d for d, _, _ in recorded.extensions}
    assert head_lock(s3, layer) == far.replace(microsecond=head_lock(s3, layer).microsecond)
    assert recorded.shortenings() == []


def test_deleted_image_past_retention_is_not_kept_locked(
    kit: Backup, services: AwsServices, clock: MovableClock, recorded: RecordingLocks
) -> None:
    image = kit.image("app")
    kit.push("app", image, "v1", clock())
    kit.delete("app", image, "v1", clock.advance(days=1))
    clock.advance(days=100)  # past KeepDeletedDays (90)
    report = run_maintain(services)
    assert report.images_kept == 0 and report.objects_checked == 0
    assert recorded.extensions == []


def test_an_object_s3_will_not_answer_for_does_not_leave_the_others_unextended(
    kit: Backup,
    services: AwsServices,
    clock: MovableClock,
    s3: Any,
    recorded: RecordingLocks,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = kit.image("app")
    kit.push("app", image, "v1", clock())
    objects = sorted([image.digest, *(b.digest for b in image.blobs)], key=str)
    stuck = objects[0]  # the pass goes in digest order: this one is checked first
    read = recorded.read

    def throttled(digest: Digest) -> ObjectLock:
        if digest == stuck:
            raise StorageError("S3 HeadObject: SlowDown", code="SlowDown", retryable=True)
        return read(digest)

    monkeypatch.setattr(recorded, "read", throttled)
    clock.advance(days=30)
    report = run_maintain(services)

    assert report.failed == {stuck: "S3 HeadObject: SlowDown"} and not report.ok
    assert {c.digest for c in report.extended} == set(objects[1:])
    for digest in objects[1:]:
        assert head_lock(s3, digest) >= clock() + LOCK
    assert render("maintain", report)["failed"] == [
        {"digest": str(stuck), "error": "S3 HeadObject: SlowDown"}
    ]


def test_a_permission_problem_stops_the_pass_at_once(
    kit: Backup,
    services: AwsServices,
    clock: MovableClock,
    recorded: RecordingLocks,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kit.push("app", kit.image("app"), "v1", clock())
    reads: list[Digest] = []

    def denied(digest: Digest) -> ObjectLock:
        reads.append(digest)
        raise ConfigurationError("S3 HeadObject: access denied", code="AccessDenied")

    monkeypatch.setattr(recorded, "read", denied)
    clock.advance(days=30)
    # The role or the settings: every object would fail alike, so the first one ends it.
    with pytest.raises(ConfigurationError):
        run_maintain(services)
    assert len(reads) == 1
