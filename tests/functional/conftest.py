from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devkit.moto_server import patch_dynamodb_atomic
from ecr_backup.settings import MiB
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex
from ecr_backup.storage.provision import ensure_bucket
from tests.helpers import BUCKET, TABLE


@pytest.fixture(scope="session", autouse=True)
def atomic_dynamodb() -> None:
    """moto's DynamoDB answers one request at a time, as the devkit's server does (the
    engine writes from threads; devkit/moto_server.py says what moto does otherwise)."""
    patch_dynamodb_atomic()


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's test credentials and region, and no endpoint or profile from the shell."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def aws(credentials: None) -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def s3(aws: None) -> Any:
    client = boto3.client("s3")
    ensure_bucket(client, BUCKET, region="us-east-1", tls_only=False)  # moto: no TLS
    return client


@pytest.fixture
def store(s3: Any) -> Iterator[S3BlobStore]:
    blob_store = S3BlobStore(BUCKET, "backup/", client=s3, part_size=5 * MiB, parts_in_flight=3)
    yield blob_store
    blob_store.close()


@pytest.fixture
def index(aws: None) -> DynamoIndex:
    dynamo = DynamoIndex(TABLE, client=boto3.client("dynamodb"))
    dynamo.create_if_missing()
    return dynamo
