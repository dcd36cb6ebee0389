"""`ecr-backup handle-event` under moto: hostile input and per-record failures in a batch."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from devkit.events import sqs_record
from ecr_backup.cli import backup as backup_cli
from ecr_backup.cli import common as cli_common
from ecr_backup.cli import main
from ecr_backup.composition import Adapters, AwsServices
from ecr_backup.errors import ExitCode
from ecr_backup.storage.index import DynamoIndex
from tests import ecr_samples
from tests.ecr_samples import usable
from tests.helpers import BUCKET, TABLE, FakeRegistry, ecr_event, reset_connections

REPO = "team/app"


@pytest.fixture
def registry(s3: Any, index: DynamoIndex, monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    """The source registry every event's account and region resolves to."""
    monkeypatch.setenv("ECR_BACKUP_BUCKET", BUCKET)
    monkeypatch.setenv("ECR_BACKUP_TABLE", TABLE)
    return FakeRegistry()


def handle_event(
    capsys: pytest.CaptureFixture[str],
    path: Path,
    *args: str,
    source: FakeRegistry | None = None,
) -> tuple[int, str, str]:
    """The command, every event's account and region resolving to `source`."""
    adapters = Adapters(sources=lambda account, region: source) if source else None
    code = main(["handle-event", str(path), *args], adapters=adapters)
    out, err = capsys.readouterr()
    return code, out, err


def stored_objects(s3: Any) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


HOSTILE_FILES = {
    "deep": b'{"Records": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "long-number": b'{"id": ' + b"7" * 5000 + b"}",
    "not-utf-8": b'{"id": "caf\xe9"}',
    "not-json": b"{",
}


@pytest.mark.parametrize("content", HOSTILE_FILES.values(), ids=HOSTILE_FILES.keys())
def test_hostile_file_is_one_line_and_the_usage_exit_code(
    registry: FakeRegistry,
    s3: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
) -> None:
    path = tmp_path / "event.json"
    path.write_bytes(content)

    code, out, err = handle_event(capsys, path)

    assert code == ExitCode.USAGE
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith(f"ecr-backup: error: {path}")
    assert stored_objects(s3) == []
    assert registry.manifest_gets == 0


def test_missing_file_is_one_line(
    registry: FakeRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = handle_event(capsys, tmp_path / "absent.json")
    assert code == ExitCode.USAGE
    assert err.splitlines() == [
        f"ecr-backup: error: cannot read {tmp_path}/absent.json: No such file or directory"
    ]


def write_batch(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"Records": records}))
    return path


def test_each_record_of_a_batch_is_judged_alone(
    registry: FakeRegistry,
    index: DynamoIndex,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = registry.image(REPO, [os.urandom(300)], tag="v1")
    last = registry.image(REPO, [os.urandom(400)], tag="v2")
    bad = {
        "deep": '{"detail": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "long-number": '{"id": ' + "7" * 5000 + "}",
        "not-json": "{",
    }
    records = [
        sqs_record(ecr_event(first.digest, tag="v1"), "good-1"),
        *(sqs_record(body, name) for name, body in bad.items()),
        {"messageId": "no-body"},
        sqs_record(ecr_event(last.digest, tag="v2"), "good-2"),
    ]

    code, out, err = handle_event(
        capsys, write_batch(tmp_path / "batch.json", records), "--json", source=registry
    )

    assert code == ExitCode.PROBLEMS
    answer = json.loads(out)
    failed = [*bad, "no-body"]
    assert answer["batchItemFailures"] == [{"itemIdentifier": name} for name in failed]
    assert [o["digest"] for o in answer["outcomes"]] == [str(first.digest), str(last.digest)]
    assert index.manifest(first.digest) is not None
    assert index.manifest(last.digest) is not None
    lines = err.splitlines()
    assert [line.split()[2] for line in lines] == failed  # "ecr-backup: record NAME failed"
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("service", "operation"),
    [("s3", "PutObject"), ("dynamodb", "TransactWriteItems")],
    ids=["s3", "dynamodb"],
)
def test_a_connection_reset_fails_only_the_record_it_hit(
    registry: FakeRegistry,
    index: DynamoIndex,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    service: str,
    operation: str,
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # botocore's retries would only slow this
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    images = [registry.image(REPO, [os.urandom(300 + n)], tag=f"v{n}") for n in range(3)]
    hit = images[1]
    services_from = cli_common.services_from
    faults: list[list[str]] = []

    def faulty_services(args: Any) -> AwsServices:
        services = services_from(args)
        faults.append(reset_connections(services, service, operation, hit.digest.hex))
        return services

    monkeypatch.setattr(backup_cli, "services_from", faulty_services)
    records = [
        sqs_record(ecr_event(image.digest, tag=f"v{n}"), f"record-{n}")
        for n, image in enumerate(images)
    ]

    code, _, err = handle_event(
        capsys, write_batch(tmp_path / "batch.json", records), source=registry
    )

    (refused,) = faults
    assert refused  # the fault did hit
    assert code == ExitCode.PROBLEMS
    assert err.splitlines()[0].startswith("ecr-backup: record record-1 failed: ")
    assert len(err.splitlines()) == 1
    assert index.manifest(images[0].digest) is not None
    assert index.manifest(images[2].digest) is not None
    assert index.manifest(hit.digest) is None


def test_archive_and_pull_through_cache_events_say_what_was_done(
    registry: FakeRegistry,
    s3: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = registry.image("docker-hub/alpine", [os.urandom(100)], tag="3.17.2")
    archive = tmp_path / "archive.json"
    archive.write_text(json.dumps(usable(ecr_samples.IMAGE_ARCHIVE, image.digest)))
    cached = tmp_path / "cached.json"
    cached.write_text(json.dumps(usable(ecr_samples.PULL_THROUGH_CACHE, image.digest)))

    code, out, _ = handle_event(capsys, archive)
    assert code == ExitCode.OK
    assert out.splitlines() == [
        f"ubuntu@{image.digest}: storage class ARCHIVE recorded (nothing copied)"
    ]

    monkeypatch.setenv("ECR_BACKUP_PULL_THROUGH_CACHE", "false")
    code, out, _ = handle_event(capsys, cached, "--json")
    assert code == ExitCode.OK
    answer = json.loads(out)
    assert (answer["action"], answer["kind"]) == ("ignored", "pull-through-cache")
    assert registry.manifest_gets == 0
