"""handlers/replicate.py under moto's mock_aws, with an in-memory source registry."""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from devkit.events import sqs_record
from ecr_backup.composition import Adapters, AwsServices
from ecr_backup.errors import InvalidInputError
from ecr_backup.model import Action
from ecr_backup.oci import mediatypes
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Manifest
from ecr_backup.settings import DEADLINE_RESERVE_SECONDS, MiB, Settings
from ecr_backup.storage.index import DynamoIndex
from tests import ecr_samples
from tests.ecr_samples import referrer_action, usable
from tests.helpers import (
    ACCOUNT,
    BUCKET,
    REGION,
    TABLE,
    FakeRegistry,
    descriptor,
    ecr_event,
    reset_connections,
)

HANDLER = Path(__file__).resolve().parents[3] / "handlers" / "replicate.py"
REPO = "team/app"
PREFIX = "backup/"
SETTINGS_ENV = {
    "ECR_BACKUP_BUCKET": BUCKET,
    "ECR_BACKUP_TABLE": TABLE,
    "ECR_BACKUP_PREFIX": PREFIX,
}


@pytest.fixture(scope="module")
def replicate() -> Iterator[ModuleType]:
    """The handler module, imported the way Lambda does: from its own directory, with no
    ECR_BACKUP_* settings in the environment (it must not read them at import)."""
    saved = dict(os.environ)
    # Importing the handler gives the "ecr_backup" logger Powertools' handler and stops
    # its propagation (right in Lambda); undo that for the rest of the test session.
    library_logger = logging.getLogger("ecr_backup")
    logger_state = (library_logger.handlers[:], library_logger.propagate, library_logger.level)
    for name in list(os.environ):
        if name.startswith("ECR_BACKUP_"):
            del os.environ[name]
    os.environ["POWERTOOLS_SERVICE_NAME"] = "ecr-backup"
    os.environ["POWERTOOLS_METRICS_NAMESPACE"] = "EcrBackupTest"
    try:
        spec = importlib.util.spec_from_file_location("replicate", HANDLER)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["replicate"] = module
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("replicate", None)
        os.environ.clear()
        os.environ.update(saved)
        library_logger.handlers[:], library_logger.propagate = logger_state[:2]
        library_logger.setLevel(logger_state[2])


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def handler(
    replicate: ModuleType,
    registry: FakeRegistry,
    s3: Any,
    index: DynamoIndex,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Any]:
    """The Lambda handler against moto's S3 and DynamoDB, reading from `registry`."""
    for name, value in SETTINGS_ENV.items():
        monkeypatch.setenv(name, value)
    asked: list[tuple[str, str]] = []

    def fake_registry(account: str, region: str) -> FakeRegistry:
        asked.append((account, region))
        return registry

    @lru_cache(maxsize=1)
    def services_for(settings: Settings) -> AwsServices:
        """The handler's own, with the fake source passed in as an adapter."""
        return AwsServices(settings, adapters=Adapters(sources=fake_registry))

    monkeypatch.setattr(replicate, "services_for", services_for)
    registry.asked = asked  # type: ignore[attr-defined]
    yield replicate.handler
    replicate.services_for.cache_clear()


def captured_logs(module: ModuleType) -> Iterator[io.StringIO]:
    """A handler module's JSON log lines (its Powertools handler is shared with
    ecr_backup.*), for as long as the generator is suspended."""
    stream = io.StringIO()
    handler = module.logger.registered_handler
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


@pytest.fixture
def logs(replicate: ModuleType) -> Iterator[io.StringIO]:
    yield from captured_logs(replicate)


@dataclass
class Context:
    function_name: str = "ecr-backup-replicate"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:replicate"
    aws_request_id: str = "request-1"
    remaining_ms: int = 900_000  # the function's 15-minute maximum

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def batch(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def blob_keys(s3: Any) -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{PREFIX}blobs/")
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def emitted_metrics(output: str) -> dict[str, list[float]]:
    """Metric values from the CloudWatch EMF lines Powertools prints."""
    values: dict[str, list[float]] = {}
    for line in output.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "EcrBackupTest"
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                values.setdefault(metric["Name"], []).extend(
                    value if isinstance(value, list) else [value]
                )
    return values


def push_image(registry: FakeRegistry, *sizes: int, tag: str = "v1") -> Manifest:
    return registry.image(REPO, [os.urandom(size) for size in sizes], tag=tag)


def test_push_is_backed_up_with_metrics_and_correlation_id(
    handler: Any,
    registry: FakeRegistry,
    s3: Any,
    index: DynamoIndex,
    logs: io.StringIO,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = push_image(registry, 1000, 3000)
    event = ecr_event(image.digest, event_id="push-event-1")

    answer = handler(batch(sqs_record(event)), Context())

    assert answer == {"batchItemFailures": []}
    expected = {
        f"{PREFIX}blobs/sha256/{Digest.of(b'{}').hex}",
        f"{PREFIX}blobs/sha256/{image.digest.hex}",
    }
    expected |= {f"{PREFIX}blobs/sha256/{Digest.of(d).hex}" for d in registry.blobs.values()}
    assert blob_keys(s3) == expected
    assert index.manifest(image.digest) is not None
    (tag,) = index.tags(REPO)
    assert (tag.tag, tag.digest, tag.action) == ("v1", image.digest, Action.PUSH)
    # The event's own account and region choose the source registry.
    assert registry.asked == [(ACCOUNT, REGION)]  # type: ignore[attr-defined]

    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics["BlobsCopied"] == [3]  # config + two layers
    assert metrics["BlobsSkipped"] == [0]
    assert metrics["BytesCopied"] == [2 + 1000 + 3000]
    (latency,) = metrics["PushToDurableLatency"]
    assert latency > 0  # the event's time is in the past

    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    backed_up = [line for line in lines if line["message"] == "image backed up"]
    assert len(backed_up) == 1
    assert backed_up[0]["correlation_id"] == "push-event-1"
    assert backed_up[0]["digest"] == str(image.digest)


def test_each_source_registry_is_noted_once_per_process(
    handler: Any, replicate: ModuleType, registry: FakeRegistry, index: DynamoIndex
) -> None:
    # For ReconcileAccounts=events and `ecr-backup coverage`: one write per registry and
    # process, whatever the number of events.
    first, second = push_image(registry, 100), push_image(registry, 200, tag="v2")
    log = replicate.services_for(Settings.load(os.environ)).source_log
    writes: list[str] = []
    log._db.meta.events.register(
        "provide-client-params.dynamodb.UpdateItem",
        lambda params, **_: writes.append(params["Key"]["pk"]["S"]),
    )
    for image, tag in ((first, "v1"), (second, "v2")):
        event = ecr_event(image.digest, tag=tag)
        assert handler(batch(sqs_record(event)), Context()) == {"batchItemFailures": []}
    assert writes.count("SOURCE") == 1
    (seen,) = log.seen()
    assert (seen.account, seen.region) == (ACCOUNT, REGION)


def test_second_push_sharing_layers_copies_only_the_new_one(
    handler: Any, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    base = os.urandom(2000)
    first = registry.image(REPO, [base, os.urandom(100)], tag="v1")
    second = registry.image(REPO, [base, os.urandom(200)], tag="v2")
    handler(batch(sqs_record(ecr_event(first.digest, tag="v1"))), Context())
    capsys.readouterr()

    assert handler(batch(sqs_record(ecr_event(second.digest, tag="v2"))), Context()) == {
        "batchItemFailures": []
    }
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics["BlobsCopied"] == [1]
    assert metrics["BlobsSkipped"] == [2]  # the shared layer and the "{}" config
    assert metrics["BytesCopied"] == [200]


def test_delete_is_recorded_and_deletes_nothing(
    handler: Any, registry: FakeRegistry, s3: Any, index: DynamoIndex
) -> None:
    image = push_image(registry, 500)
    handler(batch(sqs_record(ecr_event(image.digest))), Context())
    before = blob_keys(s3)
    gets_before = sum(registry.blob_gets.values())

    delete = ecr_event(
        image.digest, action="DELETE", event_id="delete-event-1", time="2026-05-02T10:00:00Z"
    )
    assert handler(batch(sqs_record(delete)), Context()) == {"batchItemFailures": []}

    assert blob_keys(s3) == before
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=PREFIX)
    assert not versions.get("DeleteMarkers")
    assert sum(registry.blob_gets.values()) == gets_before  # the registry was not read
    (tag,) = index.tags(REPO)
    assert (tag.digest, tag.action) == (image.digest, Action.DELETE)
    assert [e.action for e in index.history(REPO, "v1")] == [Action.PUSH, Action.DELETE]
    records = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}refs/")["Contents"]
    assert any("_DELETE_v1_" in r["Key"] for r in records)
    assert index.manifest(image.digest) is not None  # the backup still holds the image


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(
            {
                **ecr_event("sha256:" + "ab" * 32),
                "source": "aws.s3",
                "detail-type": "Object Created",
            },
            id="other-service",
        ),
        pytest.param(ecr_event("sha256:" + "ab" * 32, result="FAILURE"), id="failed-push"),
        pytest.param(ecr_event("sha256:" + "ab" * 32, action="REPLICATE"), id="other-action"),
    ],
)
def test_unrelated_events_are_acknowledged_without_work(
    handler: Any,
    registry: FakeRegistry,
    s3: Any,
    index: DynamoIndex,
    logs: io.StringIO,
    event: dict[str, Any],
) -> None:
    assert handler(batch(sqs_record(event)), Context()) == {"batchItemFailures": []}
    assert registry.manifest_gets == 0
    assert blob_keys(s3) == set()
    assert index.repositories() == []
    assert "event ignored" in logs.getvalue()


def test_malformed_records_fail_alone(
    handler: Any,
    registry: FakeRegistry,
    index: DynamoIndex,
    logs: io.StringIO,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = push_image(registry, 300, tag="v1")
    last = push_image(registry, 400, tag="v2")
    records = [
        sqs_record(ecr_event(first.digest, tag="v1"), "good-1"),
        sqs_record("this is not JSON", "not-json"),
        sqs_record(ecr_event("md5:0123456789abcdef", tag="v9", event_id="e-md5"), "bad-digest"),
        sqs_record({"hello": "world"}, "not-an-event"),
        sqs_record(
            ecr_event("sha256:" + "cd" * 32, tag="gone", event_id="e-gone"), "unknown-image"
        ),
        sqs_record(ecr_event(last.digest, tag="v2"), "good-2"),
    ]

    answer = handler(batch(*records), Context())

    assert answer == {
        "batchItemFailures": [
            {"itemIdentifier": "not-json"},
            {"itemIdentifier": "bad-digest"},
            {"itemIdentifier": "not-an-event"},
            {"itemIdentifier": "unknown-image"},
        ]
    }
    assert index.manifest(first.digest) is not None
    assert index.manifest(last.digest) is not None
    assert {t.tag for t in index.tags(REPO)} == {"v1", "v2"}
    # Each failure is logged with its message id and traceback, for the DLQ investigation;
    # the correlation id is the failing event's, never a neighbour's.
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    failed = {
        line["message_id"]: line for line in lines if line["message"].startswith("record failed")
    }
    assert sorted(failed) == ["bad-digest", "not-an-event", "not-json", "unknown-image"]
    assert all(line["level"] == "WARNING" and line["exception"] for line in failed.values())
    assert failed["not-json"].get("correlation_id") is None  # good-1's id was set before it
    assert failed["bad-digest"]["correlation_id"] == "e-md5"
    assert failed["not-an-event"].get("correlation_id") is None  # follows bad-digest
    assert failed["unknown-image"]["correlation_id"] == "e-gone"
    assert "ManifestNotFoundError" in failed["unknown-image"]["exception"]
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics["RecordsFailed"] == [4]
    assert metrics["BlobsCopied"] == [2, 1]  # the second image shares the "{}" config


def test_a_batch_that_fails_entirely_is_reported_not_raised(handler: Any) -> None:
    # Raising would count as a function error; per-record failures go to the DLQ alarm.
    answer = handler(batch(sqs_record("{", "a"), sqs_record("[]", "b")), Context())
    assert answer == {"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "b"}]}


def multi_arch(registry: FakeRegistry) -> tuple[Manifest, list[Manifest]]:
    children = [registry.image(REPO, [os.urandom(700 + i)]) for i in range(2)]
    index = registry.add_manifest(
        REPO,
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_INDEX,
            "manifests": [
                descriptor(
                    mediatypes.OCI_MANIFEST,
                    child.raw,
                    platform={"os": "linux", "architecture": arch},
                )
                for child, arch in zip(children, ("amd64", "arm64"), strict=True)
            ],
        },
        tag="multi",
    )
    return index, children


@pytest.mark.parametrize("order", [(0, 1, 2), (1, 0, 2), (2, 1, 0)], ids=str)
def test_multi_arch_push_ends_complete_in_any_event_order(
    handler: Any,
    registry: FakeRegistry,
    s3: Any,
    index: DynamoIndex,
    order: tuple[int, int, int],
) -> None:
    image_index, children = multi_arch(registry)
    events = [
        ecr_event(children[0].digest, tag=None),
        ecr_event(children[1].digest, tag=None),
        ecr_event(image_index.digest, tag="multi"),
    ]
    answer = handler(batch(*(sqs_record(events[i]) for i in order)), Context())

    assert answer == {"batchItemFailures": []}
    manifests = [image_index, *children]
    expected = {f"{PREFIX}blobs/sha256/{d.hex}" for d in registry.blobs}
    expected |= {f"{PREFIX}blobs/sha256/{m.digest.hex}" for m in manifests}
    assert blob_keys(s3) == expected
    for manifest in manifests:
        assert index.manifest(manifest.digest) is not None
    (tag,) = index.tags(REPO)
    assert (tag.tag, tag.digest) == ("multi", image_index.digest)
    assert sum(registry.blob_gets.values()) == len(registry.blobs)  # each blob fetched once


@pytest.mark.filterwarnings("ignore:No application metrics")
def test_settings_are_read_per_invocation_and_clients_reused(
    handler: Any,
    replicate: ModuleType,
    registry: FakeRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = push_image(registry, 10)
    handler(batch(sqs_record(ecr_event(image.digest))), Context())
    handler(batch(sqs_record(ecr_event(image.digest))), Context())
    info = replicate.services_for.cache_info()
    assert (info.misses, info.hits) == (1, 1)  # one AwsServices for the warm process

    monkeypatch.delenv("ECR_BACKUP_BUCKET")
    with pytest.raises(InvalidInputError, match="ECR_BACKUP_BUCKET"):
        handler(batch(sqs_record(ecr_event(image.digest))), Context())


def log_lines(logs: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in logs.getvalue().splitlines()]


def test_copy_too_long_for_the_remaining_time_is_not_started_and_resumes_later(
    handler: Any,
    registry: FakeRegistry,
    s3: Any,
    index: DynamoIndex,
    logs: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # At 0.1 MiB/s the 8 MiB layer needs 80 s; the context leaves 40 s after the reserve,
    # ample for the small copies even on a loaded machine.
    monkeypatch.setenv("ECR_BACKUP_THROUGHPUT_FLOOR_MIBPS", "0.1")
    first = push_image(registry, 300, tag="v1")
    small, big = os.urandom(500), os.urandom(8 * MiB)
    long_one = registry.image(REPO, [small, big], tag="v2")
    last = push_image(registry, 400, tag="v3")
    records = [
        sqs_record(ecr_event(first.digest, tag="v1"), "first"),
        sqs_record(ecr_event(long_one.digest, tag="v2", event_id="e-long"), "long"),
        sqs_record(ecr_event(last.digest, tag="v3"), "last"),
    ]
    short = Context(remaining_ms=int((DEADLINE_RESERVE_SECONDS + 40) * 1000))

    answer = handler(batch(*records), short)

    assert answer == {"batchItemFailures": [{"itemIdentifier": "long"}]}
    assert index.manifest(first.digest) is not None
    assert index.manifest(last.digest) is not None
    assert index.manifest(long_one.digest) is None  # manifest last: not complete
    assert registry.blob_gets[Digest.of(big)] == 0  # the long copy was never started
    assert f"{PREFIX}blobs/sha256/{Digest.of(small).hex}" in blob_keys(s3)
    deferred = [line for line in log_lines(logs) if line.get("message_id") == "long"]
    assert len(deferred) == 1  # one line, no traceback: nothing went wrong
    assert deferred[0]["message"].startswith("record deferred")
    assert "exception" not in deferred[0]
    assert str(Digest.of(big)) in deferred[0]["reason"]

    # SQS redelivers it to an invocation with time: only the missing layer is copied.
    again = handler(batch(sqs_record(ecr_event(long_one.digest, tag="v2"), "long")), Context())

    assert again == {"batchItemFailures": []}
    assert index.manifest(long_one.digest) is not None
    assert registry.blob_gets[Digest.of(small)] == 1
    assert registry.blob_gets[Digest.of(big)] == 1


def test_past_the_reserve_no_image_is_started_but_deletions_are_recorded(
    handler: Any, registry: FakeRegistry, index: DynamoIndex
) -> None:
    image = push_image(registry, 300, tag="v1")
    push = sqs_record(ecr_event(image.digest, tag="v1"), "push")
    delete = sqs_record(
        ecr_event(image.digest, action="DELETE", time="2026-05-02T10:00:00Z"), "delete"
    )
    almost_over = Context(remaining_ms=int(DEADLINE_RESERVE_SECONDS * 1000) - 1)

    answer = handler(batch(push, delete), almost_over)

    assert answer == {"batchItemFailures": [{"itemIdentifier": "push"}]}
    assert registry.manifest_gets == 0
    assert [e.action for e in index.history(REPO, "v1")] == [Action.DELETE]


HOSTILE_BODIES = {
    "deep": '{"detail": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "long-number": '{"id": ' + "7" * 5000 + "}",
    "not-a-list": "[1, 2]",
}


def test_hostile_records_fail_alone_with_one_line_each(
    handler: Any, registry: FakeRegistry, index: DynamoIndex, logs: io.StringIO
) -> None:
    first = push_image(registry, 300, tag="v1")
    last = push_image(registry, 400, tag="v2")
    records = [
        sqs_record(ecr_event(first.digest, tag="v1"), "good-1"),
        *(sqs_record(body, name) for name, body in HOSTILE_BODIES.items()),
        sqs_record(ecr_event(last.digest, tag="v2"), "good-2"),
    ]

    answer = handler(batch(*records), Context())

    assert answer == {"batchItemFailures": [{"itemIdentifier": n} for n in HOSTILE_BODIES]}
    assert index.manifest(first.digest) is not None
    assert index.manifest(last.digest) is not None
    for name in HOSTILE_BODIES:
        (line,) = [line for line in log_lines(logs) if line.get("message_id") == name]
        assert line["level"] == "WARNING"
        assert "InvalidInputError" in line["exception_name"]


@pytest.mark.parametrize(
    ("service", "operation"),
    [("s3", "PutObject"), ("dynamodb", "TransactWriteItems")],  # the manifest, its completion
    ids=["s3", "dynamodb"],
)
def test_a_connection_reset_fails_only_the_record_it_hit(
    handler: Any,
    replicate: ModuleType,
    registry: FakeRegistry,
    index: DynamoIndex,
    logs: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
    service: str,
    operation: str,
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # botocore's retries would only slow this
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    images = [push_image(registry, 300 + n, tag=f"v{n}") for n in range(3)]
    hit = images[1]
    # The clients the handler will use (same settings: the cached services).
    refused = reset_connections(
        replicate.services_for(Settings.load(os.environ)), service, operation, hit.digest.hex
    )
    records = [
        sqs_record(ecr_event(image.digest, tag=f"v{n}"), f"record-{n}")
        for n, image in enumerate(images)
    ]

    answer = handler(batch(*records), Context())

    assert refused  # the fault did hit
    assert answer == {"batchItemFailures": [{"itemIdentifier": "record-1"}]}
    assert index.manifest(images[0].digest) is not None
    assert index.manifest(images[2].digest) is not None
    assert index.manifest(hit.digest) is None
    (line,) = [line for line in log_lines(logs) if line.get("message_id") == "record-1"]
    assert line["message"].startswith("record failed")


def test_cold_import_leaves_the_xray_sdk_and_botocore_clients_out() -> None:
    # The cold-start budget (bench/import_bench.py): no X-Ray SDK at all, and botocore's
    # client machinery (about 150 ms) only when the first invocation builds its clients.
    probe = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import replicate; "
        "print(' '.join(sorted(sys.modules)))"
    )
    run = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            probe,
            str(HANDLER.parent),
            str(HANDLER.parents[1] / "shared"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(run.stdout.split())
    assert "replicate" in loaded
    assert not {m for m in loaded if m.startswith("aws_xray_sdk")}
    assert not {"boto3", "botocore.config", "botocore.session"} & loaded


# -- every ECR event kind, from AWS's samples (tests/ecr_samples.py) ------------------------


def at_home(event: dict[str, Any]) -> dict[str, Any]:
    """A sample moved to the account and region the test's registry stands for."""
    return {**event, "account": ACCOUNT, "region": REGION}


def test_a_referrer_pushed_after_its_subject_is_backed_up_and_linked(
    handler: Any, registry: FakeRegistry, index: DynamoIndex
) -> None:
    image = push_image(registry, 300)
    handler(batch(sqs_record(ecr_event(image.digest))), Context())
    registry.add_blob(b"{}")
    registry.add_blob(b"signature")
    signature = registry.add_manifest(
        REPO,
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
            "config": descriptor(mediatypes.OCI_EMPTY, b"{}"),
            "layers": [descriptor("application/octet-stream", b"signature")],
            "subject": {
                "mediaType": image.media_type,
                "digest": str(image.digest),
                "size": len(image.raw),
            },
        },
    )
    referrer = at_home(referrer_action("PUSH", signature.digest, REPO))

    assert handler(batch(sqs_record(referrer)), Context()) == {"batchItemFailures": []}

    assert [r.digest for r in index.referrers(image.digest)] == [signature.digest]
    deletion = at_home(referrer_action("DELETE", signature.digest, REPO))
    assert handler(batch(sqs_record(deletion)), Context()) == {"batchItemFailures": []}
    assert index.manifest(signature.digest) is not None  # recorded, nothing deleted


def test_a_replicated_image_already_held_reads_nothing(
    handler: Any,
    registry: FakeRegistry,
    capsys: pytest.CaptureFixture[str],
    logs: io.StringIO,
) -> None:
    image = push_image(registry, 400)
    handler(batch(sqs_record(ecr_event(image.digest))), Context())
    gets = (registry.manifest_gets, sum(registry.blob_gets.values()))
    capsys.readouterr()
    replicated = at_home(usable(ecr_samples.REPLICATION, image.digest, repository=REPO))

    assert handler(batch(sqs_record(replicated)), Context()) == {"batchItemFailures": []}

    assert (registry.manifest_gets, sum(registry.blob_gets.values())) == gets
    assert emitted_metrics(capsys.readouterr().out)["BlobsCopied"] == [0]
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    (logged,) = [line for line in lines if line.get("kind") == "replication"]
    assert logged["origin"] == "123456789012/us-west-2"  # the sample's source account/region


def test_pull_through_cache_follows_its_setting(
    handler: Any, registry: FakeRegistry, index: DynamoIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = registry.image("docker-hub/alpine", [b"alpine"], tag="3.17.2")
    event = at_home(usable(ecr_samples.PULL_THROUGH_CACHE, cached.digest))
    monkeypatch.setenv("ECR_BACKUP_PULL_THROUGH_CACHE", "false")

    assert handler(batch(sqs_record(event)), Context()) == {"batchItemFailures": []}
    assert index.manifest(cached.digest) is None and registry.manifest_gets == 0

    monkeypatch.setenv("ECR_BACKUP_PULL_THROUGH_CACHE", "true")
    assert handler(batch(sqs_record(event)), Context()) == {"batchItemFailures": []}
    assert index.manifest(cached.digest) is not None


def test_archive_and_restore_are_recorded_and_a_missing_restored_image_backed_up(
    handler: Any, registry: FakeRegistry, s3: Any, index: DynamoIndex
) -> None:
    image = registry.image("ubuntu", [b"jammy"])
    archive = at_home(usable(ecr_samples.IMAGE_ARCHIVE, image.digest))
    restore = at_home(usable(ecr_samples.IMAGE_RESTORE, image.digest))

    assert handler(batch(sqs_record(archive)), Context()) == {"batchItemFailures": []}
    assert index.manifest(image.digest) is None and registry.manifest_gets == 0
    assert handler(batch(sqs_record(restore)), Context()) == {"batchItemFailures": []}

    assert index.manifest(image.digest) is not None
    keys = [
        o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}refs/")["Contents"]
    ]
    assert sum("/_storage/" in k and "_ARCHIVE_" in k for k in keys) == 1
    assert sum("/_storage/" in k and "_STANDARD_" in k for k in keys) == 1


def test_an_unknown_storage_class_fails_its_record_alone(
    handler: Any, registry: FakeRegistry
) -> None:
    image = push_image(registry, 100)
    odd = at_home(usable(ecr_samples.IMAGE_ARCHIVE, image.digest, target_storage_class="COLD"))
    fine = sqs_record(ecr_event(image.digest))

    answer = handler(batch(sqs_record(odd, "odd"), fine), Context())

    assert answer == {"batchItemFailures": [{"itemIdentifier": "odd"}]}
