"""Content digests as a validated value object; only sha256 is stored."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

from ecr_backup.errors import InvalidInputError

_SHA256_HEX = re.compile(r"[a-f0-9]{64}")


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        if self.algorithm != "sha256":
            raise InvalidInputError(
                f"unsupported digest algorithm {self.algorithm!r}: only sha256 is supported"
            )
        if not _SHA256_HEX.fullmatch(self.hex):
            raise InvalidInputError(f"invalid sha256 digest hex {self.hex!r}")

    @classmethod
    def parse(cls, value: str) -> Digest:
        algorithm, sep, hex_ = value.partition(":")
        if not sep:
            raise InvalidInputError(f"invalid digest {value!r}: expected 'sha256:<64 hex>'")
        return cls(algorithm, hex_)

    @classmethod
    def of(cls, data: bytes) -> Digest:
        return cls("sha256", hashlib.sha256(data).hexdigest())

    @classmethod
    def from_hash(cls, hasher: hashlib._Hash) -> Digest:
        return cls("sha256", hasher.hexdigest())

    def checksum_sha256(self) -> str:
        """The digest as S3's x-amz-checksum-sha256 wants it: base64 of the raw hash."""
        return base64.b64encode(bytes.fromhex(self.hex)).decode("ascii")

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def is_sha256_hex(name: str) -> bool:
    """True for the 64 lower-case hex characters that name a blob in the bucket."""
    return _SHA256_HEX.fullmatch(name) is not None
