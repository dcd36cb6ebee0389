"""The index knows the bucket and prefix it indexes: commands pointed at another place are
refused in one line (exit 3) before anything is fetched or written."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from ecr_backup.cli import main
from ecr_backup.composition import Adapters, AwsServices
from ecr_backup.errors import ConfigurationError
from ecr_backup.settings import Settings
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex, Location
from tests.helpers import BUCKET, TABLE, FakeRegistry

HERE = Location(BUCKET, "backup/")
RECORDED = HERE._replace(region="us-east-1", account="123456789012")  # moto's account


@pytest.fixture
def registry(
    store: S3BlobStore, index: DynamoIndex, monkeypatch: pytest.MonkeyPatch
) -> FakeRegistry:
    """A source registry holding team/app:v1; the CLI's settings point at HERE."""
    monkeypatch.setenv("ECR_BACKUP_BUCKET", BUCKET)
    monkeypatch.setenv("ECR_BACKUP_TABLE", TABLE)
    monkeypatch.setenv("ECR_BACKUP_PREFIX", HERE.prefix)
    source = FakeRegistry()
    source.image("team/app", [b"layer one", b"layer two"], tag="v1")
    return source


def cli(
    capsys: pytest.CaptureFixture[str], source: FakeRegistry, *args: str
) -> tuple[int, str, str]:
    code = main(list(args), adapters=Adapters(sources=lambda account, region: source))
    out, err = capsys.readouterr()
    return code, out, err


def scan() -> list[Any]:
    items: list[Any] = boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
    return sorted(items, key=lambda i: (i["pk"]["S"], i["sk"]["S"]))


def keys(s3: Any) -> list[str]:
    listed = s3.list_object_versions(Bucket=BUCKET).get("Versions", [])
    return sorted(v["Key"] for v in listed)


def assert_refused(err: str, code: int, elsewhere: Location) -> None:
    assert code == 3  # ExitCode.CONFIGURATION, as the README documents
    assert err.count("\n") == 1
    assert f"index table {TABLE} indexes {HERE}, not {elsewhere} (" in err


def test_a_backup_under_another_prefix_is_refused_before_any_work(
    registry: FakeRegistry, index: DynamoIndex, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    index.claim_location(HERE)
    items, objects = scan(), keys(s3)
    code, out, err = cli(capsys, registry, "replicate", "team/app:v1", "--prefix", "other")
    assert_refused(err, code, Location(BUCKET, "other/"))
    assert out == ""
    assert registry.manifest_gets == 0 and not registry.blob_gets  # nothing fetched
    assert scan() == items and keys(s3) == objects  # nothing written
    # The same backup where the table belongs is done.
    code, out, err = cli(capsys, registry, "replicate", "team/app:v1")
    assert code == 0 and "team/app:v1: backed up" in out, err
    assert registry.manifest_gets == 1


def test_a_query_of_another_bucket_is_refused(
    registry: FakeRegistry, index: DynamoIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, registry, "replicate", "team/app:v1")[0] == 0
    items = scan()
    code, out, err = cli(capsys, registry, "tags", "team/app", "--bucket", "typo-bucket")
    assert_refused(err, code, Location("typo-bucket", HERE.prefix))
    assert out == "" and scan() == items
    code, out, _ = cli(capsys, registry, "tags", "team/app")
    assert code == 0 and "v1" in out


def test_the_first_backup_or_setup_records_where_the_table_belongs(
    registry: FakeRegistry, index: DynamoIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    assert index.location() is None  # a table from before locations were recorded
    assert cli(capsys, registry, "replicate", "team/app:v1")[0] == 0
    assert index.location() == RECORDED
    code, _, err = cli(capsys, registry, "show", "team/app:v1", "--prefix", "other")
    assert_refused(err, code, Location(BUCKET, "other/"))

    index._db.delete_item(TableName=TABLE, Key={"pk": {"S": "INDEX"}, "sk": {"S": "LOCATION"}})
    code, _, err = cli(capsys, registry, "setup")
    assert code == 0, err
    assert index.location() == RECORDED


def test_the_index_handed_out_is_checked_and_reading_it_writes_nothing(
    store: S3BlobStore, index: DynamoIndex
) -> None:
    before = scan()
    services = AwsServices(Settings(bucket=BUCKET, table=TABLE, prefix=HERE.prefix))
    assert services.index.repositories() == []
    services.replicator("123456789012", "us-east-1")  # a dry run builds it, and copies nothing
    assert scan() == before  # no location claimed by reading
    index.claim_location(Location(BUCKET, "other/"))
    with pytest.raises(ConfigurationError, match="indexes s3://backup-bucket/other/"):
        _ = AwsServices(Settings(bucket=BUCKET, table=TABLE, prefix=HERE.prefix)).index
