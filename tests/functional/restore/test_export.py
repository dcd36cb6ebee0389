"""Export: OCI layouts and docker-archives written straight from the bucket."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from ecr_backup.catalog.catalog import Catalog
from ecr_backup.errors import DigestMismatchError, InvalidInputError, NotFoundError
from ecr_backup.oci.reference import ImageRef
from ecr_backup.restore.export import REF_NAME, export, split_destination
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex
from tests.helpers import Backup, ProgressRecorder, minutes


@pytest.fixture
def backup(store: S3BlobStore, index: DynamoIndex) -> Backup:
    return Backup(store, index)


def catalog(backup: Backup, *, with_index: bool = True) -> Catalog:
    return Catalog(backup.store, backup.index if with_index else None)


def assert_content_addressed(blobs: dict[str, bytes]) -> None:
    for name, data in blobs.items():
        assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1], name


def tar_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def test_oci_directory_holds_the_whole_index(backup: Backup, tmp_path: Path) -> None:
    image = backup.multi_arch("base", shared=backup.layer())
    backup.push("base", image, "v1", minutes(1))
    out = tmp_path / "layout"
    report = export(catalog(backup), ImageRef.parse("base:v1"), "oci", str(out))
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"] == [
        {
            "mediaType": image.media_type,
            "digest": str(image.digest),
            "size": image.size,
            "annotations": {REF_NAME: "v1"},
        }
    ]
    blobs = {str(p): p.read_bytes() for p in (out / "blobs" / "sha256").iterdir()}
    assert_content_addressed(blobs)
    assert len(blobs) == 3 + 5  # index, two images; two configs, shared and own layers
    assert (out / "blobs" / "sha256" / image.digest.hex).read_bytes() == image.raw
    assert json.loads((out / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert report.manifests == 3 and report.blobs == 5


def test_oci_directory_keeps_other_images(backup: Backup, tmp_path: Path) -> None:
    one, two = backup.image("app"), backup.image("app")
    backup.push("app", one, "one", minutes(1))
    backup.push("app", two, "two", minutes(2))
    out = tmp_path / "layout"
    export(catalog(backup), ImageRef.parse("app:one"), "oci", str(out))
    export(catalog(backup), ImageRef.parse("app:two"), "oci", str(out))
    export(catalog(backup), ImageRef.parse("app:two"), "oci", str(out))
    names = [
        m["annotations"][REF_NAME]
        for m in json.loads((out / "index.json").read_text())["manifests"]
    ]
    assert names == ["one", "two"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="not an OCI image layout"):
        export(catalog(backup), ImageRef.parse("app:one"), "oci", str(tmp_path / "other"))


def test_oci_archive_is_the_layout_in_a_tar(backup: Backup, tmp_path: Path) -> None:
    image = backup.image("app")
    backup.push("app", image, "v1", minutes(1))
    out = tmp_path / "app.tar"
    export(catalog(backup), ImageRef.parse(f"app@{image.digest}"), "oci-archive", str(out))
    members = tar_members(out)
    assert set(members) == {"oci-layout", "index.json"} | {
        f"blobs/sha256/{d.hex}" for d in [image.digest, *(b.digest for b in image.blobs)]
    }
    assert_content_addressed({k: v for k, v in members.items() if k.startswith("blobs/")})
    entry = json.loads(members["index.json"])["manifests"][0]
    assert entry["digest"] == str(image.digest) and "annotations" not in entry  # by digest


def test_docker_archive_is_what_docker_load_reads(backup: Backup, tmp_path: Path) -> None:
    image = backup.image("team/app", docker=True)
    backup.push("team/app", image, "v1", minutes(1))
    out = tmp_path / "app.tar"
    export(catalog(backup), ImageRef.parse("team/app:v1"), "docker-archive", str(out))
    members = tar_members(out)
    manifest = json.loads(members["manifest.json"])
    config, *layers = image.blobs
    assert manifest == [
        {
            "Config": f"blobs/sha256/{config.digest.hex}",
            "RepoTags": ["team/app:v1"],
            "Layers": [f"blobs/sha256/{layer.digest.hex}" for layer in layers],
        }
    ]
    for path in [manifest[0]["Config"], *manifest[0]["Layers"]]:
        assert path in members
    assert not list(tmp_path.glob(".*partial"))


def test_docker_archive_of_a_multi_arch_image_needs_a_platform(
    backup: Backup, tmp_path: Path
) -> None:
    image = backup.multi_arch("base")
    backup.push("base", image, "v1", minutes(1))
    out = tmp_path / "base.tar"
    with pytest.raises(
        InvalidInputError, match=r"multi-platform image \(linux/amd64, linux/arm64\)"
    ):
        export(catalog(backup), ImageRef.parse("base:v1"), "docker-archive", str(out))
    assert not out.exists()
    report = export(
        catalog(backup),
        ImageRef.parse("base:v1"),
        "docker-archive",
        str(out),
        platform="linux/arm64",
    )
    arm64 = image.children[1].digest
    assert report.digest == arm64
    with pytest.raises(NotFoundError, match="no linux/s390x image"):
        export(
            catalog(backup),
            ImageRef.parse("base:v1"),
            "docker-archive",
            str(out),
            platform="linux/s390x",
        )


def test_artifacts_are_not_docker_images(backup: Backup, tmp_path: Path) -> None:
    image = backup.image("app")
    signature = backup.signature("app", image)
    backup.push("app", signature, "sig", minutes(1))
    with pytest.raises(InvalidInputError, match="not a container image"):
        export(
            catalog(backup), ImageRef.parse("app:sig"), "docker-archive", str(tmp_path / "x.tar")
        )


def test_failed_export_leaves_no_file(backup: Backup, tmp_path: Path, s3: Any) -> None:
    image = backup.image("app")
    backup.push("app", image, "v1", minutes(1))
    layer = image.blobs[-1]
    # Two bad versions over the good one, and the good one gone: nothing intact remains.
    versions = s3.list_object_versions(
        Bucket="backup-bucket", Prefix=backup.store.blob_key(layer.digest)
    )
    backup.tamper(s3, layer.digest, b"x" * layer.size)
    s3.delete_object(
        Bucket="backup-bucket",
        Key=backup.store.blob_key(layer.digest),
        VersionId=versions["Versions"][0]["VersionId"],
        BypassGovernanceRetention=True,
    )
    out = tmp_path / "app.tar"
    with pytest.raises(DigestMismatchError, match=str(layer.digest)):
        export(catalog(backup), ImageRef.parse("app:v1"), "oci-archive", str(out))
    assert list(tmp_path.iterdir()) == []


def test_export_by_tag_works_without_the_index(backup: Backup, tmp_path: Path) -> None:
    image = backup.image("app")
    backup.push("app", image, "v1", minutes(1))
    out = tmp_path / "layout"
    report = export(catalog(backup, with_index=False), ImageRef.parse("app:v1"), "oci", str(out))
    assert report.digest == image.digest


def layout_names(out: Path) -> dict[str, str]:
    index = json.loads((out / "index.json").read_text())
    return {m["annotations"][REF_NAME]: m["digest"] for m in index["manifests"]}


def test_a_second_image_under_the_same_name_is_refused_unless_forced(
    backup: Backup, tmp_path: Path
) -> None:
    one, two = backup.image("app"), backup.image("web")
    backup.push("app", one, "v1", minutes(1))
    backup.push("web", two, "v1", minutes(2))
    out = tmp_path / "layout"
    export(catalog(backup), ImageRef.parse("app:v1"), "oci", str(out))
    with pytest.raises(InvalidInputError, match=r"already holds .* as v1: name this one DIR:REF"):
        export(catalog(backup), ImageRef.parse("web:v1"), "oci", str(out))
    assert layout_names(out) == {"v1": str(one.digest)}  # the refused export changed nothing
    export(catalog(backup), ImageRef.parse("web:v1"), "oci", str(out), ref_name="web-v1")
    assert layout_names(out) == {"v1": str(one.digest), "web-v1": str(two.digest)}
    export(catalog(backup), ImageRef.parse("web:v1"), "oci", str(out), force=True)
    assert layout_names(out) == {"v1": str(two.digest), "web-v1": str(two.digest)}


def test_the_reference_name_is_given_after_a_colon(backup: Backup, tmp_path: Path) -> None:
    assert split_destination("./out") == ("./out", None)
    assert split_destination("/tmp/layout:app-v1") == ("/tmp/layout", "app-v1")
    assert split_destination("dir:registry.example.com/app:v1") == (
        "dir",
        "registry.example.com/app:v1",
    )
    assert split_destination("-") == ("-", None)
    with pytest.raises(InvalidInputError, match="invalid reference name"):
        split_destination("out:bad name")
    image = backup.image("app")
    backup.push("app", image, "v1", minutes(1))
    recorder = ProgressRecorder()
    archive = tmp_path / "app.tar"
    report = export(
        catalog(backup), ImageRef.parse("app:v1"), "oci-archive", str(archive),
        ref_name="named", progress=recorder,
    )  # fmt: skip
    assert report.ref_name == "named"
    index = json.loads(tar_members(archive)["index.json"])
    assert index["manifests"][0]["annotations"] == {REF_NAME: "named"}
    [bar] = recorder.bars
    assert bar.label == "export" and bar.done == bar.total == report.bytes and bar.finished
