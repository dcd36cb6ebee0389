"""verify and rebuild-index against a backup made by the engine, under moto."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from ecr_backup.catalog.catalog import Catalog
from ecr_backup.maintenance.rebuild import UNKNOWN_MEDIA_TYPE, rebuild_index
from ecr_backup.maintenance.verify import verify
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.reference import ImageRef
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex, Location
from tests.helpers import BUCKET, TABLE, Backup, answers, drop_table, minutes


@pytest.fixture
def backup(store: S3BlobStore, index: DynamoIndex) -> Backup:
    return Backup(store, index)


@pytest.fixture
def images(backup: Backup) -> dict[str, Any]:
    base = backup.layer()
    app = backup.image("app", [base, backup.layer()])
    backup.push("app", app, "v1", minutes(1))
    backup.push("app", backup.image("app", [base, backup.layer()]), "v1", minutes(2))
    multi = backup.multi_arch("multi", shared=base)
    backup.push("multi", multi, "latest", minutes(3))
    signature = backup.signature("multi", multi)
    backup.push("multi", signature, None, minutes(4))
    backup.delete("app", app, "v1", minutes(5))
    return {"app": app, "multi": multi, "signature": signature}


def kinds(report: Any) -> list[tuple[str, str]]:
    return [(p.kind, p.subject) for p in report.problems]


def scan(table: str = TABLE) -> list[Any]:
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    return sorted(items, key=lambda i: (i["pk"]["S"], i["sk"]["S"]))


def test_good_backup_verifies(
    images: dict[str, Any], store: S3BlobStore, index: DynamoIndex
) -> None:
    report = verify(Catalog(store, index), deep=True)
    assert report.ok, report.problems
    assert report.images == 4  # two pushes of app, the index, the signature
    assert report.objects_hashed == report.manifests + report.blobs
    one = verify(Catalog(store, index), ref=ImageRef.parse("multi:latest"))
    assert one.ok and one.images == 2 and one.manifests == 4  # index, 2 images, signature


def test_tampered_version_fails_verify_and_names_the_intact_one(
    images: dict[str, Any], store: S3BlobStore, index: DynamoIndex, backup: Backup, s3: Any
) -> None:
    layer = images["app"].blobs[-1]
    backup.tamper(s3, layer.digest, b"\0" * layer.size)  # same size: only hashing tells
    shallow = verify(Catalog(store, index))
    assert kinds(shallow) == [("rewritten", str(layer.digest))]
    deep = verify(Catalog(store, index), deep=True)
    assert kinds(deep) == [("hash", str(layer.digest))]
    assert "is intact: restore and export read it" in deep.problems[0].detail
    by_ref = verify(
        Catalog(store, index), ref=ImageRef.parse(f"app@{images['app'].digest}"), deep=True
    )
    assert kinds(by_ref) == [("hash", str(layer.digest))]


def test_missing_and_resized_objects_are_problems(
    images: dict[str, Any], store: S3BlobStore, index: DynamoIndex, backup: Backup, s3: Any
) -> None:
    payload = images["signature"].blobs[1]
    s3.delete_object(Bucket=BUCKET, Key=store.blob_key(payload.digest))  # a delete marker
    layer = images["app"].blobs[-1]
    backup.tamper(s3, layer.digest, b"short")
    assert sorted(kinds(verify(Catalog(store, index)))) == sorted(
        [
            ("deleted", str(payload.digest)),
            ("size", str(layer.digest)),
            ("rewritten", str(layer.digest)),
        ]
    )


def test_verify_without_the_index_uses_the_records(
    images: dict[str, Any], store: S3BlobStore, index: DynamoIndex, backup: Backup, s3: Any
) -> None:
    drop_table()
    report = verify(Catalog(store, index), deep=True)
    assert report.ok and report.source == "bucket" and report.images == 4
    s3.put_object(
        Bucket=BUCKET,
        Key=store.record_key("app/_events/garbage.json"),
        Body=b"{}",
        ChecksumAlgorithm="SHA256",
    )
    report = verify(Catalog(store, None))
    assert [p.kind for p in report.problems] == ["record"]


def test_rebuild_reproduces_every_answer_and_is_idempotent(
    images: dict[str, Any], store: S3BlobStore, index: DynamoIndex, backup: Backup
) -> None:
    orphan = backup.layer(77)
    store.put_bytes(Digest.of(orphan), orphan)  # left by a backup interrupted mid-way
    here = Location(store.bucket, store.prefix)
    index.claim_location(here)  # as the first backup through the composition root does
    before = answers(Catalog(store, index))
    table_before = scan()
    drop_table()
    report = rebuild_index(store, DynamoIndex(TABLE, client=boto3.client("dynamodb")))
    assert index.location() == here._replace(region="us-east-1")  # the table's region
    assert (
        report.created_table and report.invalid_records == [] and report.manifests_incomplete == []
    )
    assert report.unreferenced_blobs == 1
    assert answers(Catalog(store, index)) == before
    rebuilt = scan()

    # Everything the engine wrote is back, with the same values but the write times (and
    # the lock bookkeeping, which the next backup or `maintain` reads again from S3).
    def comparable(items: list[Any]) -> list[Any]:
        volatile = ("stored_at", "completed_at", "claimed_at", "lock_until")
        return [
            {k: v for k, v in i.items() if k not in volatile}
            for i in items
            if i["pk"]["S"] != f"BLOB#{Digest.of(orphan)}"
        ]

    assert comparable(rebuilt) == comparable(table_before)
    orphan_item = next(i for i in rebuilt if i["pk"]["S"] == f"BLOB#{Digest.of(orphan)}")
    assert orphan_item["media_type"]["S"] == UNKNOWN_MEDIA_TYPE
    again = rebuild_index(store, DynamoIndex(TABLE, client=boto3.client("dynamodb")))
    assert not again.created_table
    assert scan() == rebuilt


def test_rebuild_reports_what_the_bucket_lacks(
    images: dict[str, Any], store: S3BlobStore, index: DynamoIndex, s3: Any
) -> None:
    layer = images["app"].blobs[-1]
    for version in s3.list_object_versions(Bucket=BUCKET, Prefix=store.blob_key(layer.digest))[
        "Versions"
    ]:
        s3.delete_object(
            Bucket=BUCKET,
            Key=version["Key"],
            VersionId=version["VersionId"],
            BypassGovernanceRetention=True,
        )
    drop_table()
    rebuilt = DynamoIndex(TABLE, client=boto3.client("dynamodb"))
    report = rebuild_index(store, rebuilt)
    assert report.manifests_incomplete == [
        f"{images['app'].digest}: blob {layer.digest} is not in the bucket"
    ]
    assert rebuilt.manifest(images["app"].digest) is None
    assert rebuilt.manifest(images["multi"].digest) is not None
