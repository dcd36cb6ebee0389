"""Blob uploads a registry, ECR included, accepts.

By default one streamed request per blob: one PATCH carries the whole stream, then an
empty PUT ?digest= commits it. That is what skopeo sends (the benchmark's registry log
shows it) and what ECR handles; the other one-request form, a monolithic PUT, is what
kitops moved to for ECR's large layers (kitops-ml/kitops#822), and measured no faster
here (docs/bench.md). ECR answers the PATCH with 201 where
the spec says 202 (openai/tart#273, jdx/mise#11376), older registries with 204: all three
count. Several PATCHes per session are sent only when a chunk size is given, for
registries that refuse big requests: ECR has been reported to drop every PATCH body after
the first while still answering 201 (aws/containers-roadmap#2831) and to leave its Range
header behind (crashappsec/chalk#682), and it refuses parts under 5 MiB but the last.

A streamed body is never sent twice here: a failure cancels the session, and the caller
starts the blob over from its source (restore/push.py reads the bucket again).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol
from urllib.parse import urlencode

from ecr_backup.cancellation import check_cancelled
from ecr_backup.errors import DigestMismatchError
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.streams import Readable, read_full
from ecr_backup.settings import UPLOAD_BUFFER_SIZE


class UploadSessions(Protocol):
    """The upload-session requests of the distribution spec (RegistryClient sends them);
    this module decides what goes in them."""

    def start_upload(self, repository: str, digest: Digest) -> str: ...

    def send_to_upload(
        self,
        location: str,
        *,
        headers: dict[str, str],
        body: bytes | Iterator[bytes],
        expect: tuple[int, ...],
        what: str,
    ) -> str: ...

    def finish_upload(
        self,
        location: str,
        *,
        headers: dict[str, str],
        body: bytes,
        expect: tuple[int, ...],
        what: str,
    ) -> None: ...

    def cancel_upload(self, location: str | None) -> None: ...


# A PATCH that took the data: 202 (the spec), 201 (ECR), 204 (older registries).
PATCH_ACCEPTED = (201, 202, 204)


def upload_blob(
    client: UploadSessions,
    repository: str,
    digest: Digest,
    size: int,
    source: Readable,
    *,
    chunk_size: int | None = None,
) -> None:
    """Upload `size` bytes of `source` as `digest`, in a new upload session."""
    location = client.start_upload(repository, digest)
    try:
        if chunk_size is None:
            body = _stream_of(source, digest, size)
            location = _patch(client, location, digest, body, size, content_range=None)
            _commit(client, location, digest, b"", offset=size)
        else:
            _upload_in_chunks(client, location, digest, source, size=size, chunk_size=chunk_size)
    except BaseException:
        client.cancel_upload(location)
        raise


def _upload_in_chunks(
    client: UploadSessions,
    location: str,
    digest: Digest,
    source: Readable,
    *,
    size: int,
    chunk_size: int,
) -> None:
    offset = 0
    chunk = read_full(source, min(chunk_size, size))
    while offset + len(chunk) < size:
        check_cancelled()
        if not chunk:
            raise DigestMismatchError(digest, f"source ended at {offset} of {size} bytes")
        span = f"{offset}-{offset + len(chunk) - 1}"
        location = _patch(client, location, digest, chunk, len(chunk), content_range=span)
        offset += len(chunk)
        chunk = read_full(source, min(chunk_size, size - offset))
    _commit(client, location, digest, chunk, offset=offset)


def _patch(
    client: UploadSessions,
    location: str,
    digest: Digest,
    body: bytes | Iterator[bytes],
    length: int,
    *,
    content_range: str | None,
) -> str:
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
    if content_range:
        headers["Content-Range"] = content_range
    return client.send_to_upload(
        location, headers=headers, body=body, expect=PATCH_ACCEPTED, what=f"upload {digest}"
    )


def _commit(
    client: UploadSessions, location: str, digest: Digest, last: bytes, *, offset: int
) -> None:
    """PUT ?digest=: with the last chunk, or empty after a streamed PATCH."""
    separator = "&" if "?" in location else "?"
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(last))}
    if last and offset:
        headers["Content-Range"] = f"{offset}-{offset + len(last) - 1}"
    client.finish_upload(
        f"{location}{separator}{urlencode({'digest': str(digest)})}",
        headers=headers,
        body=last,  # in memory: a throttled commit is sent again
        expect=(201, 204),
        what=f"finish upload of {digest}",
    )


def _stream_of(source: Readable, digest: Digest, size: int) -> Iterator[bytes]:
    """The request body of a streamed upload: exactly `size` bytes of `source`.

    The source checks the digest on its last read and raises there, mid-request: the
    registry then never gets a complete body and nothing is committed.
    """
    sent = 0
    while sent < size:
        check_cancelled()  # raised mid-request: the session is never committed
        data = source.read(min(size - sent, UPLOAD_BUFFER_SIZE))
        if not data:
            raise DigestMismatchError(digest, f"source ended at {sent} of {size} bytes")
        sent += len(data)
        yield data
