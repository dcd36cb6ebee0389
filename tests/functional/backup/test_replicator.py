from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import pytest

from ecr_backup.backup.replicator import Replicator
from ecr_backup.errors import BlobNotFoundError, DigestMismatchError, InvalidInputError
from ecr_backup.model import Action, ImageEvent
from ecr_backup.oci import mediatypes
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Manifest
from ecr_backup.settings import MAX_INDEX_DEPTH
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex
from tests.helpers import BUCKET, FakeRegistry, ProgressRecorder, descriptor

REPO = "team/app"


def stored_keys(s3: Any) -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="backup/blobs/")
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def replicator(registry: FakeRegistry, store: S3BlobStore, index: DynamoIndex) -> Replicator:
    return Replicator(registry, store, index, concurrency=3)


def test_copies_every_blob_and_the_exact_manifest(
    registry: FakeRegistry, replicator: Replicator, store: S3BlobStore, index: DynamoIndex, s3: Any
) -> None:
    layers = [os.urandom(1000), os.urandom(2000)]
    image = registry.image(REPO, layers, tag="v1")
    report = replicator.replicate(REPO, "v1")
    assert report.root == image.digest
    assert set(report.blobs_copied) == {Digest.of(b"{}"), *map(Digest.of, layers)}
    assert report.bytes_copied == 2 + 1000 + 2000
    assert store.read(image.digest) == image.raw  # the registry's bytes, not re-serialized
    for data in layers:
        assert store.read(Digest.of(data)) == data
    record = index.manifest(image.digest)
    assert record is not None and record.total_size == image.size + 3002
    assert len(stored_keys(s3)) == 4


def test_second_image_copies_only_its_new_layer(
    registry: FakeRegistry, replicator: Replicator
) -> None:
    base = [os.urandom(500), os.urandom(600)]
    registry.image(REPO, base, tag="v1")
    replicator.replicate(REPO, "v1")
    new_layer = os.urandom(700)
    registry.image(REPO, [*base, new_layer], tag="v2", config=b'{"v": 2}')
    registry.blob_gets.clear()
    report = replicator.replicate(REPO, "v2")
    assert set(registry.blob_gets) == {Digest.of(new_layer), Digest.of(b'{"v": 2}')}
    assert set(report.blobs_skipped) == set(map(Digest.of, base))


def test_replay_of_a_complete_digest_touches_no_registry(
    registry: FakeRegistry, replicator: Replicator
) -> None:
    image = registry.image(REPO, [os.urandom(100)], tag="v1")
    replicator.replicate(REPO, "v1")
    registry.blob_gets.clear()
    registry.manifest_gets = 0
    report = replicator.replicate(REPO, str(image.digest))
    assert registry.blob_gets == {}
    assert registry.manifest_gets == 0
    assert report.manifests_skipped == [image.digest]


def test_corrupt_blob_stores_nothing_and_leaves_manifest_incomplete(
    registry: FakeRegistry, replicator: Replicator, index: DynamoIndex, s3: Any
) -> None:
    good, bad = os.urandom(300), os.urandom(400)
    image = registry.image(REPO, [good, bad], tag="v1")
    registry.blobs[Digest.of(bad)] = bad[:-1] + b"!"
    with pytest.raises(DigestMismatchError, match=Digest.of(bad).hex):
        replicator.replicate(REPO, "v1")
    keys = stored_keys(s3)
    assert f"backup/blobs/sha256/{Digest.of(bad).hex}" not in keys
    assert f"backup/blobs/sha256/{image.digest.hex}" not in keys
    assert index.manifest(image.digest) is None


def test_index_is_complete_only_after_all_children(
    registry: FakeRegistry, replicator: Replicator, index: DynamoIndex
) -> None:
    amd = registry.image(REPO, [os.urandom(100)], config=b'{"a": 1}')
    arm = registry.image(REPO, [os.urandom(100)], config=b'{"a": 2}')
    arm_layer = registry.blobs.pop(arm.blobs[1].digest)  # missing at the registry for now
    children = [
        {
            **descriptor(amd.media_type, amd.raw),
            "platform": {"os": "linux", "architecture": "amd64"},
        },
        {
            **descriptor(arm.media_type, arm.raw),
            "platform": {"os": "linux", "architecture": "arm64"},
        },
    ]
    multi = registry.add_manifest(
        REPO, {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": children}, "v1"
    )
    with pytest.raises(BlobNotFoundError):
        replicator.replicate(REPO, "v1")
    assert index.manifest(amd.digest) is not None
    assert index.manifest(arm.digest) is None
    assert index.manifest(multi.digest) is None

    registry.blobs[arm.blobs[1].digest] = arm_layer
    report = replicator.replicate(REPO, "v1")
    assert report.manifests_skipped == [amd.digest]
    assert report.manifests_stored == [arm.digest, multi.digest]
    record = index.manifest(multi.digest)
    assert record is not None
    assert record.total_size == multi.size + amd.size + arm.size + sum(
        b.size for b in (*amd.blobs, *arm.blobs)
    )


def test_foreign_layers_are_recorded_and_skipped(
    registry: FakeRegistry, replicator: Replicator, index: DynamoIndex
) -> None:
    config = b'{"os": "windows"}'
    registry.add_blob(config)
    foreign = descriptor(
        mediatypes.DOCKER_FOREIGN_LAYER_GZIP,
        b"not served",
        urls=["https://mcr.microsoft.com/layer"],
    )
    image = registry.add_manifest(
        REPO,
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.DOCKER_MANIFEST,
            "config": descriptor(mediatypes.DOCKER_CONFIG, config),
            "layers": [foreign],
        },
        "win",
    )
    report = replicator.replicate(REPO, "win")
    assert [str(d) for d in report.blobs_foreign] == [foreign["digest"]]
    assert index.manifest(image.digest) is not None


def test_backup_event_records_the_push_in_bucket_and_index(
    registry: FakeRegistry, replicator: Replicator, store: S3BlobStore, index: DynamoIndex
) -> None:
    image = registry.image(REPO, [os.urandom(10)], tag="v1")
    event = ImageEvent(
        repository=REPO,
        digest=image.digest,
        action=Action.PUSH,
        time=datetime(2026, 3, 1, tzinfo=UTC),
        tag="v1",
        source_account="123456789012",
        source_region="us-east-1",
        event_id="abc",
    )
    replicator.backup_event(event)
    replicator.backup_event(event)  # a duplicate delivery
    records = list(store.iter_records())
    assert len(records) == 1
    assert ImageEvent.from_json(records[0][1]) == event
    assert [e.digest for e in index.history(REPO, "v1")] == [image.digest]


def test_progress_counts_every_byte_of_what_was_missing(
    registry: FakeRegistry, store: S3BlobStore, index: DynamoIndex
) -> None:
    base = [os.urandom(5000)]
    registry.image(REPO, base, tag="v1")
    recorder = ProgressRecorder()
    replicator = Replicator(registry, store, index, concurrency=2, progress=recorder)
    replicator.replicate(REPO, "v1")
    registry.image(REPO, [*base, os.urandom(7000)], tag="v2", config=b'{"v": 2}')
    replicator.replicate(REPO, "v2")
    first, second = recorder.bars
    assert (first.label, first.total, first.done, first.finished) == ("replicate", 5002, 5002, True)
    assert (second.total, second.done) == (7008, 7008)  # only the new layer and config


def nested_indexes(registry: FakeRegistry, depth: int) -> Manifest:
    """An image under `depth` image indexes, each listing the one below."""
    manifest = registry.image(REPO, [os.urandom(10)])
    for _ in range(depth):
        child: dict[str, object] = {
            "mediaType": manifest.media_type,
            "digest": str(manifest.digest),
            "size": manifest.size,
        }
        manifest = registry.add_manifest(
            REPO,
            {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": [child]},
        )
    return manifest


def test_a_chain_of_1100_nested_indexes_is_refused_as_input(
    registry: FakeRegistry, replicator: Replicator, s3: Any
) -> None:
    root = nested_indexes(registry, 1100)
    with pytest.raises(InvalidInputError, match=f"at most {MAX_INDEX_DEPTH}") as caught:
        replicator.replicate(REPO, str(root.digest))
    assert caught.value.code == "INDEX_TOO_DEEP"
    assert stored_keys(s3) == set()  # refused before any copy: nothing half-written
    # The bound is the setting: one level less is backed up.
    allowed = nested_indexes(registry, MAX_INDEX_DEPTH)
    assert replicator.replicate(REPO, str(allowed.digest)).root == allowed.digest
