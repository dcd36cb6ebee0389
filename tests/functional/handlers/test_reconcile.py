"""handlers/reconcile.py under moto's mock_aws: each repository record is judged alone."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import boto3
import pytest

from ecr_backup.settings import Settings
from ecr_backup.status.runs import last_reconciles
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex
from ecr_backup.storage.runs import RunLog
from ecr_backup.storage.sources import SourceLog
from tests.functional.handlers.test_replicate import Context, batch, captured_logs, log_lines
from tests.functional.handlers.test_scheduled import BACKUP_ENV, load
from tests.helpers import TABLE, Backup, reset_connections

ACCOUNT = "123456789012"  # moto's


@pytest.fixture(scope="module")
def reconcile_module() -> Iterator[ModuleType]:
    yield from load("reconcile")


@pytest.fixture
def handler(reconcile_module: ModuleType, queues: dict[str, str]) -> Iterator[ModuleType]:
    """The module, its clients made afresh for this test's moto (and dropped after it)."""
    reconcile_module.services_for.cache_clear()
    yield reconcile_module
    reconcile_module.services_for.cache_clear()


@pytest.fixture
def logs(reconcile_module: ModuleType) -> Iterator[io.StringIO]:
    yield from captured_logs(reconcile_module)


@pytest.fixture
def queues(backed_up: Backup, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    sqs = boto3.client("sqs")
    urls = {name: sqs.create_queue(QueueName=name)["QueueUrl"] for name in ("reconcile", "copy")}
    monkeypatch.setenv("ECR_BACKUP_RECONCILE_QUEUE_URL", urls["reconcile"])
    monkeypatch.setenv("ECR_BACKUP_REPLICATE_QUEUE_URL", urls["copy"])
    return urls


@pytest.fixture
def backed_up(store: S3BlobStore, index: DynamoIndex, monkeypatch: pytest.MonkeyPatch) -> Backup:
    """An empty backup, and the handler's settings pointing at it."""
    for name, value in BACKUP_ENV.items():
        monkeypatch.setenv(name, value)
    return Backup(store, index)


def push_to_ecr(backup: Backup, repository: str, tag: str) -> str:
    """An image in moto's ECR that no event brought into the backup."""
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName=repository)
    manifest = backup.image(repository)
    # moto computes a wrong digest for PutImage unless it is given one.
    ecr.put_image(
        repositoryName=repository,
        imageManifest=manifest.raw.decode(),
        imageManifestMediaType=manifest.media_type,
        imageTag=tag,
        imageDigest=str(manifest.digest),
    )
    return str(manifest.digest)


def record(message_id: str, body: dict[str, str] | str) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": f"handle-{message_id}",
        "body": body if isinstance(body, str) else json.dumps(body),
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1767225600000",
            "SenderId": ACCOUNT,
            "ApproximateFirstReceiveTimestamp": "1767225600000",
        },
        "messageAttributes": {},
        "md5OfBody": "0" * 32,
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:us-east-1:{ACCOUNT}:reconcile",
        "awsRegion": "us-east-1",
    }


def task(repository: str) -> dict[str, str]:
    return {"account": ACCOUNT, "region": "us-east-1", "repository": repository}


def test_a_bad_or_failing_record_fails_alone_with_one_line_naming_it(
    handler: ModuleType, backed_up: Backup, queues: dict[str, str], logs: io.StringIO
) -> None:
    missed = push_to_ecr(backed_up, "missed", "v1")
    push_to_ecr(backed_up, "flaky", "v1")
    services = handler.services_for(Settings.load(os.environ))
    refused = reset_connections(services, "ecr", "DescribeImages", "flaky")

    response = handler.handler(
        batch(
            record("bad-account", {**task("missed"), "account": "12"}),
            record("flaky", task("flaky")),
            record("not-json", "{"),
            record("good", task("missed")),
        ),
        Context(function_name="reconcile"),
    )

    assert response == {
        "batchItemFailures": [
            {"itemIdentifier": "bad-account"},
            {"itemIdentifier": "flaky"},
            {"itemIdentifier": "not-json"},
        ]
    }
    assert refused  # the flaky repository's listing was tried, and died
    # The good record after the failures was reconciled: its missing image is queued.
    (message,) = boto3.client("sqs").receive_message(
        QueueUrl=queues["copy"], MaxNumberOfMessages=10
    )["Messages"]
    assert json.loads(message["Body"])["detail"]["image-digest"] == missed
    lines = log_lines(logs)
    failed = [line for line in lines if line["message"].startswith("record failed")]
    assert [line["message_id"] for line in failed] == ["bad-account", "flaky", "not-json"]
    assert failed[0]["exception_name"] == failed[2]["exception_name"] == "InvalidInputError"
    assert failed[0]["stack_trace"]["value"] == (
        "invalid reconcile task: account: String should match pattern '^[0-9]{12}$'"
    )
    # The failure names its repository, and the next record does not inherit it.
    assert (failed[1]["repository"], failed[1]["exception_name"]) == ("flaky", "RegistryError")
    assert "repository" not in failed[2]
    (reconciled,) = [line for line in lines if line["message"] == "repository reconciled"]
    assert (reconciled["repository"], reconciled["ImagesMissing"]) == ("missed", 1)


def test_a_source_registry_that_cannot_be_listed_does_not_stop_the_others(
    handler: ModuleType,
    backed_up: Backup,
    queues: dict[str, str],
    logs: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Several registries: the schedule sends one message per registry, each listed by its
    # own record, so an unreachable one fails alone (retried, then dead-lettered).
    monkeypatch.setenv("ECR_BACKUP_SOURCE_REGIONS", "eu-west-1,us-east-1")  # the bad one first
    push_to_ecr(backed_up, "app", "v1")  # in us-east-1
    services = handler.services_for(Settings.load(os.environ))
    refused = reset_connections(services, "ecr", "DescribeRepositories", "eu-west-1")
    sqs = boto3.client("sqs")

    started = handler.handler({"detail-type": "Scheduled Event"}, Context(function_name="r"))

    assert started == {"sources": 2}
    sent = sqs.receive_message(QueueUrl=queues["reconcile"], MaxNumberOfMessages=10)["Messages"]
    registries = [json.loads(m["Body"]) for m in sent]
    assert registries == [
        {"account": ACCOUNT, "region": "eu-west-1", "repository": None},
        {"account": ACCOUNT, "region": "us-east-1", "repository": None},
    ]
    for message in sent:
        sqs.delete_message(QueueUrl=queues["reconcile"], ReceiptHandle=message["ReceiptHandle"])

    response = handler.handler(
        batch(record("eu", registries[0]), record("us", registries[1])),
        Context(function_name="reconcile"),
    )

    assert refused
    assert response == {"batchItemFailures": [{"itemIdentifier": "eu"}]}
    messages = sqs.receive_message(QueueUrl=queues["reconcile"], MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"]) for m in messages] == [
        {"account": ACCOUNT, "region": "us-east-1", "repository": "app"}
    ]
    (failed,) = [line for line in log_lines(logs) if line["message"].startswith("record failed")]
    assert (failed["source_region"], failed["exception_name"]) == ("eu-west-1", "RegistryError")
    assert "repository" not in failed


def test_each_repository_reconciled_leaves_its_run_summary_for_status(
    handler: ModuleType, backed_up: Backup
) -> None:
    missed = push_to_ecr(backed_up, "missed", "v1")
    event = batch(record("one", task("missed")))
    response = handler.handler(event, Context(function_name="reconcile"))
    assert response == {"batchItemFailures": []}
    (run,) = last_reconciles(RunLog(TABLE, client=boto3.client("dynamodb")))
    assert (run.account, run.region, run.repository) == (ACCOUNT, "us-east-1", "missed")
    assert [str(m.digest) for m in run.missing] == [missed]
    assert (run.images, run.missing_count, run.grace_minutes) == (1, 1, 1440)


def registry_tasks(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    found: list[dict[str, Any]] = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
        "Messages"
    ):
        found += [json.loads(m["Body"]) for m in messages]
        for m in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return sorted(found, key=lambda t: (t["account"], t["region"]))


def test_the_accounts_come_from_aws_organizations_active_ones_only(
    handler: ModuleType, backed_up: Backup, queues: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    organizations = boto3.client("organizations")
    organizations.create_organization(FeatureSet="ALL")
    for name in ("build", "prod"):
        organizations.create_account(Email=f"{name}@example.com", AccountName=name)
    members = sorted(a["Id"] for a in organizations.list_accounts()["Accounts"])
    assert len(members) == 3  # the management account and two members
    monkeypatch.setenv("ECR_BACKUP_ACCOUNTS_FROM", "organization")
    monkeypatch.setenv(
        "ECR_BACKUP_ORGANIZATION_ROLE_ARN",
        f"arn:aws:iam::{ACCOUNT}:role/ecr-backup-organization-read",
    )
    monkeypatch.setenv("ECR_BACKUP_SOURCE_REGIONS", "us-east-1,eu-west-1")

    started = handler.handler({"detail-type": "Scheduled Event"}, Context(function_name="r"))

    assert started == {"sources": 6}  # every account, in every region: one message each
    assert registry_tasks(queues["reconcile"]) == [
        {"account": a, "region": r, "repository": None}
        for a in members
        for r in ("eu-west-1", "us-east-1")
    ]


def test_the_accounts_come_from_the_events_that_arrived(
    handler: ModuleType, backed_up: Backup, queues: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = SourceLog(TABLE, client=boto3.client("dynamodb"))
    now = datetime.now(UTC)
    for account, region in (("111111111111", "eu-west-1"), ("222222222222", "us-east-1")):
        log.note(account, region, now)
    monkeypatch.setenv("ECR_BACKUP_ACCOUNTS_FROM", "events")

    started = handler.handler({"detail-type": "Scheduled Event"}, Context(function_name="r"))

    # Without SourceRegions: exactly the registries the events came from.
    assert started == {"sources": 2}
    assert registry_tasks(queues["reconcile"]) == [
        {"account": "111111111111", "region": "eu-west-1", "repository": None},
        {"account": "222222222222", "region": "us-east-1", "repository": None},
    ]
