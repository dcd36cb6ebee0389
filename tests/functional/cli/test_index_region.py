"""One index, in its backup's region: a command pointed at another region is refused in one
line naming both places (exit 3) and never creates or fills a second index there; S3 is
called in the bucket's own region; location records from before regions were recorded
still work."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from ecr_backup.cli import main
from ecr_backup.composition import AwsServices
from ecr_backup.errors import ConfigurationError
from ecr_backup.model import Action, ImageEvent
from ecr_backup.oci.digest import Digest
from ecr_backup.settings import Settings
from ecr_backup.storage.index import DynamoIndex, Location
from ecr_backup.storage.ledger import Hold
from ecr_backup.storage.provision import ensure_bucket
from tests.helpers import BUCKET, TABLE

HERE = Location(BUCKET, "backup/")
ELSEWHERE = "us-west-2"


@pytest.fixture(autouse=True)
def settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECR_BACKUP_BUCKET", BUCKET)
    monkeypatch.setenv("ECR_BACKUP_TABLE", TABLE)
    monkeypatch.setenv("ECR_BACKUP_PREFIX", HERE.prefix)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def tables(region: str) -> list[str]:
    names: list[str] = boto3.client("dynamodb", region_name=region).list_tables()["TableNames"]
    return names


def location_item(**fields: str) -> dict[str, Any]:
    return {
        "pk": {"S": "INDEX"},
        "sk": {"S": "LOCATION"},
        **{name: {"S": value} for name, value in fields.items()},
    }


def assert_one_line_naming_both(code: int, out: str, err: str, there: str, here: str) -> None:
    assert code == 3 and out == "", err
    assert err.count("\n") == 1, err
    assert there in err and here in err
    assert f"--region {here}" in err
    assert "setup" not in err and "rebuild-index" not in err  # never a second index


def test_a_region_without_the_table_is_refused_naming_both_and_nothing_is_created(
    s3: Any, index: DynamoIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["tags", "team/app"], ["setup"], ["prune", "--dry-run"]):
        code, out, err = cli(capsys, *command, "--region", ELSEWHERE)
        assert_one_line_naming_both(code, out, err, ELSEWHERE, "us-east-1")
        assert f"index table {TABLE} not found in {ELSEWHERE}" in err
    assert tables(ELSEWHERE) == []  # setup, told the wrong region, made no second index
    code, _, err = cli(capsys, "tags", "team/app")  # in the right region: answered
    assert code == 5 and "no backup of repository team/app" in err


def test_a_second_table_in_another_region_is_refused(
    s3: Any, index: DynamoIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    second = DynamoIndex(TABLE, client=boto3.client("dynamodb", region_name=ELSEWHERE))
    second.create_if_missing()  # as following a wrong hint once did: empty, nothing recorded
    code, out, err = cli(capsys, "tags", "team/app", "--region", ELSEWHERE)
    assert_one_line_naming_both(code, out, err, ELSEWHERE, "us-east-1")
    assert f"index table {TABLE} is in {ELSEWHERE}" in err
    assert second.location() is None  # refused before anything was recorded there


def test_a_table_answering_from_another_region_than_it_records_is_refused(
    s3: Any, index: DynamoIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    """A copy of the table (a replica, a restore into another region) records where the
    index belongs: the region it answers from must be that one."""
    recorded = location_item(bucket=BUCKET, prefix=HERE.prefix, region="eu-central-1")
    index._db.put_item(TableName=TABLE, Item=recorded)
    code, out, err = cli(capsys, "tags", "team/app")
    assert_one_line_naming_both(code, out, err, "us-east-1", "eu-central-1")


def test_an_old_location_record_is_read_as_is_and_upgraded_by_the_first_write(
    s3: Any, index: DynamoIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    index._db.put_item(TableName=TABLE, Item=location_item(bucket=BUCKET, prefix=HERE.prefix))
    assert index.location() == HERE  # region and account unknown
    code, _, err = cli(capsys, "tags", "team/app")
    assert code == 5 and "no backup of repository team/app" in err  # answered, not refused
    assert index.location() == HERE  # reading writes nothing
    services = AwsServices(Settings(bucket=BUCKET, table=TABLE, prefix=HERE.prefix))
    event = ImageEvent(
        repository="team/app",
        digest=Digest.parse("sha256:" + "a" * 64),
        action=Action.PUSH,
        time=datetime(2026, 1, 1, tzinfo=UTC),
        tag="v1",
    )
    services.index.record_event(event)
    assert index.location() == HERE._replace(region="us-east-1", account="123456789012")


def test_the_first_write_records_region_and_account(s3: Any, index: DynamoIndex) -> None:
    services = AwsServices(Settings(bucket=BUCKET, table=TABLE, prefix=HERE.prefix))
    assert index.location() is None
    services.ledger.add_hold(
        Hold("team/app", Digest.parse("sha256:" + "b" * 64), datetime.now(UTC))
    )
    assert index.location() == HERE._replace(region="us-east-1", account="123456789012")


def test_s3_is_called_in_the_buckets_own_region(aws: None) -> None:
    far = boto3.client("s3", region_name="eu-west-1")
    ensure_bucket(far, "far-bucket", region="eu-west-1", tls_only=False)
    session = boto3.Session(region_name="us-east-1")
    services = AwsServices(Settings(bucket="far-bucket", table=TABLE), session)
    assert services.bucket_region == "eu-west-1"
    assert services.store._s3.meta.region_name == "eu-west-1"
    assert services.locks._s3.meta.region_name == "eu-west-1"
    assert services.location.region == "eu-west-1"
    # The index belongs beside its bucket: a table in the session's region is refused.
    DynamoIndex(TABLE, client=session.client("dynamodb")).create_if_missing()
    with pytest.raises(ConfigurationError, match="is in us-east-1; the backup s3://far-bucket/"):
        _ = services.index
    missing = AwsServices(Settings(bucket="no-such-bucket", table=TABLE), session)
    assert missing.bucket_region is None and missing.region == "us-east-1"
