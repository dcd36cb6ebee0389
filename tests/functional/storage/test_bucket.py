"""S3 and DynamoDB errors name what was done and where: the operation, the bucket (and key)
or table; refusals and missing resources are configuration (exit 3) with the fix; a bare
HTTP status is never the whole message."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from ecr_backup.awserrors import translate
from ecr_backup.errors import ConfigurationError, ExitCode, IndexMissingError, StorageError
from ecr_backup.storage.bucket import bucket_region, s3_error
from ecr_backup.storage.dynamo import index_error
from ecr_backup.storage.provision import ensure_bucket


def client_error(code: str, status: int, operation: str = "GetObject") -> ClientError:
    response: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, operation)


def s3_at(endpoint: str) -> Any:
    return SimpleNamespace(meta=SimpleNamespace(endpoint_url=endpoint))


def test_access_denied_names_the_operation_and_the_object() -> None:
    error = s3_error(
        client_error("AccessDenied", 403), "GET", "bucket-a", s3_at("https://s3.x"), "p/k"
    )
    assert isinstance(error, ConfigurationError) and error.exit_code == ExitCode.CONFIGURATION
    assert str(error) == "GET s3://bucket-a/p/k: access denied (AccessDenied)"
    assert "lack the permission" in (error.hint or "") and "TLS" not in (error.hint or "")


def test_access_denied_over_plain_http_points_at_the_tls_only_policy() -> None:
    error = s3_error(client_error("403", 403, "HeadObject"), "HEAD", "b", s3_at("http://h:1"), "k")
    assert "HTTP 403 Forbidden" in str(error)  # HEAD has no body: the status, said in words
    assert "plain HTTP" in (error.hint or "") and "deny-without-TLS" in (error.hint or "")
    assert error.one_line().count("\n") == 0


def test_a_missing_bucket_is_exit_3_with_the_fix() -> None:
    for code, status in (("NoSuchBucket", 404), ("404", 404)):
        error = s3_error(client_error(code, status), "list", "gone", s3_at("https://s3.x"))
        assert isinstance(error, ConfigurationError)
        assert "bucket gone does not exist" in str(error)
        assert "ecr-backup setup" in (error.hint or "")
    # A missing object under an existing bucket is not a missing bucket.
    other = s3_error(client_error("404", 404), "HEAD", "b", s3_at("https://s3.x"), "k")
    assert isinstance(other, StorageError) and "HTTP 404 Not Found" in str(other)


def test_a_bare_status_is_never_the_whole_message() -> None:
    for code in ("400", "500", ""):
        error = translate(client_error(code, int(code or 503)), "HEAD x", StorageError)
        text = str(error)
        assert text.startswith("HEAD x: HTTP ") and not text.rstrip().endswith(code or ":")
        assert any(c.isalpha() for c in text.removeprefix("HEAD x: HTTP "))


def test_dynamodb_errors_name_the_table_and_region() -> None:
    denied = index_error(client_error("AccessDeniedException", 400), "query REPOS", "t1", "r1")
    assert isinstance(denied, ConfigurationError)
    assert str(denied).startswith("query REPOS in table t1: access denied")
    missing = index_error(client_error("ResourceNotFoundException", 400), "read X", "t1", "r1")
    assert isinstance(missing, IndexMissingError) and missing.exit_code == 3
    assert "index table t1 not found in r1" in str(missing)
    assert "ecr-backup setup" in (missing.hint or "")


class PlainHttpS3:
    """Only what ensure_bucket touches before it would create anything."""

    meta = SimpleNamespace(endpoint_url="http://127.0.0.1:9")

    def __init__(self) -> None:
        self.created: list[str] = []

    def head_bucket(self, **_: Any) -> None:
        raise client_error("404", 404, "HeadBucket")

    def create_bucket(self, **arguments: Any) -> None:
        self.created.append(arguments["Bucket"])


def test_setup_refuses_a_tls_only_bucket_through_plain_http() -> None:
    s3: Any = PlainHttpS3()
    with pytest.raises(ConfigurationError, match=r"plain-HTTP endpoint http://127\.0\.0\.1:9"):
        ensure_bucket(s3, "new-bucket", region="us-east-1")
    assert s3.created == []  # refused before anything was made


def test_the_bucket_region_comes_from_head_bucket(aws: None) -> None:
    ensure_bucket(boto3.client("s3"), "far", region="eu-west-1", tls_only=False)
    assert bucket_region(boto3.client("s3", region_name="us-east-1"), "far") == "eu-west-1"
    assert bucket_region(boto3.client("s3"), "never-made") is None
