"""handlers/maintain.py and handlers/prune.py under moto's mock_aws, on a real backup."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from ecr_backup.composition import services_for
from ecr_backup.status.runs import last_drill, last_maintain, last_prune
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex
from ecr_backup.storage.runs import RunLog
from tests.functional.handlers.test_replicate import Context
from tests.helpers import BUCKET, TABLE, Backup

HANDLERS = Path(__file__).resolve().parents[3] / "handlers"


def load(name: str) -> Iterator[ModuleType]:
    """A handler module imported as Lambda does, the library's logging restored after."""
    saved = dict(os.environ)
    library_logger = logging.getLogger("ecr_backup")
    logger_state = (library_logger.handlers[:], library_logger.propagate, library_logger.level)
    os.environ["POWERTOOLS_SERVICE_NAME"] = "ecr-backup"
    os.environ["POWERTOOLS_METRICS_NAMESPACE"] = "EcrBackupTest"
    try:
        spec = importlib.util.spec_from_file_location(name, HANDLERS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)
        os.environ.clear()
        os.environ.update(saved)
        library_logger.handlers[:], library_logger.propagate = logger_state[:2]
        library_logger.setLevel(logger_state[2])


@pytest.fixture(scope="module")
def maintain_module() -> Iterator[ModuleType]:
    yield from load("maintain")


@pytest.fixture(scope="module")
def prune_module() -> Iterator[ModuleType]:
    yield from load("prune")


# The settings that point a handler at the `store` and `index` fixtures' bucket and table.
BACKUP_ENV = {
    "ECR_BACKUP_BUCKET": BUCKET,
    "ECR_BACKUP_TABLE": TABLE,
    "ECR_BACKUP_PREFIX": "backup/",
}


@pytest.fixture
def backed_up(
    store: S3BlobStore, index: DynamoIndex, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Backup]:
    for name, value in BACKUP_ENV.items():
        monkeypatch.setenv(name, value)
    backup = Backup(store, index)
    image = backup.image("app")
    backup.push("app", image, "v1", backup.clock())
    services_for.cache_clear()  # the handlers' services are kept per process: this moto's
    yield backup
    services_for.cache_clear()


def test_maintain_handler_checks_every_object_of_the_kept_image(
    maintain_module: ModuleType, backed_up: Backup
) -> None:
    summary: dict[str, Any] = maintain_module.handler({}, Context(function_name="maintain"))
    assert summary["images_kept"] == 1
    assert summary["objects_checked"] == 4  # manifest, config, two layers
    # Fresh objects hold exactly LockDays: the first pass gives them half a period more.
    assert summary["ok"] is True and summary["extended"] == 4
    again: dict[str, Any] = maintain_module.handler({}, Context(function_name="maintain"))
    assert again["ok"] is True and again["extended"] == 0


def test_prune_handler_keeps_a_tagged_image(prune_module: ModuleType, backed_up: Backup) -> None:
    summary: dict[str, Any] = prune_module.handler({}, Context(function_name="prune"))
    assert summary == {
        "bytes_freed": 0,
        "counts": {"mark": 0, "delete": 0, "locked": 0, "in-use": 0},
    }


@pytest.fixture(scope="module")
def drill_module() -> Iterator[ModuleType]:
    yield from load("drill")


def test_drill_handler_reads_the_kept_image_back_and_publishes_its_metrics(
    drill_module: ModuleType,
    backed_up: Backup,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ECR_BACKUP_SCRUB_DAYS", "1")  # today's slice is the whole backup
    summary: dict[str, Any] = drill_module.handler({}, Context(function_name="drill"))
    assert summary["ok"] is True and summary["problems"] == []
    assert summary["images_kept"] == 1 and len(summary["sampled"]) == 1
    assert summary["objects_verified"] == 4  # manifest, config, two layers
    metrics = json.loads(
        next(line for line in capsys.readouterr().out.splitlines() if "_aws" in line)
    )
    assert metrics["DrillObjectsVerified"] == [4.0] and metrics["DrillProblems"] == [0.0]
    assert metrics["DrillCompleted"] == [1.0] and metrics["DrillBytesRead"] == [2802.0]
    last = last_drill(RunLog(TABLE, client=boto3.client("dynamodb")))
    assert last is not None and (last.ok, last.objects_verified, last.problems) == (True, 4, 0)


def test_maintain_and_prune_handlers_leave_their_run_summaries_for_status(
    maintain_module: ModuleType, prune_module: ModuleType, backed_up: Backup
) -> None:
    maintain_module.handler({}, Context(function_name="maintain"))
    prune_module.handler({}, Context(function_name="prune"))
    log = RunLog(TABLE, client=boto3.client("dynamodb"))
    maintained, pruned = last_maintain(log), last_prune(log)
    assert maintained is not None and pruned is not None
    assert (maintained.ok, maintained.images_kept, maintained.extended) == (True, 1, 4)
    assert (pruned.marked, pruned.deleted, pruned.bytes_freed) == (0, 0, 0)
