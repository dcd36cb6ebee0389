"""Fixtures for the retention tests: the real adapters under moto, a clock tests can move,
and an Object Lock adapter that records every lock it read and every extension it asked."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from ecr_backup.composition import Adapters, AwsServices
from ecr_backup.oci.digest import Digest
from ecr_backup.settings import Settings
from ecr_backup.storage.objectlock import LockMode, ObjectLock, S3ObjectLocks
from tests.fakes import MovableClock
from tests.helpers import BUCKET, TABLE, Backup

PREFIX = "backup/"


class RecordingLocks(S3ObjectLocks):
    def __init__(self, client: Any) -> None:
        super().__init__(BUCKET, PREFIX, client)
        self.last_read: dict[Digest, datetime | None] = {}
        self.extensions: list[tuple[Digest, datetime | None, datetime]] = []  # (digest, was, new)

    def read(self, digest: Digest) -> ObjectLock:
        lock = super().read(digest)
        self.last_read[digest] = lock.until
        return lock

    def extend(self, digest: Digest, mode: LockMode, until: datetime) -> None:
        self.extensions.append((digest, self.last_read.get(digest, None), until))
        super().extend(digest, mode, until)

    def shortenings(self) -> list[tuple[Digest, datetime | None, datetime]]:
        return [e for e in self.extensions if e[1] is None or e[2] <= e[1]]


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def services(s3: Any, index: object, clock: MovableClock) -> Iterator[AwsServices]:
    settings = Settings(
        bucket=BUCKET, table=TABLE, prefix=PREFIX, keep_deleted_days=90, keep_per_tag=1
    )
    session = boto3.Session(region_name="us-east-1")
    built = AwsServices(settings, session, clock=clock, adapters=Adapters(locks=RecordingLocks(s3)))
    yield built
    built.store.close()


@pytest.fixture
def recorded(services: AwsServices) -> RecordingLocks:
    locks = services.locks
    assert isinstance(locks, RecordingLocks)
    return locks


@pytest.fixture
def kit(services: AwsServices, clock: MovableClock) -> Backup:
    """Images pushed to a fake source and backed up by the engine wired as in production."""
    return Backup(services.store, services.index, clock=clock, locks=services.keeper)


def head_lock(s3: Any, digest: Digest) -> datetime:
    head = s3.head_object(Bucket=BUCKET, Key=f"{PREFIX}blobs/sha256/{digest.hex}")
    until: datetime = head["ObjectLockRetainUntilDate"]
    return until.astimezone(UTC)
