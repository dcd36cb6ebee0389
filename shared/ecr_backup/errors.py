"""Every error the library raises derives from EcrBackupError, so callers catch one type.

Outside exceptions (botocore, urllib3, OSError) are translated where they enter, at the
adapter, into these classes. Callers decide on the fields (`code`, `status`,
`retryable`, the class and its `exit_code`), never on the message text.
"""

from __future__ import annotations

import socket
import ssl
from enum import IntEnum
from typing import ClassVar
from urllib.parse import urlsplit


class ExitCode(IntEnum):
    """The command line's exit codes (documented in the README)."""

    OK = 0
    PROBLEMS = 1  # verify (or a dry run) found something wrong
    USAGE = 2  # bad arguments or input
    CONFIGURATION = 3  # credentials, profile, region, permissions, settings
    REMOTE = 4  # a registry or AWS service failed or could not be reached
    DATA = 5  # digest mismatch, missing blob or manifest, unsupported content
    INTERRUPTED = 130  # Ctrl-C or SIGTERM: stopped, nothing half-written (128 + SIGINT)


class EcrBackupError(Exception):
    """Base class of all ecr-backup errors; the message is one line meant for people.

    `code` is the service's own error code (S3's "SlowDown", a registry's
    "MANIFEST_UNKNOWN"), `status` its HTTP status, `retryable` whether the same request
    may succeed later, `hint` what the person can do about it.
    """

    exit_code: ClassVar[ExitCode] = ExitCode.REMOTE

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retryable: bool = False,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.retryable = retryable
        self.hint = hint

    def one_line(self) -> str:
        text = " ".join(str(self).split())
        return f"{text} ({self.hint})" if self.hint else text


class InvalidInputError(EcrBackupError, ValueError):
    """A reference, digest, event or setting supplied by the caller is not valid."""

    exit_code = ExitCode.USAGE


class ConfigurationError(EcrBackupError):
    """Credentials, profile, region, permissions or settings that do not let us start."""

    exit_code = ExitCode.CONFIGURATION


class DataError(EcrBackupError):
    """Content that is missing, corrupt or not what we can handle."""

    exit_code = ExitCode.DATA


class UnsupportedManifestError(DataError):
    """A manifest type we refuse to back up (Docker schema 1, unknown media types)."""


class DigestMismatchError(DataError):
    """Bytes read do not hash to, or are not the size of, the descriptor that named them."""

    def __init__(self, digest: object, detail: str) -> None:
        super().__init__(
            f"content of {digest} does not match its descriptor: {detail}", code="DIGEST_INVALID"
        )
        self.digest = digest


class RefusedError(EcrBackupError):
    """The command would do something a person must opt in to (move a live tag, lift a hold
    that is not there): nothing was changed. `details` are the lines that say what exactly."""

    exit_code = ExitCode.PROBLEMS

    def __init__(self, message: str, *, details: tuple[str, ...] = (), code: str) -> None:
        super().__init__(message, code=code)
        self.details = details


class NotFoundError(DataError):
    """Something named by the caller does not exist."""


class ManifestNotFoundError(NotFoundError):
    pass


class BlobNotFoundError(NotFoundError):
    pass


class RepositoryNotFoundError(NotFoundError):
    pass


class RegistryError(EcrBackupError):
    """The registry answered in a way we cannot use."""


class RegistryAuthError(RegistryError):
    """The registry refused our credentials, or wants some we were not given."""

    exit_code = ExitCode.CONFIGURATION


class RegistryThrottledError(RegistryError):
    """429 or 5xx after the retries the body allowed; `retry_after` is the server's wish."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status, retryable=True)
        self.retry_after = retry_after


class OutOfTimeError(EcrBackupError):
    """Too little time is left to finish a copy before the caller's deadline, so it was not
    started; the same work later resumes from what is already stored."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="OUT_OF_TIME", retryable=True)


class StorageError(EcrBackupError):
    """S3 refused or failed an operation."""


class IndexStoreError(EcrBackupError):
    """DynamoDB refused or failed an operation."""


class IndexMissingError(IndexStoreError):
    """The index table named in the settings does not exist."""

    exit_code = ExitCode.CONFIGURATION


def unreachable(url: str, error: BaseException) -> str:
    """'cannot reach <scheme://host:port>: <why>' for a connection that failed, from the
    socket error at the bottom of urllib3's and botocore's wrappers (not their messages)."""
    parts = urlsplit(url)
    where = f"{parts.scheme}://{parts.netloc}" if parts.netloc else url
    return f"cannot reach {where}: {_why(error)}"


def _why(error: BaseException) -> str:
    reasons: tuple[tuple[type[BaseException], str], ...] = (
        (ConnectionRefusedError, "connection refused"),
        (socket.gaierror, "host name not found"),
        (TimeoutError, "timed out"),
        (ConnectionResetError, "connection reset"),
        (ssl.SSLCertVerificationError, "certificate not trusted"),
        (ssl.SSLError, "TLS failed"),
    )
    for kind, reason in reasons:
        if _caused_by(error, kind):
            return reason
    return type(error).__name__


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    """Whether `error`, or an error it was raised from or while handling, is a `kind`."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def timed_out(error: BaseException) -> bool:
    """Whether `error` is the endpoint's silence: a connect or read that timed out."""
    return _caused_by(error, TimeoutError)


def registry_unreachable(what: str, url: str, error: BaseException) -> RegistryError:
    """A registry we could not talk to (refused, cut off: worth trying later; silent: its
    retries are spent, since silence is answered quickly with an error)."""
    # A certificate we do not trust is not a registry that is down: name the options.
    tls = _caused_by(error, ssl.SSLError)
    return RegistryError(
        f"{what}: {unreachable(url, error)}",
        code=type(error).__name__,
        retryable=not tls and not timed_out(error),
        hint="trust its CA with --ca-bundle FILE (or SSL_CERT_FILE), or pass --insecure"
        if tls
        else "check the registry address and that it is running and reachable",
    )


class ObjectBeingPrunedError(IndexStoreError):
    """A backup needs an object that prune is deleting right now: retry after it finished."""

    def __init__(self, digest: object) -> None:
        super().__init__(
            f"{digest} is being pruned; the backup retries and then copies it again",
            code="OBJECT_BEING_PRUNED",
            retryable=True,
        )


class QueueError(EcrBackupError):
    """SQS refused or failed an operation."""


class StackError(EcrBackupError):
    """CloudFormation, CloudWatch or SQS refused or failed a read of the deployed stack."""
