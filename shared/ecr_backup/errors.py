"""Every error the library raises derives from EcrBackupError, so callers catch one type."""

from __future__ import annotations


class EcrBackupError(Exception):
    """Base class of all ecr-backup errors; the message is one line meant for people."""


class InvalidInputError(EcrBackupError, ValueError):
    """A reference, digest, event or setting supplied by the caller is not valid."""


class UnsupportedManifestError(EcrBackupError):
    """A manifest type we refuse to back up (Docker schema 1, unknown media types)."""


class DigestMismatchError(EcrBackupError):
    """Bytes read do not hash to, or are not the size of, the descriptor that named them."""

    def __init__(self, digest: object, detail: str) -> None:
        super().__init__(f"content of {digest} does not match its descriptor: {detail}")
        self.digest = digest


class NotFoundError(EcrBackupError):
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
    pass


class StorageError(EcrBackupError):
    """S3 refused or failed an operation."""


class IndexStoreError(EcrBackupError):
    """DynamoDB refused or failed an operation."""


class IndexMissingError(IndexStoreError):
    """The index table does not exist."""
