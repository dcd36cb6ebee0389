"""Queries: the index and the bucket's push records give the same answers; reading the
bucket looks past tampered object versions."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ecr_backup.catalog.catalog import Catalog
from ecr_backup.errors import (
    DigestMismatchError,
    InvalidInputError,
    ManifestNotFoundError,
    NotFoundError,
)
from ecr_backup.model import Action
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.reference import ImageRef
from ecr_backup.schema import render
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex
from ecr_backup.storage.reader import BucketReader
from tests.helpers import BUCKET, Backup, answers, drop_table, minutes


@pytest.fixture
def backup(store: S3BlobStore, index: DynamoIndex) -> Backup:
    return Backup(store, index)


@pytest.fixture
def history(backup: Backup) -> dict[str, Any]:
    """app:v1 moved twice, app:old removed, a signed multi-arch base, an untagged push."""
    first, second, third = (backup.image("app") for _ in range(3))
    backup.push("app", first, "v1", minutes(10))
    backup.push("app", second, "v1", minutes(20))
    backup.push("app", third, "v1", minutes(30))
    old = backup.image("app")
    backup.push("app", old, "old", minutes(5))
    backup.delete("app", old, "old", minutes(25))
    base = backup.multi_arch("base", shared=backup.layer())
    backup.push("base", base, "latest", minutes(1))
    signature = backup.signature("base", base)
    backup.push("base", signature, None, minutes(2))
    loose = backup.image("base")
    backup.push("base", loose, None, minutes(3))
    return {"v1": [first, second, third], "old": old, "base": base, "signature": signature}


def test_tags_history_and_point_in_time(
    history: dict[str, Any], store: S3BlobStore, index: DynamoIndex
) -> None:
    catalog = Catalog(store, index)
    first, second, third = history["v1"]
    assert catalog.repositories() == ["app", "base"]
    rows = {r.tag: r for r in catalog.tag_rows("app")}
    assert rows["v1"].digest == third.digest and not rows["v1"].removed
    assert rows["old"].removed and rows["old"].digest == history["old"].digest
    assert rows["v1"].total_size == index.manifest(third.digest).total_size  # type: ignore[union-attr]
    assert [e.digest for e in catalog.history("app", "v1")] == [
        first.digest,
        second.digest,
        third.digest,
    ]
    v1 = ImageRef("app", "v1")
    assert catalog.resolve(v1).digest == third.digest
    assert catalog.resolve(v1, minutes(10)).digest == first.digest
    assert catalog.resolve(v1, minutes(29)).digest == second.digest
    # --at on the tag list: at minute 15 v1 was the first image and "old" still current.
    at15 = {s.tag: s for s in catalog.tags("app", minutes(15))}
    assert at15["v1"].digest == first.digest and at15["old"].action is Action.PUSH
    assert [e.digest for e in catalog.history("app", "v1", minutes(15))] == [first.digest]


def test_clear_errors_name_what_is_missing(
    history: dict[str, Any], store: S3BlobStore, index: DynamoIndex
) -> None:
    catalog = Catalog(store, index)
    with pytest.raises(NotFoundError, match=r"^no backup of app:v1 at 2026-01-01T00:09:00Z$"):
        catalog.resolve(ImageRef("app", "v1"), minutes(9))
    with pytest.raises(NotFoundError, match=r"^no backup of app:v9$"):
        catalog.resolve(ImageRef("app", "v9"))
    with pytest.raises(NotFoundError, match=r"^no backup of repository nothere$"):
        catalog.resolve(ImageRef("nothere", "v1"))
    with pytest.raises(NotFoundError, match=r"app:old was removed at 2026-01-01T00:25:00Z"):
        catalog.resolve(ImageRef("app", "old"))
    # ... and before the removal it is there.
    assert catalog.resolve(ImageRef("app", "old"), minutes(24)).digest == history["old"].digest
    with pytest.raises(NotFoundError, match="no backup of repository nothere"):
        catalog.tag_rows("nothere")
    missing = Digest.of(b"never stored")
    with pytest.raises(ManifestNotFoundError, match=str(missing)):
        catalog.reader.manifest(missing)


def test_show_multi_arch_closure_and_referrers(
    history: dict[str, Any], store: S3BlobStore, index: DynamoIndex
) -> None:
    view = Catalog(store, index).show(ImageRef("base", "latest"))
    document: dict[str, Any] = render("show", view)
    assert document["digest"] == str(history["base"].digest)
    assert document["platforms"] == ["linux/amd64", "linux/arm64"]
    assert len(document["manifests"]) == 3
    # The shared base layer is listed once; two configs, one shared and two own layers.
    assert len(document["blobs"]) == 5
    assert document["total_size"] == index.manifest(history["base"].digest).total_size  # type: ignore[union-attr]
    assert [r["digest"] for r in document["referrers"]] == [str(history["signature"].digest)]
    assert document["referrers"][0]["subject"] == str(history["base"].digest)


def test_referrers_stay_in_their_repository(
    backup: Backup, store: S3BlobStore, index: DynamoIndex
) -> None:
    image = backup.image("one")
    backup.push("one", image, "v1", minutes(1))
    backup.source.manifests[f"two@{image.digest}"] = image.raw
    backup.push("two", image, "v1", minutes(2))
    backup.push("two", backup.signature("two", image), None, minutes(3))
    catalog = Catalog(store, index)
    assert catalog.show(ImageRef("one", "v1")).referrers == ()
    assert len(catalog.show(ImageRef("two", "v1")).referrers) == 1


def test_bucket_records_answer_like_the_index(
    history: dict[str, Any], store: S3BlobStore, index: DynamoIndex
) -> None:
    from_index = answers(Catalog(store, index))
    from_bucket = answers(Catalog(store, None))
    assert from_bucket == from_index


def test_missing_table_falls_back_to_the_records(
    history: dict[str, Any],
    store: S3BlobStore,
    index: DynamoIndex,
    caplog: pytest.LogCaptureFixture,
) -> None:
    expected = answers(Catalog(store, index))
    drop_table()
    catalog = Catalog(store, index)
    with caplog.at_level(logging.WARNING):
        assert answers(catalog) == expected
    assert catalog.source == "bucket"
    assert "index table backup-index not found" in caplog.text


def test_tampered_manifest_is_read_from_its_intact_version(
    history: dict[str, Any], store: S3BlobStore, index: DynamoIndex, s3: Any, backup: Backup
) -> None:
    base = history["base"]
    backup.tamper(s3, base.digest, base.raw.replace(b"amd64", b"s390x"))
    reader = BucketReader(store)
    assert reader.manifest(base.digest).raw == base.raw
    assert base.digest in reader.recovered


def test_tampered_blob_streams_its_intact_version(
    history: dict[str, Any], store: S3BlobStore, index: DynamoIndex, s3: Any, backup: Backup
) -> None:
    image = history["v1"][0]
    layer = image.blobs[1]
    good = backup.source.blobs[layer.digest]
    backup.tamper(s3, layer.digest, bytes(len(good)))  # same size, other bytes
    # Thorough: the second version gives it away before anything is read.
    reader = BucketReader(store)
    with reader.open_blob(layer.digest, layer.size, thorough=True) as stream:
        assert stream.read() == good
    assert layer.digest in reader.recovered
    # Quick (one HEAD): the hash fails on the last read, recover() finds the intact version.
    reader = BucketReader(store)
    with (
        pytest.raises(DigestMismatchError, match=str(layer.digest)),
        reader.open_blob(layer.digest, layer.size) as stream,
    ):
        stream.read()
    reader.recover(layer.digest, layer.size)
    with reader.open_blob(layer.digest, layer.size) as stream:
        assert stream.read() == good


def test_deleted_blob_streams_from_the_version_under_the_marker(
    history: dict[str, Any], store: S3BlobStore, s3: Any, backup: Backup
) -> None:
    layer = history["v1"][1].blobs[1]
    s3.delete_object(Bucket=BUCKET, Key=store.blob_key(layer.digest))
    with BucketReader(store).open_blob(layer.digest, layer.size) as stream:
        assert stream.read() == backup.source.blobs[layer.digest]


def test_a_blob_with_no_intact_version_is_refused(
    store: S3BlobStore, s3: Any, backup: Backup
) -> None:
    data = b"original layer bytes"
    digest = Digest.of(data)
    # Written without the backup's checks: the only version never hashed to its name.
    backup.tamper(s3, digest, b"X" * len(data))
    with (
        pytest.raises(DigestMismatchError, match=str(digest)),
        BucketReader(store).open_blob(digest, len(data)) as stream,
    ):
        stream.read()
    backup.tamper(s3, digest, b"Y" * len(data))  # two bad versions now
    with pytest.raises(DigestMismatchError, match=f"{digest}.*no version"):
        BucketReader(store).locate(digest, size=len(data), thorough=True)
    with pytest.raises(DigestMismatchError, match=f"{digest}.*no version"):
        BucketReader(store).recover(digest, len(data))


def test_a_layer_is_not_read_as_a_manifest(
    history: dict[str, Any], store: S3BlobStore, backup: Backup
) -> None:
    layer = history["v1"][0].blobs[1]
    with pytest.raises(InvalidInputError):
        BucketReader(store).manifest(layer.digest)
