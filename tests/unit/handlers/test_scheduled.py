"""handlers/maintain.py and handlers/prune.py under moto's mock_aws, on a real backup."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ecr_backup.composition import services_for
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex
from tests.helpers import BUCKET, TABLE, Backup
from tests.unit.handlers.test_replicate import Context

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
