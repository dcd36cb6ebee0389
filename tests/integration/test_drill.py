"""The restore drill against the real parts: read back from the bucket, then (--restore)
one image pushed into a scratch ECR repository through the ECR proxy, read back by
digest, and the repository deleted."""

from __future__ import annotations

import json
import uuid

import pytest

from devkit import EcrRegistry, MotoServer, OciLayoutBuilder, skopeo_push
from tests.integration.conftest import BackupTarget

pytestmark = pytest.mark.integration


def test_a_drill_restores_one_image_into_a_scratch_repository_and_deletes_it(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    moto_server: MotoServer,
    oci_images: OciLayoutBuilder,
) -> None:
    repo = f"dr{uuid.uuid4().hex[:8]}/app"
    image = oci_images.simple_image(ref="v1", n_layers=2, layer_size=30_000, seed=900)
    skopeo_push(oci_images.path, image.ref, registry, repo, "v1")
    assert backup_target.cli("backfill", "--repository-prefix", repo).returncode == 0

    run = backup_target.cli(
        "drill", "--sample", "1", "--scrub-days", "1", "--restore",
        "--restore-registry", registry.url, "--json",
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    document = json.loads(run.stdout)
    assert document["ok"] is True and document["problems"] == []
    assert document["sampled"][0]["digest"] == image.digest
    assert document["objects_verified"] >= 4  # manifest, config, two layers
    check = document["restore"]
    assert check["ok"] is True and check["source"] == f"{repo}@{image.digest}"
    scratch = check["scratch"].rsplit("/", 1)[1]
    assert scratch.startswith("ecr-backup-drill-")
    listed = moto_server.client("ecr").describe_repositories()["repositories"]
    assert scratch not in {r["repositoryName"] for r in listed}  # deleted after the check

    status = backup_target.cli("stats")
    assert "last restore drill:" in status.stdout and ", ok:" in status.stdout
