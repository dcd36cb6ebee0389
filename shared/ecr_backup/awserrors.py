"""botocore's exceptions, translated once into ours: code, HTTP status, retryable, hint."""

from __future__ import annotations

from http import HTTPStatus

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)

from ecr_backup.errors import ConfigurationError, EcrBackupError, unreachable

# Codes AWS answers when the same request may succeed later (S3, DynamoDB, ECR, STS, SQS).
THROTTLING_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "RequestThrottledException",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "UnrecognizedClientException",
    }
)
_UNREACHABLE = (
    EndpointConnectionError,
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
)


def error_code(error: BaseException) -> str:
    """The service's error code ("NoSuchKey", "ConditionalCheckFailedException", ...); empty
    for an error the service did not answer (connection, credentials)."""
    if not isinstance(error, ClientError):
        return ""
    return str(error.response.get("Error", {}).get("Code", ""))


def http_status(error: BaseException) -> int | None:
    if not isinstance(error, ClientError):
        return None
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status else None


def describe_code(code: str, status: int | None) -> str:
    """The service's error code for people: never a bare HTTP status (HEAD answers have no
    body, so botocore's code for them is the status alone)."""
    number = int(code) if code.isdigit() else None if code else status
    if number is None:
        return code or "error"
    try:
        phrase = HTTPStatus(number).phrase
    except ValueError:
        phrase = "unexpected answer"
    return f"HTTP {number} {phrase}"


def translate(  # noqa: PLR0911 (one return per kind of failure)
    error: BotoCoreError | ClientError, what: str, kind: type[EcrBackupError]
) -> EcrBackupError:
    """One of our errors for a botocore one; `what` says what we were doing, `kind` is the
    adapter's own class (StorageError, IndexStoreError, RegistryError...).

    Credentials, profile, region and permission problems become ConfigurationError,
    whatever the adapter: the person fixes them the same way everywhere.
    """
    if isinstance(error, ClientError):
        code, status = error_code(error), http_status(error)
        if code in ACCESS_DENIED_CODES or code == "403":
            return ConfigurationError(
                f"{what}: access denied ({describe_code(code, status)})",
                code=code,
                status=status,
                hint="the AWS credentials in use lack the permission, or have expired",
            )
        retryable = code in THROTTLING_CODES or (status is not None and status >= 500)
        return kind(
            f"{what}: {describe_code(code, status)}", code=code, status=status, retryable=retryable
        )
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return ConfigurationError(
            f"{what}: no AWS credentials",
            code="NoCredentials",
            hint="set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        )
    if isinstance(error, ProfileNotFound):
        return ConfigurationError(
            f"{what}: {error}", code="ProfileNotFound", hint="check AWS_PROFILE and ~/.aws/config"
        )
    if isinstance(error, NoRegionError):
        return ConfigurationError(
            f"{what}: no AWS region",
            code="NoRegion",
            hint="set AWS_DEFAULT_REGION, or region in the AWS profile",
        )
    if isinstance(error, _UNREACHABLE):
        endpoint = str(error.kwargs.get("endpoint_url", "the endpoint"))
        cause = error.kwargs.get("error")
        why = unreachable(endpoint, cause if isinstance(cause, BaseException) else error)
        return kind(
            f"{what}: {why}",
            code=type(error).__name__,
            retryable=True,
            hint="check AWS_ENDPOINT_URL, the network and the region",
        )
    return kind(f"{what}: {type(error).__name__}", code=type(error).__name__)
