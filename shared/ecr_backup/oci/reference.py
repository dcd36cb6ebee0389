"""Image references as users type them: REPOSITORY[:TAG|@DIGEST]."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ecr_backup.errors import InvalidInputError
from ecr_backup.oci.digest import Digest

# ECR's documented repository-name pattern and length limits.
_REPOSITORY = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")
_REPOSITORY_MAX = 256
# The OCI distribution spec's repository-name pattern (path components joined by "/").
_OCI_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_OCI_REPOSITORY = re.compile(rf"{_OCI_COMPONENT}(?:/{_OCI_COMPONENT})*")
# The OCI distribution spec's tag pattern (ECR accepts the same characters).
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def validate_repository(name: str) -> str:
    if not (2 <= len(name) <= _REPOSITORY_MAX) or not _REPOSITORY.fullmatch(name):
        raise InvalidInputError(
            f"invalid repository name {name!r}: use 2-256 lowercase letters, digits and . _ - /"
        )
    return name


def validate_oci_repository(name: str) -> str:
    """A repository name any OCI registry accepts (no ECR length or character limits)."""
    if not _OCI_REPOSITORY.fullmatch(name):
        raise InvalidInputError(
            f"invalid repository name {name!r}: use lowercase letters and digits, separated "
            "by '.', '_', '__', '-' or '/'"
        )
    return name


def validate_tag(tag: str) -> str:
    if not _TAG.fullmatch(tag):
        raise InvalidInputError(
            f"invalid tag {tag!r}: use up to 128 letters, digits, '_', '.' and '-'"
        )
    return tag


@dataclass(frozen=True, slots=True)
class ImageRef:
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str, *, default_tag: str | None = "latest") -> ImageRef:
        """Parse REPOSITORY, REPOSITORY:TAG or REPOSITORY@sha256:HEX."""
        name, at, digest_text = text.partition("@")
        digest = Digest.parse(digest_text) if at else None
        tag: str | None = None
        slash = name.rfind("/")
        colon = name.rfind(":")
        if colon > slash:
            name, tag = name[:colon], validate_tag(name[colon + 1 :])
        if tag is None and digest is None:
            tag = default_tag
        return cls(validate_repository(name), tag, digest)

    @property
    def reference(self) -> str:
        """What the registry API takes after /manifests/: the digest when known, else the tag."""
        if self.digest is not None:
            return str(self.digest)
        if self.tag is None:
            raise InvalidInputError(f"{self.repository}: a tag or a digest is required")
        return self.tag

    def __str__(self) -> str:
        if self.digest is not None:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag}" if self.tag else self.repository
