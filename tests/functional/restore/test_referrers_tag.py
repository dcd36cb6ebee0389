"""Restored referrers stay discoverable: the referrers tag schema where the target has no
referrers API (distribution-spec 1.1), merged with what the tag already lists; the API,
where there is one, to check."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ecr_backup.catalog.catalog import Catalog
from ecr_backup.oci import mediatypes
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Manifest, parse_manifest
from ecr_backup.oci.reference import ImageRef
from ecr_backup.restore.plan import RestoreRequest, plan_restore
from ecr_backup.restore.push import Restorer, RestoreReport
from ecr_backup.restore.referrers import referrer_descriptor, referrers_tag
from ecr_backup.restore.target import parse_target
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex
from tests.helpers import Backup, FakeTarget, descriptor, minutes

SBOM_TYPE = "application/spdx+json"


@pytest.fixture
def backup(store: S3BlobStore, index: DynamoIndex) -> Backup:
    return Backup(store, index)


def sbom(backup: Backup, repository: str, subject: Manifest) -> Manifest:
    document = b'{"spdxVersion":"SPDX-2.3"}'
    backup.source.add_blob(document)
    backup.source.add_blob(b"{}")
    return backup.source.add_manifest(
        repository,
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "artifactType": SBOM_TYPE,
            "config": descriptor(mediatypes.OCI_EMPTY, b"{}"),
            "layers": [descriptor(SBOM_TYPE, document)],
            "subject": descriptor(subject.media_type, subject.raw),
            "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
        },
    )


@pytest.fixture
def signed(backup: Backup) -> tuple[Manifest, Manifest, Manifest]:
    image = backup.image("app")
    backup.push("app", image, "v1", minutes(1))
    signature = backup.signature("app", image)
    bill = sbom(backup, "app", image)
    backup.push("app", signature, None, minutes(2))
    backup.push("app", bill, None, minutes(3))
    return image, signature, bill


def restore(backup: Backup, target: FakeTarget, *, dry_run: bool = False) -> RestoreReport:
    catalog = Catalog(backup.store, backup.index)
    request = RestoreRequest(ImageRef.parse("app:v1"), with_referrers=True)
    plan = plan_restore(catalog, request, parse_target("registry.example.com/app"))
    restorer = Restorer(catalog.reader, target)
    return restorer.preview(plan) if dry_run else restorer.run(plan)


def referrers_index(target: FakeTarget, subject: Digest) -> dict[str, Any]:
    manifest = target.get_manifest("app", referrers_tag(subject))
    assert manifest.media_type == mediatypes.OCI_INDEX
    document: dict[str, Any] = json.loads(manifest.raw)
    return document


def test_referrers_tag_names_the_subject() -> None:
    digest = Digest.of(b"x")
    assert referrers_tag(digest) == f"sha256-{digest.hex}"


def test_without_a_referrers_api_the_tag_lists_signature_and_sbom(
    backup: Backup, signed: tuple[Manifest, Manifest, Manifest]
) -> None:
    image, signature, bill = signed
    target = FakeTarget()
    report = restore(backup, target)
    assert report.referrers.tags_updated == [referrers_tag(image.digest)]
    entries = {e["digest"]: e for e in referrers_index(target, image.digest)["manifests"]}
    assert entries[str(bill.digest)] == {
        "mediaType": mediatypes.OCI_MANIFEST,
        "digest": str(bill.digest),
        "size": bill.size,
        "artifactType": SBOM_TYPE,
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    }
    assert entries[str(signature.digest)]["artifactType"] == signature.artifact_type
    assert len(entries) == 2
    # The tag's index is what the API would answer: found from the subject alone.
    with_api = FakeTarget(manifests=target.manifests, blobs=target.blobs, referrers_api=True)
    listed = with_api.referrers("app", image.digest)
    assert listed is not None and {str(d.digest) for d in listed} == set(entries)
    # Again: nothing to add, the tag is not written again.
    again = restore(backup, target)
    assert (
        again.referrers.tags_updated == []
        and len(referrers_index(target, image.digest)["manifests"]) == 2
    )


def test_the_tag_is_merged_with_what_it_already_lists(
    backup: Backup, signed: tuple[Manifest, Manifest, Manifest]
) -> None:
    image, signature, _ = signed
    target = FakeTarget()
    # Another client's referrer, pushed straight to the target and listed under the tag.
    attestation = backup.signature("app", image)
    for blob in attestation.blobs:
        target.blobs.setdefault("app", {})[blob.digest] = backup.source.blobs[blob.digest]
    target.put_manifest("app", str(attestation.digest), attestation)
    other = referrer_descriptor(attestation)
    listed_already = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": [other]}
    raw = json.dumps(listed_already).encode()
    target.put_manifest("app", referrers_tag(image.digest), parse_manifest(raw))
    restore(backup, target)
    digests = [e["digest"] for e in referrers_index(target, image.digest)["manifests"]]
    assert digests[0] == other["digest"] and str(signature.digest) in digests and len(digests) == 3


def test_a_tag_that_is_not_an_index_is_reported_and_left_alone(
    backup: Backup, signed: tuple[Manifest, Manifest, Manifest]
) -> None:
    image, _, _ = signed
    target = FakeTarget()
    squatter = backup.image("app", [])
    for blob in squatter.blobs:
        target.blobs.setdefault("app", {})[blob.digest] = backup.source.blobs[blob.digest]
    target.put_manifest("app", referrers_tag(image.digest), squatter)
    report = restore(backup, target)
    assert report.referrers.tags_updated == []
    (problem,) = report.referrers.problems
    assert "not the referrers index" in problem
    assert target.manifest_digest("app", referrers_tag(image.digest)) == squatter.digest


def test_with_a_referrers_api_it_checks_and_writes_no_tag(
    backup: Backup, signed: tuple[Manifest, Manifest, Manifest]
) -> None:
    image, signature, bill = signed
    target = FakeTarget(referrers_api=True)
    report = restore(backup, target)
    assert set(report.referrers.listed) == {signature.digest, bill.digest}
    assert report.referrers.unlisted == [] and report.referrers.tags_updated == []
    assert referrers_tag(image.digest) not in target.manifests["app"]


def test_dry_run_says_which_tags_it_would_update(
    backup: Backup, signed: tuple[Manifest, Manifest, Manifest]
) -> None:
    image, _, _ = signed
    target = FakeTarget()
    report = restore(backup, target, dry_run=True)
    assert report.referrers.tags_updated == [referrers_tag(image.digest)]
    assert target.calls == []


def test_the_restored_index_parses_as_an_oci_index(
    backup: Backup, signed: tuple[Manifest, Manifest, Manifest]
) -> None:
    image, _, _ = signed
    target = FakeTarget()
    restore(backup, target)
    raw = target.manifests["app"][referrers_tag(image.digest)]
    assert parse_manifest(raw).media_type == mediatypes.OCI_INDEX
