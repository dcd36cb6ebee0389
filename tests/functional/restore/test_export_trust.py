"""Export starts at once and trusts nothing on disk: no version listing while the bucket is
intact, the intact version when it is not, a corrupt file in a layout replaced, and a
warning for a Docker image in an OCI layout."""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ecr_backup.catalog.catalog import Catalog
from ecr_backup.cli import main
from ecr_backup.oci.reference import ImageRef
from ecr_backup.restore.export import Format, export
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex
from tests.helpers import BUCKET, TABLE, Backup, ProgressRecorder, minutes

FORMATS: list[Format] = ["oci", "oci-archive", "docker-archive"]


@pytest.fixture
def backup(store: S3BlobStore, index: DynamoIndex) -> Backup:
    return Backup(store, index)


@pytest.fixture
def calls(s3: Any) -> Counter[str]:
    """S3 operations the export sends, by name."""
    seen: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        seen[model.name] += 1

    s3.meta.events.register("before-call.s3", count)
    return seen


def out_path(tmp_path: Path, fmt: Format) -> Path:
    return tmp_path / ("layout" if fmt == "oci" else f"{fmt}.tar")


def written(path: Path, fmt: Format) -> dict[str, bytes]:
    """The blobs an export wrote, by hex digest."""
    if fmt == "oci":
        return {p.name: p.read_bytes() for p in (path / "blobs" / "sha256").iterdir()}
    with tarfile.open(path) as tar:
        return {
            m.name.rsplit("/", 1)[1]: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile() and m.name.startswith("blobs/sha256/")
        }


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_intact_bucket_is_read_without_listing_versions_and_progress_starts_first(
    backup: Backup, tmp_path: Path, calls: Counter[str], s3: Any, fmt: Format
) -> None:
    image = backup.image("app", [backup.layer(), backup.layer(), backup.layer()])
    backup.push("app", image, "v1", minutes(1))
    catalog = Catalog(backup.store, backup.index)
    catalog.resolve(ImageRef.parse("app:v1"))
    catalog.reader.closure(image.digest)
    calls.clear()
    bars = ProgressRecorder()
    bars_at_first_read: list[int] = []
    s3.meta.events.register(
        "before-call.s3.GetObject", lambda **_: bars_at_first_read.append(len(bars.bars))
    )
    path = out_path(tmp_path, fmt)
    report = export(catalog, ImageRef.parse("app:v1"), fmt, str(path), progress=bars)
    assert calls["ListObjectVersions"] == 0
    assert calls["GetObject"] == 4 and bars_at_first_read[0] == 1
    assert report.blobs == 4 and report.replaced == [] and report.warnings == []
    for name, data in written(path, fmt).items():
        assert hashlib.sha256(data).hexdigest() == name


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_written_over_blob_is_exported_from_its_intact_version(
    backup: Backup, tmp_path: Path, s3: Any, fmt: Format
) -> None:
    image = backup.image("app")
    backup.push("app", image, "v1", minutes(1))
    layer = image.blobs[-1]
    backup.tamper(s3, layer.digest, b"x" * layer.size)  # same size: only the hash tells
    path = out_path(tmp_path, fmt)
    report = export(Catalog(backup.store, backup.index), ImageRef.parse("app:v1"), fmt, str(path))
    assert list(report.recovered_versions) == [str(layer.digest)]
    assert written(path, fmt)[layer.digest.hex] == backup.source.blobs[layer.digest]
    assert not list(tmp_path.glob(".*.partial")) and report.bytes == sum(
        b.size for b in image.blobs
    )


def test_a_corrupt_file_in_a_layout_is_replaced_and_reported(
    backup: Backup, tmp_path: Path
) -> None:
    image = backup.image("app")
    backup.push("app", image, "v1", minutes(1))
    catalog = Catalog(backup.store, backup.index)
    path = tmp_path / "layout"
    export(catalog, ImageRef.parse("app:v1"), "oci", str(path))
    blobs = path / "blobs" / "sha256"
    layer = image.blobs[-1]
    (blobs / layer.digest.hex).write_bytes(b"y" * layer.size)  # same size, other bytes
    (blobs / image.digest.hex).write_bytes(b"{}")
    again = export(catalog, ImageRef.parse("app:v1"), "oci", str(path))
    assert set(again.replaced) == {layer.digest, image.digest}
    assert again.bytes == layer.size  # the intact files were kept, not copied again
    for name, data in written(path, "oci").items():
        assert hashlib.sha256(data).hexdigest() == name


def test_a_docker_image_in_an_oci_layout_comes_with_a_warning(
    backup: Backup,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in (("BUCKET", BUCKET), ("TABLE", TABLE), ("PREFIX", "backup/")):
        monkeypatch.setenv(f"ECR_BACKUP_{name}", value)
    backup.push("app", backup.image("app", docker=True), "docker", minutes(1))
    backup.push("app", backup.image("app"), "oci", minutes(2))
    assert main(["export", "app:docker", "--oci", str(tmp_path / "layout")]) == 0
    _, err = capsys.readouterr()
    (warning,) = err.splitlines()
    assert warning.startswith("ecr-backup: warning: ") and "Docker v2 schema 2" in warning
    assert "skopeo" in warning and "--docker-archive" in warning
    assert main(["export", "app:docker", "--oci-archive", str(tmp_path / "a.tar"), "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "--docker-archive" in json.loads(out)["warnings"][0]
    for args in (
        ["app:oci", "--oci", str(tmp_path / "layout2")],
        ["app:docker", "--docker-archive", str(tmp_path / "d.tar")],
    ):
        assert main(["export", *args]) == 0
        assert capsys.readouterr().err == ""
