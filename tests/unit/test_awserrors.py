"""botocore's exceptions become ours with the fields callers decide on."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ProfileNotFound,
)

from ecr_backup.awserrors import translate
from ecr_backup.errors import ConfigurationError, ExitCode, StorageError


def client_error(code: str, status: int) -> ClientError:
    answer: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(answer, "PutObject")


def test_service_answers_keep_their_code_status_and_retryability() -> None:
    slow = translate(client_error("SlowDown", 503), "PUT k", StorageError)
    assert isinstance(slow, StorageError) and slow.exit_code == ExitCode.REMOTE
    assert (slow.code, slow.status, slow.retryable) == ("SlowDown", 503, True)
    refused = translate(client_error("InvalidRequest", 400), "PUT k", StorageError)
    assert (refused.code, refused.status, refused.retryable) == ("InvalidRequest", 400, False)


def test_credentials_and_permissions_are_configuration_whatever_the_adapter() -> None:
    denied = translate(client_error("AccessDenied", 403), "PUT k", StorageError)
    assert isinstance(denied, ConfigurationError) and denied.exit_code == ExitCode.CONFIGURATION
    assert denied.code == "AccessDenied" and denied.hint
    missing = translate(NoCredentialsError(), "PUT k", StorageError)
    assert isinstance(missing, ConfigurationError)
    assert missing.one_line() == (
        "PUT k: no AWS credentials (set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    )
    profile = translate(ProfileNotFound(profile="nope"), "open", StorageError)
    assert isinstance(profile, ConfigurationError) and "nope" in str(profile)


def test_an_unreachable_endpoint_is_retryable_and_names_the_address() -> None:
    cause = ConnectionRefusedError(111, "Connection refused")
    error = EndpointConnectionError(
        endpoint_url="http://127.0.0.1:9/bucket?list-type=2", error=cause
    )
    unreachable = translate(error, "list s3://bucket/", StorageError)
    assert isinstance(unreachable, StorageError) and unreachable.retryable
    assert (
        str(unreachable) == "list s3://bucket/: cannot reach http://127.0.0.1:9: connection refused"
    )
