"""Referrers stay discoverable after a restore into a registry without the referrers API:
Debian's docker-registry (CNCF distribution 2.x) answers 404 on /v2/<name>/referrers/, so
`restore --with-referrers` maintains the referrers tag schema (distribution-spec 1.1)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from devkit import EcrRegistry, MotoServer, OciLayoutBuilder, skopeo_inspect_raw, skopeo_push
from devkit.ecr_proxy import EcrQuirks
from ecr_backup.oci import mediatypes
from ecr_backup.oci.digest import Digest
from ecr_backup.restore.referrers import referrers_tag
from ecr_backup.restore.target import parse_target
from tests.integration.conftest import BackupTarget
from tests.integration.test_restore import at, back_up, push_and_back_up, restore

pytestmark = pytest.mark.integration

SBOM = "application/spdx+json"


@pytest.fixture
def no_referrers_api(
    moto_server: MotoServer, registry_storage: MotoServer, registry: EcrRegistry
) -> Iterator[EcrRegistry]:
    """A target without the referrers API, as ECR before June 2024 or Debian's registry."""
    quirks = EcrQuirks(referrers_api=False)
    with EcrRegistry(registry_storage, moto_server, tokens=registry, quirks=quirks) as target:
        yield target


def test_a_signature_and_an_sbom_are_found_from_the_subject_after_a_restore(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    no_referrers_api: EcrRegistry,
    oci_images: OciLayoutBuilder,
) -> None:
    target_registry = no_referrers_api
    image = oci_images.simple_image(ref="app", n_layers=1, seed=811)
    signature = oci_images.artifact(image, ref="sig")
    sbom = oci_images.artifact(
        image, ref="sbom", artifact_type=SBOM, payload=b'{"spdxVersion":"SPDX-2.3"}',
        payload_media_type=SBOM,
    )  # fmt: skip
    push_and_back_up(backup_target, registry, oci_images, image, "ref/app", "v1", at(1))
    for ref, minute in (("sig", 2), ("sbom", 3)):
        digest = skopeo_push(oci_images.path, ref, registry, "ref/app", None)
        back_up(backup_target, "ref/app", digest, None, at(minute))

    document = restore(backup_target, target_registry, "ref/app:v1", "ref/app", "--with-referrers")
    tag = referrers_tag(Digest.parse(image.digest))
    assert document["report"]["referrers_tags_updated"] == [tag]
    assert document["report"]["referrers_listed"] == []

    client, _ = backup_target.services.target_registry(
        parse_target(f"{target_registry.host}/ref/app"), auth="ecr"
    )
    assert client.referrers("ref/app", Digest.parse(image.digest)) is None  # no API: 404
    index = json.loads(skopeo_inspect_raw(target_registry, "ref/app", tag))
    assert index["mediaType"] == mediatypes.OCI_INDEX
    found = {m["digest"]: m for m in index["manifests"]}
    assert set(found) == {signature.digest, sbom.digest}
    assert found[sbom.digest]["artifactType"] == SBOM
    for digest in found:  # each is pullable by digest from the restored repository
        assert Digest.of(skopeo_inspect_raw(target_registry, "ref/app", digest)) == Digest.parse(
            digest
        )

    again = restore(backup_target, target_registry, "ref/app:v1", "ref/app", "--with-referrers")
    assert again["report"]["referrers_tags_updated"] == []


def test_where_the_target_has_the_referrers_api_it_lists_them_and_no_tag_is_written(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    target_registry: EcrRegistry,
    oci_images: OciLayoutBuilder,
) -> None:
    image = oci_images.simple_image(ref="api", n_layers=1, seed=821)
    signature = oci_images.artifact(image, ref="api-sig")
    push_and_back_up(backup_target, registry, oci_images, image, "ref/api", "v1", at(1))
    digest = skopeo_push(oci_images.path, "api-sig", registry, "ref/api", None)
    back_up(backup_target, "ref/api", digest, None, at(2))

    document = restore(backup_target, target_registry, "ref/api:v1", "ref/api", "--with-referrers")
    assert document["report"]["referrers_listed"] == [signature.digest]
    assert document["report"]["referrers_unlisted"] == []
    assert document["report"]["referrers_tags_updated"] == []
