"""Readers that check a descriptor's digest and size while the bytes stream past."""

from __future__ import annotations

import hashlib
from typing import Protocol

from ecr_backup.cancellation import check_cancelled
from ecr_backup.errors import DigestMismatchError
from ecr_backup.oci.digest import Digest


class Readable(Protocol):
    def read(self, amt: int = ..., /) -> bytes: ...


def read_full(source: Readable, amount: int) -> bytes:
    """Read until `amount` bytes or the end of the stream (HTTP bodies return short reads)."""
    chunks: list[bytes] = []
    while amount > 0:
        data = source.read(amount)
        if not data:
            break
        chunks.append(data)
        amount -= len(data)
    return b"".join(chunks)


class VerifyingReader:
    """Wraps a stream; `verify()` after the last read raises if digest or size differ.

    Reading past the expected size fails at once, so a registry that serves too much
    cannot make us buffer or upload unbounded data. Every blob copy reads through one, so
    it is where an interrupted run stops streaming (ecr_backup.cancellation).
    """

    def __init__(self, source: Readable, digest: Digest, size: int) -> None:
        self._source = source
        self.digest = digest
        self.size = size
        self._hash = hashlib.sha256()
        self.bytes_read = 0

    def read(self, amt: int = -1, /) -> bytes:
        check_cancelled()
        data = self._source.read(amt) if amt >= 0 else self._source.read()
        check_cancelled()  # a read cut short by the cancellation returns early
        self.bytes_read += len(data)
        if self.bytes_read > self.size:
            raise DigestMismatchError(
                self.digest, f"more than the expected {self.size} bytes were served"
            )
        self._hash.update(data)
        return data

    def read_exactly(self, amt: int) -> bytes:
        return read_full(self, amt)

    def verify(self) -> None:
        if self.bytes_read != self.size:
            raise DigestMismatchError(
                self.digest, f"expected {self.size} bytes, got {self.bytes_read}"
            )
        actual = Digest.from_hash(self._hash)
        if actual != self.digest:
            raise DigestMismatchError(self.digest, f"bytes hash to {actual}")
