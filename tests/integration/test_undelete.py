"""undelete against the real parts: images pushed with skopeo through the ECR proxy, backed
up by backfill, deleted from the registry (and so from ECR's API), observed gone by the
next backfill, then brought back by `ecr-backup undelete` in a subprocess."""

from __future__ import annotations

import json
import uuid

import pytest
import urllib3

from devkit import EcrRegistry, OciLayoutBuilder, skopeo_push
from ecr_backup.oci import mediatypes
from tests.integration.conftest import BackupTarget

pytestmark = pytest.mark.integration

ACCEPT = ", ".join((mediatypes.OCI_MANIFEST, mediatypes.OCI_INDEX, mediatypes.DOCKER_MANIFEST))


def manifest_digest(registry: EcrRegistry, repo: str, reference: str) -> str | None:
    """What the registry serves under a tag or digest (None: not there)."""
    answer = urllib3.request(
        "HEAD",
        f"{registry.url}/v2/{repo}/manifests/{reference}",
        headers={**registry.auth_headers, "Accept": ACCEPT},
        retries=False,
    )
    if answer.status == 404:
        return None
    assert answer.status == 200, answer.status
    return answer.headers["Docker-Content-Digest"]


def delete_manifest(registry: EcrRegistry, repo: str, digest: str) -> None:
    """As `aws ecr batch-delete-image` would: the image and its tags go."""
    answer = urllib3.request(
        "DELETE",
        f"{registry.url}/v2/{repo}/manifests/{digest}",
        headers=registry.auth_headers,
        retries=False,
    )
    assert answer.status == 202, answer.status


def test_deleted_images_and_tags_come_back_and_a_tag_pushed_again_is_not_moved(
    backup_target: BackupTarget, registry: EcrRegistry, oci_images: OciLayoutBuilder
) -> None:
    repo = f"ud{uuid.uuid4().hex[:8]}/app"
    images = {
        tag: oci_images.simple_image(ref=tag, n_layers=1, layer_size=20_000, seed=700 + n)
        for n, tag in enumerate(("v1", "v2", "v3"))
    }
    for tag, image in images.items():
        skopeo_push(oci_images.path, image.ref, registry, repo, tag)
    run = backup_target.cli("backfill", "--repository-prefix", repo)
    assert run.returncode == 0, run.stdout + run.stderr
    since = json.loads(backup_target.cli("history", f"{repo}:v3", "--json").stdout)[-1]["time"]

    for tag in ("v1", "v2"):  # someone deletes two images (and so their tags)
        delete_manifest(registry, repo, images[tag].digest)
    run = backup_target.cli("backfill", "--repository-prefix", repo)  # reconcile sees it
    assert run.returncode == 0, run.stdout + run.stderr
    assert manifest_digest(registry, repo, "v1") is None
    # A new image is pushed as v2 before anyone notices.
    newer = oci_images.simple_image(ref="newer", n_layers=1, layer_size=20_000, seed=799)
    skopeo_push(oci_images.path, newer.ref, registry, repo, "v2")

    common = ("--since", since, "--to-registry", registry.url, "--to-auth", "ecr", "--json")
    dry = backup_target.cli("undelete", repo, *common, "--dry-run")
    assert dry.returncode == 1, dry.stderr  # a tag is skipped
    assert manifest_digest(registry, repo, images["v1"].digest) is None  # nothing pushed

    run = backup_target.cli("undelete", repo, *common)
    assert run.returncode == 1, run.stderr
    document = json.loads(run.stdout)
    back = {i["digest"]: i["tags"] for i in document["images"]}
    assert back == {images["v1"].digest: ["v1"], images["v2"].digest: []}
    assert document["skipped"] == [
        {
            "repository": repo,
            "tag": "v2",
            "digest": images["v2"].digest,
            "current": newer.digest,
            "reason": "pushed again since",
        }
    ]
    assert manifest_digest(registry, repo, "v1") == images["v1"].digest
    assert manifest_digest(registry, repo, images["v2"].digest) == images["v2"].digest
    assert manifest_digest(registry, repo, "v2") == newer.digest  # not moved
    assert manifest_digest(registry, repo, "v3") == images["v3"].digest  # untouched

    moved = backup_target.cli("undelete", repo, *common, "--allow-tag-moves")
    assert moved.returncode == 0, moved.stderr
    assert manifest_digest(registry, repo, "v2") == images["v2"].digest


def test_a_window_without_deletions_changes_nothing(
    backup_target: BackupTarget, registry: EcrRegistry, oci_images: OciLayoutBuilder
) -> None:
    repo = f"ud{uuid.uuid4().hex[:8]}/app"
    image = oci_images.simple_image(ref="v1", n_layers=1, layer_size=20_000, seed=800)
    skopeo_push(oci_images.path, image.ref, registry, repo, "v1")
    assert backup_target.cli("backfill", "--repository-prefix", repo).returncode == 0
    run = backup_target.cli(
        "undelete",
        repo,
        "--since",
        "2020-01-01T00:00:00Z",
        "--to-registry",
        registry.url,
        "--to-auth",
        "ecr",
    )
    assert run.returncode == 0, run.stderr
    assert "nothing was deleted in 2020-01-01T00:00:00Z.." in run.stdout
    bad = backup_target.cli("undelete", "--since", "2020-01-01T00:00:00Z")
    assert bad.returncode == 2 and "REPOSITORY or --all-repositories" in bad.stderr
