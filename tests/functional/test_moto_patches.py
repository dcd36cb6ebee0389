"""devkit/moto_server.py's speed patches answer exactly as unpatched moto does, and its
DynamoDB requests are atomic on threads, as DynamoDB's are.

Each speed test runs the same requests on the same state (or on two identically built
queues) before and after the patch; `monkeypatch` puts moto's originals back afterwards.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from bench.common import config_only_manifest
from bench.org_reconcile_bench import populate
from devkit.images import OCI_MANIFEST
from devkit.moto_server import (
    patch_dynamodb_atomic,
    patch_dynamodb_query,
    patch_iam_account_lookup,
    patch_sqs_clock,
)

SOURCE_ACCOUNT = "210987654321"


def answer(response: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def applying(monkeypatch: pytest.MonkeyPatch, patch: Callable[[], None], *where: Any) -> None:
    """Apply `patch`, having told monkeypatch to restore `where`'s attributes afterwards."""
    for owner, name in where:
        monkeypatch.setattr(owner, name, owner.__dict__[name])
    patch()


# DynamoDB Query


def _table(dynamodb: Any, name: str, key_type: str, *, sort_key: bool) -> None:
    schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
    attributes = [{"AttributeName": "pk", "AttributeType": key_type}]
    if sort_key:
        schema.append({"AttributeName": "sk", "KeyType": "RANGE"})
        attributes.append({"AttributeName": "sk", "AttributeType": "S"})
    attributes.append({"AttributeName": "kind", "AttributeType": "S"})
    dynamodb.create_table(
        TableName=name,
        KeySchema=schema,
        AttributeDefinitions=attributes,
        BillingMode="PAY_PER_REQUEST",
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-kind",
                "KeySchema": [{"AttributeName": "kind", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )


QUERIES: list[dict[str, Any]] = [
    {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "p2"}}},
    {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "absent"}}},
    {
        "KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
        "ExpressionAttributeValues": {":p": {"S": "p1"}, ":s": {"S": "tag#"}},
    },
    {
        "KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b",
        "ExpressionAttributeValues": {":p": {"S": "p3"}, ":a": {"S": "b"}, ":b": {"S": "tag#3"}},
        "ScanIndexForward": False,
    },
    {
        "KeyConditionExpression": "pk = :p",
        "FilterExpression": "n > :n",
        "ExpressionAttributeValues": {":p": {"S": "p0"}, ":n": {"N": "2"}},
        "ProjectionExpression": "sk, n",
    },
    {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "p4"}}},
    {
        "IndexName": "by-kind",
        "KeyConditionExpression": "kind = :k",
        "ExpressionAttributeValues": {":k": {"S": "tag"}},
    },
]


def _pages(dynamodb: Any, table: str, query: dict[str, Any], limit: int | None) -> list[Any]:
    """Every page of a query, LastEvaluatedKey included, paged by hand."""
    pages = []
    start: dict[str, Any] | None = None
    while True:
        request = {"TableName": table, **query}
        if limit is not None:
            request["Limit"] = limit
        if start is not None:
            request["ExclusiveStartKey"] = start
        page = answer(dynamodb.query(**request))
        pages.append(page)
        start = page.get("LastEvaluatedKey")
        if start is None:
            return pages


def _query_answers(dynamodb: Any) -> list[Any]:
    answers = [
        _pages(dynamodb, "ranged", query, limit) for query in QUERIES for limit in (None, 1, 3)
    ]
    for number in ("7", "7.0", "8"):  # a number key matches by value: 7.0 is 7
        answers.append(
            _pages(
                dynamodb,
                "hash-only",
                {
                    "KeyConditionExpression": "pk = :p",
                    "ExpressionAttributeValues": {":p": {"N": number}},
                },
                None,
            )
        )
    return answers


def test_a_patched_query_answers_as_moto_does(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.dynamodb.models.table import Table

    dynamodb = boto3.client("dynamodb")
    _table(dynamodb, "ranged", "S", sort_key=True)
    _table(dynamodb, "hash-only", "N", sort_key=False)
    for p in range(5):
        for s, sort in enumerate(["tag#3", "a", "tag#1", "blob", "tag#10", "c", "tag#2"]):
            item = {
                "pk": {"S": f"p{p}"},
                "sk": {"S": sort},
                "n": {"N": str(s)},
                "kind": {"S": "tag" if sort.startswith("tag") else "other"},
                "pad": {"S": "x" * 100 * s},
            }
            dynamodb.put_item(TableName="ranged", Item=item)
    for number in range(5, 10):
        dynamodb.put_item(
            TableName="hash-only", Item={"pk": {"N": str(number)}, "kind": {"S": "tag"}}
        )
    for sort in ("tag#3", "a", "tag#1", "blob", "tag#10", "c", "tag#2"):  # an emptied partition
        dynamodb.delete_item(TableName="ranged", Key={"pk": {"S": "p4"}, "sk": {"S": sort}})
    unpatched = _query_answers(dynamodb)

    read: list[int] = []  # how many items each Query looked at
    all_items = Table.all_items

    def counted(self: Any) -> Any:
        items = all_items(self)
        read.append(len(items))
        return items

    monkeypatch.setattr(Table, "all_items", counted)
    applying(monkeypatch, patch_dynamodb_query, (Table, "query"))
    patched = _query_answers(dynamodb)

    assert patched == unpatched
    assert any(page.get("LastEvaluatedKey") for pages in patched for page in pages)
    assert any(page["Items"] for pages in patched for page in pages)
    # A base-table query read its partition (at most 7 items); an index query the table.
    assert max(read) == 5 * 7 - 7
    assert sorted(set(read)) == [0, 1, 7, 28]


# SQS


def _queue_story(sqs: Any, name: str, *, fifo: bool = False) -> list[Any]:
    """One queue's life: what a client sees of it, message ids and handles left out."""
    attributes = {"FifoQueue": "true", "ContentBasedDeduplication": "true"} if fifo else {}
    suffix = ".fifo" if fifo else ""
    url = sqs.create_queue(QueueName=name + suffix, Attributes=attributes)["QueueUrl"]
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq{suffix}", Attributes=attributes)["QueueUrl"]
    seen: list[Any] = []

    def counts() -> None:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        if not fifo:
            names.append("ApproximateNumberOfMessagesDelayed")
        seen.append(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"])
        seen.append(
            sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"][
                "ApproximateNumberOfMessages"
            ]
        )

    def receive(count: int, visibility: int) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=count,
            VisibilityTimeout=visibility,
            AttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        seen.append([(m["Body"], m["Attributes"]) for m in messages])
        return messages

    for n in range(6):
        extra: dict[str, Any] = {"MessageGroupId": f"g{n % 2}"} if fifo else {}
        if not fifo and n >= 4:
            extra["DelaySeconds"] = 900
        sqs.send_message(QueueUrl=url, MessageBody=f"m{n}", **extra)
    counts()
    first = receive(2, 900)
    counts()
    second = receive(10, 900)
    receive(10, 900)
    counts()
    # Back to visible at once: received again, then (its second receive) redriven.
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=first[0]["ReceiptHandle"], VisibilityTimeout=0
    )
    counts()
    sqs.set_queue_attributes(
        QueueUrl=url,
        Attributes={
            "RedrivePolicy": json.dumps(
                {
                    "deadLetterTargetArn": sqs.get_queue_attributes(
                        QueueUrl=dlq_url, AttributeNames=["QueueArn"]
                    )["Attributes"]["QueueArn"],
                    "maxReceiveCount": 2,
                }
            )
        },
    )
    receive(10, 0)
    counts()
    receive(10, 900)
    counts()
    for message in first[1:] + second:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    counts()
    return seen


def test_patched_queues_count_and_deliver_as_moto_does(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.sqs.models import Queue

    sqs = boto3.client("sqs")
    unpatched = [_queue_story(sqs, "before"), _queue_story(sqs, "before", fifo=True)]
    applying(
        monkeypatch,
        patch_sqs_clock,
        (Queue, "messages"),
        (Queue, "approximate_number_of_messages_delayed"),
        (Queue, "approximate_number_of_messages_not_visible"),
    )
    patched = [_queue_story(sqs, "after"), _queue_story(sqs, "after", fifo=True)]

    assert patched == unpatched
    standard = unpatched[0]
    assert standard[0] == {
        "ApproximateNumberOfMessages": "4",
        "ApproximateNumberOfMessagesNotVisible": "0",
        "ApproximateNumberOfMessagesDelayed": "2",
    }
    assert [body for body, _ in standard[2]] == ["m0", "m1"]
    in_flight = {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "4",
        "ApproximateNumberOfMessagesDelayed": "2",
    }
    assert in_flight in standard
    assert ("m0", {"ApproximateReceiveCount": "2"}) in [
        m for step in standard for m in step if isinstance(step, list)
    ]
    assert standard[-1] == "1"  # m0, redriven to the dead-letter queue


# IAM: a request's account


def test_a_request_finds_its_account_as_moto_does(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.iam import models

    iam = boto3.client("iam")
    iam.create_user(UserName="someone")
    user_key = iam.create_access_key(UserName="someone")["AccessKey"]["AccessKeyId"]
    gone_key = iam.create_access_key(UserName="someone")["AccessKey"]["AccessKeyId"]
    iam.delete_access_key(UserName="someone", AccessKeyId=gone_key)
    credentials = boto3.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{SOURCE_ACCOUNT}:role/reader", RoleSessionName="test"
    )["Credentials"]
    china = boto3.client("sts", region_name="cn-north-1").assume_role(
        RoleArn=f"arn:aws-cn:iam::{SOURCE_ACCOUNT[::-1]}:role/reader", RoleSessionName="test"
    )["Credentials"]
    keys = [user_key, gone_key, credentials["AccessKeyId"], china["AccessKeyId"], "testing"]

    unpatched = [models.get_account_id_from(key) for key in keys]
    applying(monkeypatch, patch_iam_account_lookup, (models, "get_account_id_from"))
    patched = [models.get_account_id_from(key) for key in keys]

    assert patched == unpatched
    assert unpatched[2:4] == [SOURCE_ACCOUNT, SOURCE_ACCOUNT[::-1]]
    source = boto3.client(
        "ecr",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )
    source.create_repository(repositoryName="mine")
    assert [r["registryId"] for r in source.describe_repositories()["repositories"]] == [
        SOURCE_ACCOUNT
    ]


# The bench's set-up straight into moto's ECR


def _without_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if not isinstance(v, datetime)}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def _registry(ecr: Any) -> list[Any]:
    repositories = ecr.describe_repositories()["repositories"]
    return [
        (
            _without_times(repository),
            _without_times(
                ecr.describe_images(repositoryName=repository["repositoryName"])["imageDetails"]
            ),
        )
        for repository in repositories
    ]


def _assumed_ecr(region: str) -> Any:
    credentials = boto3.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{SOURCE_ACCOUNT}:role/reader", RoleSessionName="test"
    )["Credentials"]
    return boto3.client(
        "ecr",
        region_name=region,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def test_the_bench_populates_ecr_as_the_api_would(credentials: None) -> None:
    regions = ["us-east-1", "eu-west-1"]
    with mock_aws():
        for region in regions:
            ecr = _assumed_ecr(region)
            for n in range(2):
                name = f"team{n}/app"
                manifest = config_only_manifest(f"{SOURCE_ACCOUNT}/{region}/{name}")
                ecr.create_repository(repositoryName=name)
                ecr.put_image(
                    repositoryName=name,
                    imageManifest=manifest.decode(),
                    imageManifestMediaType=OCI_MANIFEST,
                    imageTag="v1",
                    imageDigest="sha256:" + hashlib.sha256(manifest).hexdigest(),
                )
        through_the_api = [_registry(_assumed_ecr(region)) for region in regions]

    with mock_aws():  # a fresh moto, filled straight
        assert populate([SOURCE_ACCOUNT], regions, 2) == 4
        direct = [_registry(_assumed_ecr(region)) for region in regions]

    assert direct == through_the_api
    assert sum(len(details) for registry in direct for _, details in registry) == 4
    for region, registry in zip(regions, direct, strict=True):
        for repository, details in registry:
            name = repository["repositoryName"]
            manifest = config_only_manifest(f"{SOURCE_ACCOUNT}/{region}/{name}")
            assert [d["imageDigest"] for d in details] == [
                "sha256:" + hashlib.sha256(manifest).hexdigest()
            ]


# DynamoDB requests, one at a time


def test_dynamodb_requests_are_answered_one_at_a_time(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tests/functional/conftest.py applies the patch for the session, as the devkit's server
    does. Without it, moto's TransactWriteItems copies a table to roll it back while other
    threads write: in rounds of 300 puts beside failing transactions, about half broke the
    copy ("dictionary changed size during iteration") or had a rollback undo committed
    puts (276 of 500 items left, once). Here each put is slowed inside moto, so unpatched
    requests from four threads would be seen overlapping."""
    from moto.dynamodb.models import DynamoDBBackend

    patch_dynamodb_atomic()  # applied once: a second call changes nothing
    dynamodb = boto3.client("dynamodb")
    _table(dynamodb, "atomic", "S", sort_key=False)
    answering = 0
    most_at_once = 0
    count = threading.Lock()
    put_item = DynamoDBBackend.put_item

    def slow_put_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal answering, most_at_once
        with count:
            answering += 1
            most_at_once = max(most_at_once, answering)
        try:
            time.sleep(0.02)
            return put_item(self, *args, **kwargs)
        finally:
            with count:
                answering -= 1

    monkeypatch.setattr(DynamoDBBackend, "put_item", slow_put_item)

    def put(thread: int) -> None:
        client = boto3.client("dynamodb")
        for n in range(5):
            client.put_item(TableName="atomic", Item={"pk": {"S": f"{thread}-{n}"}})

    threads = [threading.Thread(target=put, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most_at_once == 1
    assert dynamodb.scan(TableName="atomic", Select="COUNT")["Count"] == 20
