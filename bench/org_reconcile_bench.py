"""Organization-scale reconcile benchmark: 1,000 accounts x 2 regions x 5 repositories (one
image each, none backed up yet) on moto, driven through handlers/reconcile.py exactly as
Lambda drives it: the schedule's invocation, then every reconcile-queue message in
batches of 5 (the template's BatchSize), until the queue is empty.

moto runs in this process (mock_aws): each source account's ECR is reached through the
read-only role the reconcile assumes (moto maps assumed-role credentials to the role's
account), the index and the queues are moto's too. Every AWS call the code makes is
counted by operation and timed (a wrapper around botocore's `_make_api_call`).

Reported: the fan-out (reconcile-queue messages: one per registry, at most one per
repository), AWS calls per image and per repository, each operation's mean time on moto,
and wall time. moto answers in microseconds-to-milliseconds where AWS takes tens of
milliseconds: the counts carry over to AWS, the times do not (docs/organization.md
extrapolates with both).

The repositories and images are written straight into moto's ECR backends (set-up, not
measured: 2 s). moto runs with devkit/moto_server.py's speed patches, which change what a
request costs, never what it answers (tests/functional/test_moto_patches.py): unpatched, a
DynamoDB Query reads the whole table (which fills with a run summary per repository), an
SQS request reads the clock once per message in the queue, and each request looks for its
access key in every account seen, so the default size did not finish in 40 minutes.

`python -m bench.org_reconcile_bench [--accounts N ...]` runs it alone; `make bench` does
not run it. On the 2-CPU machine, shared: `--accounts 100` about 20 s, the default size
about 6 minutes (docs/bench.md, *Reconcile at organization scale*).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Row, config_only_manifest, markdown_table
from devkit.images import OCI_MANIFEST

ROOT = Path(__file__).resolve().parent.parent
BACKUP_ACCOUNT = "123456789012"  # moto's default: the backup account
BACKUP_REGION = "us-east-1"
BATCH_SIZE = 5  # template.yaml: the reconcile function's SQS BatchSize


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclass
class Calls:
    """Every botocore API call of this process: count and seconds, by operation."""

    counts: Counter[str] = field(default_factory=Counter)
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        from botocore.client import BaseClient

        original = getattr(BaseClient, "_make_api_call")  # noqa: B009 (private, on purpose)

        def counted(client: Any, operation: str, params: Any) -> Any:
            name = f"{client.meta.service_model.service_name}.{operation}"
            started = time.perf_counter()
            try:
                return original(client, operation, params)
            finally:
                self.counts[name] += 1
                self.seconds[name] += time.perf_counter() - started

        setattr(BaseClient, "_make_api_call", counted)  # noqa: B010
        try:
            yield
        finally:
            setattr(BaseClient, "_make_api_call", original)  # noqa: B010


@dataclass(frozen=True)
class Results:
    accounts: int
    regions: int
    repositories: int  # in all
    images: int
    registry_messages: int
    repository_messages: int
    invocations: int
    failed_records: int
    replicate_messages: int
    seconds: float
    setup_seconds: float
    calls: Counter[str]
    call_seconds: defaultdict[str, float]

    def per_image(self, operation: str) -> float:
        return self.calls[operation] / self.images

    def rows(self) -> list[Row]:
        size = (
            f"{self.accounts:,} accounts x {self.regions} regions x "
            f"{self.repositories // (self.accounts * self.regions)} repositories, "
            f"{self.images:,} images, none backed up"
        )
        rows = [
            Row(f"Organization reconcile wall time, {size}", f"{self.seconds:.1f} s"),
            Row(
                "Set-up (not measured): repositories and images in moto",
                f"{self.setup_seconds:.0f} s",
            ),
            Row(
                "Reconcile-queue messages per source registry (the schedule's fan-out)",
                f"{self.registry_messages / (self.accounts * self.regions):.2f}",
                "1",
                self.registry_messages == self.accounts * self.regions,
            ),
            Row(
                "Reconcile-queue messages per repository",
                f"{self.repository_messages / self.repositories:.2f}",
                "<= 1",
                self.repository_messages <= self.repositories,
            ),
            Row("Reconcile invocations (schedule + SQS batches of 5)", f"{self.invocations:,}"),
            Row("Records failed", str(self.failed_records), "0", self.failed_records == 0),
            Row(
                "Images sent to the replicate queue",
                f"{self.replicate_messages:,}",
                "one per missing image",
                self.replicate_messages == self.images,
            ),
            Row("AWS calls in all", f"{sum(self.calls.values()):,}"),
            Row("AWS calls per image", f"{sum(self.calls.values()) / self.images:.2f}"),
        ]
        registries = self.accounts * self.regions
        for operation, count in sorted(self.calls.items(), key=lambda kv: -kv[1]):
            mean_ms = self.call_seconds[operation] / count * 1000
            rows.append(
                Row(
                    f"... {operation}: calls per registry / repository / image; mean on moto",
                    f"{count / registries:.2f} / {count / self.repositories:.2f} / "
                    f"{self.per_image(operation):.2f}; {mean_ms:.1f} ms",
                )
            )
        return rows


def populate(accounts: Sequence[str], regions: Sequence[str], repositories: int) -> int:
    """Repositories `team<n>/app`, one image tagged v1 each, in every account and region.

    Written straight into moto's ECR backends with the arguments moto's CreateRepository and
    PutImage handlers pass them (10,000 of each through boto3 and assumed roles took 8
    minutes): DescribeRepositories and DescribeImages then answer as after the API calls
    (tests/functional/test_moto_patches.py compares the two).
    """
    from moto.ecr.models import ecr_backends

    omitted: Any = None  # what moto's handlers pass for a parameter the request leaves out
    images = 0
    for account in accounts:
        for region in regions:
            ecr = ecr_backends[account][region]
            for n in range(repositories):
                name = f"team{n}/app"
                ecr.create_repository(
                    repository_name=name,
                    registry_id=omitted,
                    encryption_config=omitted,
                    image_scan_config=omitted,
                    image_tag_mutability=omitted,
                    tags=[],
                )
                manifest = config_only_manifest(f"{account}/{region}/{name}")
                ecr.put_image(
                    name,
                    manifest.decode(),
                    "v1",
                    OCI_MANIFEST,
                    # moto computes a wrong digest for PutImage unless it is given one.
                    "sha256:" + hashlib.sha256(manifest).hexdigest(),
                )
                images += 1
    return images


def _handler_module() -> Any:
    import importlib.util

    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "ecr-backup")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "EcrBackupBench")
    sys.path.insert(0, str(ROOT / "handlers"))
    spec = importlib.util.spec_from_file_location("reconcile", ROOT / "handlers" / "reconcile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["reconcile"] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class _Context:
    function_name: str = "ecr-backup-reconcile"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = (
        f"arn:aws:lambda:{BACKUP_REGION}:{BACKUP_ACCOUNT}:function:ecr-backup-reconcile"
    )
    aws_request_id: str = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def _record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1767225600000",
            "SenderId": BACKUP_ACCOUNT,
            "ApproximateFirstReceiveTimestamp": "1767225600000",
        },
        "messageAttributes": {},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": BACKUP_REGION,
    }


def run(accounts: int, regions: Sequence[str], repositories: int) -> Results:
    import boto3
    from moto import mock_aws

    from devkit.moto_server import patch_for_speed

    patch_for_speed()  # the default size does not finish on unpatched moto (module docstring)

    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": BACKUP_REGION,
        "AWS_REGION": BACKUP_REGION,
        "ECR_BACKUP_BUCKET": "org-bench",
        "ECR_BACKUP_TABLE": "org-bench",
        "ECR_BACKUP_PREFIX": "",
        "POWERTOOLS_LOG_LEVEL": "WARNING",  # 10,000 "repository reconciled" lines otherwise
        "ECR_BACKUP_SOURCE_REGIONS": ",".join(regions),
        "ECR_BACKUP_ACCOUNTS_FROM": "organization",
        "ECR_BACKUP_ORGANIZATION_ROLE_ARN": (
            f"arn:aws:iam::{BACKUP_ACCOUNT}:role/ecr-backup-organization-read"
        ),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with mock_aws():
            return _run(accounts, list(regions), repositories, boto3)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _run(accounts: int, regions: list[str], repositories: int, boto3: Any) -> Results:
    from ecr_backup.settings import Settings

    started = time.perf_counter()
    organizations = boto3.client("organizations")
    organizations.create_organization(FeatureSet="ALL")
    for n in range(accounts - 1):  # the management account is the first
        organizations.create_account(Email=f"a{n}@example.com", AccountName=f"a{n}")
    members = sorted(
        a["Id"]
        for p in organizations.get_paginator("list_accounts").paginate()
        for a in p["Accounts"]
    )
    _say(
        f"{len(members)} accounts; creating {len(members) * len(regions) * repositories:,} "
        "repositories with one image each..."
    )
    images = populate(members, regions, repositories)
    sqs = boto3.client("sqs")
    urls = {n: sqs.create_queue(QueueName=f"org-bench-{n}")["QueueUrl"] for n in ("r", "copy")}
    os.environ["ECR_BACKUP_RECONCILE_QUEUE_URL"] = urls["r"]
    os.environ["ECR_BACKUP_REPLICATE_QUEUE_URL"] = urls["copy"]
    boto3.client("s3").create_bucket(Bucket="org-bench")
    reconcile = _handler_module()
    services = reconcile.services_for(Settings.load(os.environ))
    services.index.create_if_missing()
    queue_arn = sqs.get_queue_attributes(QueueUrl=urls["r"], AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    setup = time.perf_counter() - started
    _say(f"set-up {setup:.0f} s; reconciling...")

    calls = Calls()
    registry_messages = repository_messages = invocations = failed = 0
    sink = io.StringIO()  # the functions' EMF metrics and logs: not this table's business
    started = time.perf_counter()
    with calls.counting(), contextlib.redirect_stdout(sink):
        answer = reconcile.handler({"detail-type": "Scheduled Event"}, _Context())
        invocations += 1
        while True:
            messages = _receive(sqs, urls["r"])
            if not messages:
                break
            for start in range(0, len(messages), BATCH_SIZE):
                batch = messages[start : start + BATCH_SIZE]
                for message in batch:
                    body = json.loads(message["Body"])
                    if body.get("repository") is None:
                        registry_messages += 1
                    else:
                        repository_messages += 1
                event = {"Records": [_record(m, queue_arn) for m in batch]}
                response = reconcile.handler(event, _Context())
                invocations += 1
                failed += len(response["batchItemFailures"])
                # What Lambda's poller does with the successes: delete them.
                done = {f["itemIdentifier"] for f in response["batchItemFailures"]}
                entries = [
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                    for n, m in enumerate(batch)
                    if m["MessageId"] not in done
                ]
                if entries:
                    sqs.delete_message_batch(QueueUrl=urls["r"], Entries=entries)
            if len(messages) < 10 and sink.tell() > 50_000_000:
                sink.seek(0)
                sink.truncate()
        seconds = time.perf_counter() - started
    assert answer == {"sources": len(members) * len(regions)}, answer
    # The bench's own SQS calls (receiving and deleting, Lambda's poller in AWS) are left
    # out: count what the function calls.
    for own in ("sqs.ReceiveMessage", "sqs.DeleteMessageBatch"):
        calls.counts.pop(own, None)
        calls.seconds.pop(own, None)
    replicate = int(
        sqs.get_queue_attributes(
            QueueUrl=urls["copy"], AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
    )
    return Results(
        accounts=len(members),
        regions=len(regions),
        repositories=len(members) * len(regions) * repositories,
        images=images,
        registry_messages=registry_messages,
        repository_messages=repository_messages,
        invocations=invocations,
        failed_records=failed,
        replicate_messages=replicate,
        seconds=seconds,
        setup_seconds=setup,
        calls=calls.counts,
        call_seconds=calls.seconds,
    )


def _receive(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Up to 100 messages (ten receives), as Lambda's poller gathers batches."""
    found: list[dict[str, Any]] = []
    for _ in range(10):
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=900)
        page = answer.get("Messages", [])
        if not page:
            break
        found += page
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.org_reconcile_bench")
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--regions", default="us-east-1,eu-west-1")
    parser.add_argument("--repositories", type=int, default=5, help="per account and region")
    args = parser.parse_args(argv)
    results = run(args.accounts, args.regions.split(","), args.repositories)
    print(markdown_table(results.rows()))
    return 0 if all(r.passed is not False for r in results.rows()) else 1


if __name__ == "__main__":
    sys.exit(main())
