"""Restore drills: sampled closures and the rotating scrub, on a backup made by the engine."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from ecr_backup.catalog.surges import SurgeBook
from ecr_backup.composition import AwsServices
from ecr_backup.maintenance.drill import DrillReport, choose, drill, in_slice, scrub_slice
from ecr_backup.maintenance.retention import ImageVerdict
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Manifest
from ecr_backup.storage.reader import BucketReader
from tests.fakes import MovableClock
from tests.helpers import BUCKET, Backup


def run(services: AwsServices, clock: MovableClock, *, sample: int, scrub_days: int) -> DrillReport:
    return drill(
        services.ledger,
        services.index,
        services.graph(),
        BucketReader(services.store),
        services.rules,
        surges=SurgeBook(),
        now=clock(),
        sample=sample,
        scrub_days=scrub_days,
        rng=random.Random(7),
    )


def objects_of(image: Manifest) -> set[Digest]:
    return {image.digest, *(b.digest for b in image.blobs)}


def backed_up(kit: Backup, clock: MovableClock, count: int) -> list[Manifest]:
    images = [kit.image("app") for _ in range(count)]
    for n, image in enumerate(images):
        kit.push("app", image, f"v{n}", clock())
    return images


def test_a_drill_reads_the_whole_closure_of_each_sampled_image(
    kit: Backup, services: AwsServices, clock: MovableClock
) -> None:
    images = backed_up(kit, clock, 4)
    report = run(services, clock, sample=2, scrub_days=10_000)  # a slice of almost nothing
    assert report.ok and report.images_kept == 4
    assert len(report.sampled) == 2
    sizes = services.ledger.objects()
    for sampled in report.sampled:
        image = next(i for i in images if i.digest == sampled.digest)
        assert sampled.objects == len(objects_of(image))
        assert sampled.bytes == sum(sizes[d].size for d in objects_of(image))
    read = {d for s in report.sampled for d in objects_of(_image(images, s.digest))}
    kept = set().union(*(objects_of(i) for i in images))
    read |= {d for d in kept if in_slice(d, report.scrub_slice, 10_000)}
    assert report.objects_verified == len(read)
    assert report.bytes_read == sum(sizes[d].size for d in read)


def test_daily_drills_scrub_every_kept_object_once_per_pass(
    kit: Backup, services: AwsServices, clock: MovableClock
) -> None:
    images = backed_up(kit, clock, 5)
    kept = set().union(*(objects_of(i) for i in images))
    scrubbed = 0
    slices = set()
    for _ in range(3):
        report = run(services, clock, sample=0, scrub_days=3)
        assert report.ok and report.sampled == []
        slices.add(report.scrub_slice)
        scrubbed += report.scrubbed_objects
        assert report.objects_verified == report.scrubbed_objects
        clock.advance(days=1)
    assert slices == {0, 1, 2}
    assert scrubbed == len(kept)


def test_a_rewritten_or_missing_object_is_a_problem(
    kit: Backup, services: AwsServices, clock: MovableClock, s3: Any
) -> None:
    (image,) = backed_up(kit, clock, 1)
    layer, other = image.blobs[1].digest, image.blobs[2].digest
    kit.tamper(s3, layer, b"not the layer")
    s3.delete_object(Bucket=BUCKET, Key=services.store.blob_key(other))  # a delete marker
    report = run(services, clock, sample=1, scrub_days=1)  # and the whole backup scrubbed
    assert not report.ok
    assert {(p.kind, p.subject) for p in report.problems} == {
        ("hash", str(layer)),
        ("missing", str(other)),
    }


def test_the_sample_leans_towards_recent_images() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    new = ImageVerdict("app", Digest.of(b"new"), kept=True)
    old = ImageVerdict("app", Digest.of(b"old"), kept=True)
    candidates = [(old, now - timedelta(days=70)), (new, now)]
    rng = random.Random(1)
    picks = [choose(candidates, 1, now, rng)[0].digest for _ in range(200)]
    assert picks.count(new.digest) > 190
    both = choose(candidates, 5, now, rng)  # never more than there are, never twice
    assert sorted(v.digest for v in both) == sorted([new.digest, old.digest])


def test_the_slices_partition_the_digest_space() -> None:
    digests = [Digest.of(str(n).encode()) for n in range(300)]
    days = 7
    owners = [[s for s in range(days) if in_slice(d, s, days)] for d in digests]
    assert all(len(o) == 1 for o in owners)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    assert {scrub_slice(start + timedelta(days=n), days) for n in range(days)} == set(range(days))


def _image(images: list[Manifest], digest: Digest) -> Manifest:
    return next(i for i in images if i.digest == digest)
