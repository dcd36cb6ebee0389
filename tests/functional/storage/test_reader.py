"""The bucket reader decides on error codes: a denied version listing costs the fallback only."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from ecr_backup.errors import DigestMismatchError, StorageError
from ecr_backup.oci.digest import Digest
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.reader import BucketReader


def refuse_version_listing(store: S3BlobStore, monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    answer: Any = {"Error": {"Code": code, "Message": "refused"}}

    class Refusing:
        def paginate(self, **_: object) -> Any:
            raise ClientError(answer, "ListObjectVersions")

    real = store._s3.get_paginator

    def get_paginator(name: str) -> Any:
        return Refusing() if name == "list_object_versions" else real(name)  # type: ignore[call-overload]

    monkeypatch.setattr(store._s3, "get_paginator", get_paginator)


def test_a_denied_version_listing_reads_the_current_version(
    store: S3BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"layer bytes"
    digest = Digest.of(data)
    store.put_bytes(digest, data)
    refuse_version_listing(store, monkeypatch, "AccessDenied")
    reader = BucketReader(store)
    assert reader.locate(digest, size=len(data), thorough=True) is None  # the current one
    with pytest.raises(DigestMismatchError, match="ListBucketVersions is denied"):
        reader.recover(digest, len(data))


def test_other_failures_of_the_version_listing_are_raised(
    store: S3BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"layer bytes"
    digest = Digest.of(data)
    store.put_bytes(digest, data)
    refuse_version_listing(store, monkeypatch, "InternalError")
    with pytest.raises(StorageError) as raised:
        BucketReader(store).locate(digest, size=len(data), thorough=True)
    assert raised.value.code == "InternalError" and raised.value.retryable
