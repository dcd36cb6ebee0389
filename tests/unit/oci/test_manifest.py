from __future__ import annotations

import json

import pytest

from ecr_backup.errors import InvalidInputError, UnsupportedManifestError
from ecr_backup.oci import mediatypes
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import parse_manifest
from ecr_backup.oci.reference import ImageRef

HEX = "a" * 64


def test_digest_parses_validates_and_prints() -> None:
    digest = Digest.parse(f"sha256:{HEX}")
    assert (digest.algorithm, digest.hex, str(digest)) == ("sha256", HEX, f"sha256:{HEX}")
    assert Digest.of(b"") == Digest.parse(
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"sha512:{'a' * 128}", "only sha256"),
        ("sha256:ABC", "invalid sha256"),
        (HEX, "expected 'sha256:<64 hex>'"),
        (f"sha256:{'A' * 64}", "invalid sha256"),
    ],
)
def test_digest_refuses_anything_but_sha256(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Digest.parse(text)


def test_digest_checksum_is_base64_of_raw_hash() -> None:
    assert Digest.of(b"abc").checksum_sha256() == "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="


def test_manifest_keeps_exact_bytes_and_digest() -> None:
    document = {
        "schemaVersion": 2,
        "mediaType": mediatypes.DOCKER_MANIFEST,
        "config": {"mediaType": mediatypes.DOCKER_CONFIG, "digest": f"sha256:{HEX}", "size": 2},
        "layers": [
            {"mediaType": mediatypes.DOCKER_LAYER_GZIP, "digest": f"sha256:{'b' * 64}", "size": 9}
        ],
    }
    raw = json.dumps(document, indent=7).encode() + b"\n\n"
    manifest = parse_manifest(raw)
    assert manifest.raw is raw
    assert manifest.digest == Digest.of(raw)
    assert manifest.media_type == mediatypes.DOCKER_MANIFEST
    assert [str(b.digest) for b in manifest.blobs] == [f"sha256:{HEX}", f"sha256:{'b' * 64}"]
    assert not manifest.is_index


def test_media_type_from_header_or_shape_when_document_omits_it() -> None:
    index = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    assert parse_manifest(index).media_type == mediatypes.OCI_INDEX
    assert parse_manifest(index, mediatypes.DOCKER_MANIFEST_LIST).media_type == (
        mediatypes.DOCKER_MANIFEST_LIST
    )


def test_index_children_and_subject() -> None:
    child = {
        "mediaType": mediatypes.OCI_MANIFEST,
        "digest": f"sha256:{HEX}",
        "size": 10,
        "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
    }
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_INDEX,
            "manifests": [child],
            "subject": {
                "mediaType": mediatypes.OCI_MANIFEST,
                "digest": f"sha256:{'c' * 64}",
                "size": 1,
            },
        }
    ).encode()
    manifest = parse_manifest(raw)
    assert manifest.is_index
    assert str(manifest.children[0].platform) == "linux/arm64/v8"
    assert manifest.subject is not None and manifest.subject.digest.hex == "c" * 64


def test_schema1_is_refused_clearly() -> None:
    raw = json.dumps({"schemaVersion": 1, "name": "x", "fsLayers": []}).encode()
    with pytest.raises(UnsupportedManifestError, match="schema 1"):
        parse_manifest(raw)
    with pytest.raises(UnsupportedManifestError, match="schema 1"):
        parse_manifest(b"{}", mediatypes.DOCKER_SCHEMA1_SIGNED)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b'{"schemaVersion": 2, "mediaType": "text/plain"}', "unsupported manifest media type"),
        (
            b'{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "md5:00", "size": 1}}',
            "invalid application/vnd.oci.image.manifest.v1\\+json manifest at config.digest",
        ),
    ],
)
def test_bad_manifests_name_what_is_wrong(raw: bytes, message: str) -> None:
    with pytest.raises((InvalidInputError, UnsupportedManifestError), match=message):
        parse_manifest(raw)


@pytest.mark.parametrize(
    ("text", "repository", "tag", "digest"),
    [
        ("team/app", "team/app", "latest", None),
        ("team/app:v1.2", "team/app", "v1.2", None),
        (f"app@sha256:{HEX}", "app", None, f"sha256:{HEX}"),
        (f"app:v1@sha256:{HEX}", "app", "v1", f"sha256:{HEX}"),
    ],
)
def test_image_references(text: str, repository: str, tag: str | None, digest: str | None) -> None:
    ref = ImageRef.parse(text)
    assert ref.repository == repository
    assert ref.tag == tag
    assert (str(ref.digest) if ref.digest else None) == digest


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Team/App:v1", "invalid repository name 'Team/App'"),
        ("app:-bad", "invalid tag '-bad'"),
        ("app@sha1:abc", "only sha256"),
        ("a", "invalid repository name"),
    ],
)
def test_bad_references_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        ImageRef.parse(text)
