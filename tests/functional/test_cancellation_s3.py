"""The cancellation token against the real S3 adapter under moto: an interrupted copy
stores nothing and leaves no multipart upload behind."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import Any

import pytest

from ecr_backup.cancellation import CANCELLATION, Cancelled
from ecr_backup.oci.digest import Digest
from ecr_backup.settings import MiB
from ecr_backup.storage.blobstore import S3BlobStore
from tests.helpers import BUCKET
from tests.unit.test_cancellation import CancelsAfter


@pytest.fixture(autouse=True)
def not_cancelled() -> Iterator[None]:
    CANCELLATION.reset()
    yield
    CANCELLATION.reset()


def test_an_interrupted_multipart_copy_is_aborted_and_stores_nothing(
    store: S3BlobStore, s3: Any
) -> None:
    data = os.urandom(17 * MiB)
    digest = Digest.of(data)
    source = CancelsAfter(data, 6 * MiB)  # the part size is 5 MiB: one part went up
    with pytest.raises(Cancelled):
        store.put_stream(digest, len(data), source)
    assert source.read_bytes < len(data)
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert store.stat(digest) is None


def test_no_new_copy_starts_once_cancelled(store: S3BlobStore, s3: Any) -> None:
    data = b"small blob"
    CANCELLATION.cancel()
    with pytest.raises(Cancelled):
        store.put_stream(Digest.of(data), len(data), io.BytesIO(data))
    assert store.stat(Digest.of(data)) is None
