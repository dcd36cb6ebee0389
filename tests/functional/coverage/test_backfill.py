"""Backfill's actions: copies with bounded concurrency and progress, failures that do not
stop the run, dry runs, and the replicate queue's messages (moto SQS)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from ecr_backup.backup.events import parse_event
from ecr_backup.backup.queue import MessageQueue
from ecr_backup.coverage.backfill import Backfill
from ecr_backup.coverage.reconcile import PUSH_FROM_ECR, Reconciler, Source
from ecr_backup.errors import ExitCode
from ecr_backup.model import Action, ImageEvent
from ecr_backup.progress import Progress
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex
from tests.helpers import Backup, FakeEcr, minutes

REPO = "team/app"
SOURCE = Source("111122223333", "eu-west-1")


@dataclass
class Recorded:
    totals: list[tuple[int, str]] = field(default_factory=list)
    advanced: int = 0
    finished: bool = False

    def factory(self, total: int, label: str) -> Progress:
        self.totals.append((total, label))
        return self

    def advance(self, amount: int) -> None:
        self.advanced += amount

    def grow(self, amount: int) -> None:
        raise AssertionError("backfill knows its total before copying")

    def finish(self) -> None:
        self.finished = True


@pytest.fixture
def backup(store: S3BlobStore, index: DynamoIndex) -> Backup:
    return Backup(store, index)


def test_backfill_copies_what_is_missing_and_fetches_nothing_held(
    backup: Backup, index: DynamoIndex
) -> None:
    ecr = FakeEcr()
    held = backup.image(REPO)
    backup.replicator.backup_event(
        ImageEvent(REPO, held.digest, Action.PUSH, minutes(1), "v1", event_id="e1")
    )
    ecr.add(REPO, held.digest, "v1", pushed_at=minutes(1))
    missing = [backup.image(REPO) for _ in range(3)]
    for n, image in enumerate(missing):
        ecr.add(REPO, image.digest, f"m{n}", pushed_at=minutes(10 + n), size=1000 * (n + 1))
    broken = backup.image(REPO)
    ecr.add(REPO, broken.digest, "broken", pushed_at=minutes(20))
    del backup.source.manifests[f"{REPO}@{broken.digest}"]  # the registry lost it
    gets_before = backup.source.manifest_gets
    progress = Recorded()

    report = Backfill(
        Reconciler(ecr, index, SOURCE),
        backup.replicator,
        image_concurrency=2,
        progress=progress.factory,
    ).run()

    assert {m.image.digest for m in report.copied} == {m.digest for m in missing}
    (failure,) = report.failed
    assert failure.missing.image.digest == broken.digest
    assert failure.error.exit_code is ExitCode.DATA
    assert index.tag(REPO, "broken") is None  # nothing recorded for what was not copied
    for n, image in enumerate(missing):
        assert index.manifest(image.digest) is not None
        (event,) = index.history(REPO, f"m{n}")
        assert (event.time, event.event_id) == (minutes(10 + n), PUSH_FROM_ECR)
    # One manifest GET per image copied or tried; none for the held one.
    assert backup.source.manifest_gets - gets_before == len(missing) + 1
    assert progress.totals == [(1000 + 2000 + 3000 + 1000, "backfill")]
    assert progress.advanced == 7000 and progress.finished


def test_dry_run_copies_and_records_nothing(backup: Backup, index: DynamoIndex) -> None:
    ecr = FakeEcr()
    image = backup.image(REPO)
    ecr.add(REPO, image.digest, "v1")
    gets_before = backup.source.manifest_gets
    report = Backfill(Reconciler(ecr, index, SOURCE), backup.replicator).run(dry_run=True)
    assert report.has_drift and len(report.repositories[0].missing) == 1
    assert report.copied == [] and report.recorded == 0
    assert backup.source.manifest_gets == gets_before
    assert index.repositories() == []


def test_enqueue_sends_ecr_events_ten_per_batch(
    backup: Backup, index: DynamoIndex, aws: None
) -> None:
    ecr = FakeEcr()
    images = [backup.image(REPO) for _ in range(23)]
    for n, image in enumerate(images):
        tags = (f"t{n}",) if n % 2 else ()
        ecr.add(REPO, image.digest, *tags, pushed_at=minutes(n))
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="replicate")["QueueUrl"]
    batches: list[int] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        batches.append(len(params["Entries"]))

    sqs.meta.events.register("provide-client-params.sqs.SendMessageBatch", count)
    gets_before = backup.source.manifest_gets

    report = Backfill(
        Reconciler(ecr, index, SOURCE), backup.replicator, queue=MessageQueue(sqs, url)
    ).run()

    assert report.enqueued == 23 and batches == [10, 10, 3]
    assert backup.source.manifest_gets == gets_before  # the queue's consumer copies
    received: dict[str, ImageEvent] = {}
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            event = parse_event(message["Body"]).image_event()
            assert event is not None
            received[str(event.digest)] = event
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    for n, image in enumerate(images):
        event = received[str(image.digest)]
        assert (event.repository, event.action, event.time) == (REPO, Action.PUSH, minutes(n))
        assert event.tag == (f"t{n}" if n % 2 else None)
        assert (event.source_account, event.source_region) == (SOURCE.account, SOURCE.region)
        assert event.event_id is not None and event.event_id.startswith(PUSH_FROM_ECR)
