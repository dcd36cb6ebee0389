from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
import time
import zlib
from typing import Any

import pytest

from ecr_backup.errors import DigestMismatchError, StorageError
from ecr_backup.oci.digest import Digest
from ecr_backup.settings import MiB
from ecr_backup.storage.blobstore import S3BlobStore, _Part
from tests.helpers import BUCKET


def keys(s3: Any) -> list[str]:
    answer = s3.list_objects_v2(Bucket=BUCKET)
    return [item["Key"] for item in answer.get("Contents", [])]


def versions(s3: Any, key: str) -> int:
    answer = s3.list_object_versions(Bucket=BUCKET, Prefix=key)
    return len(answer.get("Versions", []))


def uploads(s3: Any) -> list[Any]:
    return list(s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []))


def test_small_blob_is_stored_under_its_digest(store: S3BlobStore, s3: Any) -> None:
    data = b"layer bytes"
    digest = Digest.of(data)
    assert store.put_stream(digest, len(data), io.BytesIO(data)) is True
    key = f"backup/blobs/sha256/{digest.hex}"
    assert keys(s3) == [key]
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == data
    assert store.stat(digest) == len(data)
    assert store.read(digest) == data


def test_second_write_is_success_without_a_new_version(store: S3BlobStore, s3: Any) -> None:
    data = b"same bytes"
    digest = Digest.of(data)
    assert store.put_stream(digest, len(data), io.BytesIO(data)) is True
    assert store.put_stream(digest, len(data), io.BytesIO(data)) is False
    assert store.put_bytes(digest, data) is False
    assert versions(s3, store.blob_key(digest)) == 1


def test_large_blob_goes_multipart_and_hashes_to_its_name(store: S3BlobStore, s3: Any) -> None:
    data = os.urandom(12 * MiB + 123)
    digest = Digest.of(data)
    assert store.put_stream(digest, len(data), io.BytesIO(data)) is True
    body = s3.get_object(Bucket=BUCKET, Key=store.blob_key(digest))["Body"].read()
    assert hashlib.sha256(body).hexdigest() == digest.hex
    assert len(body) == len(data)
    assert uploads(s3) == []


@pytest.mark.parametrize("size", [100, 11 * MiB])
def test_corrupt_stream_stores_nothing_and_names_the_digest(
    store: S3BlobStore, s3: Any, size: int
) -> None:
    good = os.urandom(size)
    digest = Digest.of(good)
    bad = bytearray(good)
    bad[size // 2] ^= 0xFF
    with pytest.raises(DigestMismatchError, match=digest.hex):
        store.put_stream(digest, size, io.BytesIO(bytes(bad)))
    assert keys(s3) == []
    assert uploads(s3) == []


@pytest.mark.parametrize("delta", [-1, 1])
def test_wrong_size_is_refused(store: S3BlobStore, s3: Any, delta: int) -> None:
    data = os.urandom(6 * MiB)
    digest = Digest.of(data)
    with pytest.raises(DigestMismatchError, match="bytes"):
        store.put_stream(digest, len(data) + delta, io.BytesIO(data))
    assert keys(s3) == []
    assert uploads(s3) == []


def test_put_bytes_refuses_bytes_that_do_not_match(store: S3BlobStore, s3: Any) -> None:
    with pytest.raises(DigestMismatchError):
        store.put_bytes(Digest.of(b"a"), b"b")
    assert keys(s3) == []


def test_records_are_immutable_and_listed(store: S3BlobStore) -> None:
    assert store.put_record("app/_events/one.json", b"{}") is True
    assert store.put_record("app/_events/one.json", b'{"other": 1}') is False
    assert list(store.iter_records()) == [("backup/refs/app/_events/one.json", b"{}")]


def test_part_size_below_s3_minimum_is_refused(s3: Any) -> None:
    with pytest.raises(ValueError, match="5 MiB"):
        S3BlobStore(BUCKET, client=s3, part_size=MiB)


def test_a_failed_multipart_copy_waits_for_parts_in_flight_before_aborting(
    store: S3BlobStore, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS: parts still uploading when the upload is aborted may land afterwards, billed
    and invisible. So a failed part lets the others finish first, then the abort."""
    events: list[str] = []
    upload_part = store._upload_part
    abort = store._abort
    second_part_started = threading.Event()

    def slow_or_failing(key: str, upload_id: str, number: int, part: _Part) -> Any:
        if number == 1:  # fails at once, while part 2 is still sending
            second_part_started.wait(5)
            events.append("part 1 failed")
            raise StorageError("upload part 1: SlowDown")
        second_part_started.set()
        time.sleep(0.3)
        answer = upload_part(key, upload_id, number, part)
        events.append(f"part {number} stored")
        return answer

    def recorded_abort(key: str, upload_id: str) -> None:
        events.append("abort")
        abort(key, upload_id)

    monkeypatch.setattr(store, "_upload_part", slow_or_failing)
    monkeypatch.setattr(store, "_abort", recorded_abort)
    data = os.urandom(11 * MiB)
    with pytest.raises(StorageError, match="SlowDown"):
        store.put_stream(Digest.of(data), len(data), io.BytesIO(data))
    assert events.index("part 2 stored") < events.index("abort")
    assert events[-1] == "abort"
    assert uploads(s3) == [] and keys(s3) == []


def test_multipart_parts_carry_crc32_checksums_s3_composes(store: S3BlobStore, s3: Any) -> None:
    # The digest proves the content; each part's CRC32 lets S3 refuse a part damaged in
    # transit, more cheaply than a second SHA-256 pass (the module docstring says why).
    data = os.urandom(12 * MiB + 123)
    digest = Digest.of(data)
    sent: list[tuple[str, bytes]] = []

    def capture(request: Any, **_: Any) -> None:
        body = request.body  # botocore wraps the bytes in a seekable stream
        position = body.tell()
        checksum = request.headers["x-amz-checksum-crc32"]
        sent.append((checksum.decode() if isinstance(checksum, bytes) else checksum, body.read()))
        body.seek(position)

    # moto stores part checksums without checking them; real S3 refuses a wrong one.
    s3.meta.events.register("before-send.s3.UploadPart", capture)
    assert store.put_stream(digest, len(data), io.BytesIO(data)) is True
    assert len(sent) == 3
    for checksum, body in sent:
        assert checksum == base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    head = s3.head_object(Bucket=BUCKET, Key=store.blob_key(digest), ChecksumMode="ENABLED")
    parts = [data[i : i + store.part_size] for i in range(0, len(data), store.part_size)]
    part_crcs = b"".join(zlib.crc32(p).to_bytes(4, "big") for p in parts)
    composite = base64.b64encode(zlib.crc32(part_crcs).to_bytes(4, "big")).decode()
    # Real S3 appends "-<number of parts>" to a composite checksum; moto leaves it off.
    assert head["ChecksumCRC32"].removesuffix(f"-{len(parts)}") == composite
    assert "ChecksumSHA256" not in head
