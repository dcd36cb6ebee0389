"""Restore, export, verify and rebuild-index against real parts: images pushed with skopeo
to Debian's registry (S3 storage on moto, 307 redirects, basic auth with moto's ECR
password), backed up by the engine into moto S3/DynamoDB, restored through the CLI and
read back with skopeo."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devkit import (
    BuiltManifest,
    EcrRegistry,
    MotoServer,
    OciLayoutBuilder,
    Registry,
    skopeo_inspect_raw,
    skopeo_push,
)
from ecr_backup.cli import main
from ecr_backup.model import Action, ImageEvent
from ecr_backup.oci.digest import Digest
from tests.integration.conftest import BackupTarget

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ACCOUNT, REGION = "123456789012", "us-east-1"
UPLOAD_DONE = r"^/v2/{repo}/blobs/uploads/[^/]+$"  # the PUT that commits an uploaded blob


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def back_up(
    target: BackupTarget, repository: str, digest: str, tag: str | None, when: datetime
) -> None:
    """What the Lambda does for an ECR push event, with a chosen event time."""
    event = ImageEvent(
        repository=repository,
        digest=Digest.parse(digest),
        action=Action.PUSH,
        time=when,
        tag=tag,
        source_account=ACCOUNT,
        source_region=REGION,
    )
    target.services.replicator(ACCOUNT, REGION).backup_event(event)


def push_and_back_up(
    target: BackupTarget,
    registry: Registry,
    layout: OciLayoutBuilder,
    built: BuiltManifest,
    repository: str,
    tag: str,
    when: datetime,
) -> str:
    digest = skopeo_push(layout.path, built.ref, registry, repository, tag)
    assert digest == built.digest
    back_up(target, repository, digest, tag, when)
    return digest


def ok(run: subprocess.CompletedProcess[str]) -> Any:
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout) if run.stdout.lstrip().startswith(("{", "[")) else run.stdout


def restore(target: BackupTarget, registry: Registry, ref: str, to: str, *args: str) -> Any:
    """`ecr-backup restore` into the local registry, authenticated the ECR way (a token from
    ECR's API). The repository is created first, as ECR wants."""
    registry.ensure_repository(to.partition(":")[0])
    return ok(
        target.cli(
            "restore", ref, "--to", f"{registry.host}/{to}", "--to-auth", "ecr", "--json", *args
        )
    )


def skopeo(*args: str) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(["skopeo", *args], capture_output=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result


def creds(registry: Registry) -> str:
    return f"{registry.username}:{registry.password}"


def uploads(registry: Registry, repository: str) -> int:
    return registry.count_requests("PUT", UPLOAD_DONE.format(repo=repository), status=201)


# -- restore --------------------------------------------------------------------------------


def test_round_trip_is_byte_exact_and_pullable(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    target_registry: EcrRegistry,
    oci_images: OciLayoutBuilder,
    tmp_path: Path,
) -> None:
    image = oci_images.simple_image(ref="v1", n_layers=3, layer_size=200_000, seed=401)
    push_and_back_up(backup_target, registry, oci_images, image, "rt/src", "v1", at(1))

    result = restore(backup_target, target_registry, "rt/src:v1", "rt/restored")
    report = result["report"]
    assert len(report["blobs_uploaded"]) == 4 and report["tags_set"] == ["v1"]
    assert skopeo_inspect_raw(target_registry, "rt/restored", "v1") == image.manifest
    assert uploads(target_registry, "rt/restored") == 4
    skopeo(
        "copy", "--src-tls-verify=false", "--src-creds", creds(target_registry),
        f"docker://{target_registry.host}/rt/restored:v1", f"oci:{tmp_path / 'pulled'}:v1",
    )  # fmt: skip
    pulled = json.loads((tmp_path / "pulled" / "index.json").read_text())
    assert pulled["manifests"][0]["digest"] == image.digest


def test_restore_with_user_and_password_from_the_environment(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    target_registry: EcrRegistry,
    oci_images: OciLayoutBuilder,
) -> None:
    image = oci_images.simple_image(ref="v1", n_layers=1, seed=411)
    push_and_back_up(backup_target, registry, oci_images, image, "basic/src", "v1", at(1))
    backup_target.env["ECR_BACKUP_TARGET_PASSWORD"] = registry.password or ""
    target_registry.ensure_repository("basic/dst")
    run = backup_target.cli(
        "restore", "basic/src:v1", "--to", f"http://{target_registry.host}/basic/dst:copy",
        "--to-username", "AWS",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "restored basic/src:v1@" in run.stdout and "blobs: uploaded 2" in run.stdout
    assert skopeo_inspect_raw(target_registry, "basic/dst", "copy") == image.manifest
    backup_target.env["ECR_BACKUP_TARGET_PASSWORD"] = "wrong"
    denied = backup_target.cli(
        "restore",
        "basic/src:v1",
        "--to",
        f"{target_registry.host}/basic/dst2",
        "--to-username",
        "AWS",
    )
    assert denied.returncode == 3 and "refused our credentials" in denied.stderr


def test_multi_arch_restore_keeps_the_index_digest(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    target_registry: EcrRegistry,
    oci_images: OciLayoutBuilder,
) -> None:
    index = oci_images.multi_arch_image(ref="multi", seed=421)
    push_and_back_up(backup_target, registry, oci_images, index, "ma/src", "multi", at(1))
    result = restore(backup_target, target_registry, "ma/src:multi", "ma/dst")
    assert result["report"]["images"] == [{"digest": index.digest, "tag": "multi"}]
    assert skopeo_inspect_raw(target_registry, "ma/dst", "multi") == index.manifest
    for child in index.children:
        assert skopeo_inspect_raw(target_registry, "ma/dst", child.digest) == child.manifest


def test_point_in_time_restore_of_a_tag_moved_twice(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    target_registry: EcrRegistry,
    oci_images: OciLayoutBuilder,
) -> None:
    versions = [oci_images.simple_image(ref=f"r{i}", n_layers=1, seed=431 + i) for i in range(3)]
    for minute, built in zip((10, 20, 30), versions, strict=True):
        push_and_back_up(backup_target, registry, oci_images, built, "pit/app", "prod", at(minute))
    history = ok(backup_target.cli("history", "pit/app:prod", "--json"))
    assert [h["digest"] for h in history] == [v.digest for v in versions]

    restore(
        backup_target, target_registry, "pit/app:prod", "pit/back", "--at", "2026-01-01T00:15:00Z"
    )
    assert skopeo_inspect_raw(target_registry, "pit/back", "prod") == versions[0].manifest
    restore(
        backup_target,
        target_registry,
        "pit/app:prod",
        "pit/back:second",
        "--at",
        "2026-01-01T00:25:00+00:00",
    )
    assert skopeo_inspect_raw(target_registry, "pit/back", "second") == versions[1].manifest
    too_early = backup_target.cli(
        "restore",
        "pit/app:prod",
        "--to",
        f"{target_registry.host}/pit/back",
        "--at",
        "2026-01-01T00:05:00Z",
    )
    assert too_early.returncode == 5
    assert (
        too_early.stderr == "ecr-backup: error: no backup of pit/app:prod at 2026-01-01T00:05:00Z\n"
    )


def test_only_missing_layers_are_uploaded_and_siblings_are_mounted(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    target_registry: EcrRegistry,
    oci_images: OciLayoutBuilder,
) -> None:
    base = oci_images.simple_image(ref="base", n_layers=2, layer_size=150_000, seed=441)
    app = oci_images.extend(base, ref="app", layer_size=150_000, seed=449)
    push_and_back_up(backup_target, registry, oci_images, base, "inc/base", "v1", at(1))
    push_and_back_up(backup_target, registry, oci_images, app, "inc/app", "v1", at(2))

    restore(backup_target, target_registry, "inc/base:v1", "inc/target")
    before = uploads(target_registry, "inc/target")
    # v1 holds base there: moving it to app is asked for, and reported.
    report = restore(
        backup_target, target_registry, "inc/app:v1", "inc/target", "--allow-tag-moves"
    )["report"]
    assert report["tags_moved"] == [
        {"repository": "inc/target", "tag": "v1", "from": base.digest, "to": app.digest}
    ]
    # The repository holds the two base layers: only the new layer and the config go up.
    assert uploads(target_registry, "inc/target") - before == 2
    assert len(report["blobs_uploaded"]) == 2 and len(report["blobs_present"]) == 2
    assert skopeo_inspect_raw(target_registry, "inc/target", "v1") == app.manifest

    # Into another repository: ECR mounts across repositories only when its BLOB_MOUNTING
    # setting is on. Off (its default), the mount POST opens an upload session: upload.
    report = restore(
        backup_target, target_registry, "inc/app:v1", "inc/unmounted", "--mount-from", "inc/target"
    )["report"]
    assert report["blobs_mounted"] == [] and len(report["blobs_uploaded"]) == 4
    assert uploads(target_registry, "inc/unmounted") == 4
    # On: the base layers are mounted across.
    with target_registry.quirks_changed(blob_mounting=True):
        report = restore(
            backup_target, target_registry, "inc/app:v1", "inc/other", "--mount-from", "inc/target"
        )["report"]
    assert len(report["blobs_mounted"]) == 4 and report["blobs_uploaded"] == []
    assert uploads(target_registry, "inc/other") == 0
    assert (
        target_registry.count_requests("POST", r"^/v2/inc/other/blobs/uploads/$", status=201) == 4
    )
    assert skopeo_inspect_raw(target_registry, "inc/other", "v1") == app.manifest


def test_dry_run_and_all_tags(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    target_registry: EcrRegistry,
    oci_images: OciLayoutBuilder,
) -> None:
    one = oci_images.simple_image(ref="one", n_layers=1, seed=451)
    two = oci_images.simple_image(ref="two", n_layers=1, seed=452)
    push_and_back_up(backup_target, registry, oci_images, one, "all/src", "one", at(1))
    push_and_back_up(backup_target, registry, oci_images, two, "all/src", "two", at(2))
    dry = restore(backup_target, target_registry, "all/src", "all/dst", "--all-tags", "--dry-run")
    assert dry["report"]["dry_run"] and sorted(dry["report"]["tags_set"]) == ["one", "two"]
    assert target_registry.count_requests("PUT", r"^/v2/all/dst/") == 0
    restore(backup_target, target_registry, "all/src", "all/dst", "--all-tags")
    assert skopeo_inspect_raw(target_registry, "all/dst", "one") == one.manifest
    assert skopeo_inspect_raw(target_registry, "all/dst", "two") == two.manifest


def test_ecr_target_creates_the_repository(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    target_registry: EcrRegistry,
    oci_images: OciLayoutBuilder,
    moto_server: MotoServer,
) -> None:
    image = oci_images.simple_image(ref="v1", n_layers=1, seed=461)
    push_and_back_up(backup_target, registry, oci_images, image, "ecr/src", "v1", at(1))
    ecr_host = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    args = ["--to", f"{ecr_host}/ecr/created:v1", "--to-endpoint", target_registry.url, "--json"]
    missing = backup_target.cli("restore", "ecr/src:v1", *args)
    assert missing.returncode == 5 and "pass --create-repository" in missing.stderr
    result = ok(backup_target.cli("restore", "ecr/src:v1", *args, "--create-repository"))
    assert result["report"]["created_repository"] is True
    repositories = moto_server.client("ecr").describe_repositories()["repositories"]
    assert "ecr/created" in [r["repositoryName"] for r in repositories]
    assert skopeo_inspect_raw(target_registry, "ecr/created", "v1") == image.manifest


# -- export --------------------------------------------------------------------------------


def test_export_formats_are_read_back_by_skopeo(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    oci_images: OciLayoutBuilder,
    tmp_path: Path,
) -> None:
    index = oci_images.multi_arch_image(ref="multi", layer_size=100_000, seed=471)
    push_and_back_up(backup_target, registry, oci_images, index, "exp/app", "v1", at(1))
    oci_dir, oci_tar, docker_tar = (
        tmp_path / "layout",
        tmp_path / "oci.tar",
        tmp_path / "docker.tar",
    )
    ok(backup_target.cli("export", "exp/app:v1", "--oci", str(oci_dir)))
    ok(backup_target.cli("export", "exp/app:v1", "--oci-archive", str(oci_tar)))
    ok(
        backup_target.cli(
            "export", "exp/app:v1", "--docker-archive", str(docker_tar), "--platform", "linux/arm64"
        )
    )

    assert skopeo("inspect", "--raw", f"oci:{oci_dir}:v1").stdout == index.manifest
    assert skopeo("inspect", "--raw", f"oci-archive:{oci_tar}:v1").stdout == index.manifest
    arm64 = next(c for c in index.children if (c.platform or {}).get("architecture") == "arm64")
    assert arm64.config is not None
    config = skopeo("inspect", "--raw", "--config", f"docker-archive:{docker_tar}").stdout
    assert hashlib.sha256(config).hexdigest() == arm64.config.digest.removeprefix("sha256:")
    # Full copies out of each: every blob read and checked (docker-archive layers against
    # the config's diff_ids).
    skopeo("copy", "--all", f"oci:{oci_dir}:v1", f"oci:{tmp_path / 'a'}:x")
    skopeo("copy", "--all", f"oci-archive:{oci_tar}:v1", f"oci:{tmp_path / 'b'}:x")
    skopeo("copy", f"docker-archive:{docker_tar}", f"oci:{tmp_path / 'c'}:x")


# -- verify and rebuild-index ----------------------------------------------------------------


def test_verify_passes_then_fails_on_a_tampered_version(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    target_registry: EcrRegistry,
    oci_images: OciLayoutBuilder,
) -> None:
    image = oci_images.simple_image(ref="v1", n_layers=2, layer_size=100_000, seed=481)
    push_and_back_up(backup_target, registry, oci_images, image, "ver/app", "v1", at(1))
    good = ok(backup_target.cli("verify", "--deep", "--json"))
    assert good["ok"] and good["objects_hashed"] == 4

    layer = image.layers[1].descriptor
    original = oci_images.read_blob(layer.digest)
    tampered = bytes(reversed(original))  # same size: only hashing can tell
    key = f"{backup_target.settings.prefix}blobs/sha256/{layer.digest.removeprefix('sha256:')}"
    backup_target.s3.put_object(
        Bucket=backup_target.settings.bucket,
        Key=key,
        Body=tampered,
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=base64.b64encode(hashlib.sha256(tampered).digest()).decode(),
    )
    deep = backup_target.cli("verify", "--deep")
    assert deep.returncode == 1
    assert f"hash: {layer.digest}: the current version of s3://" in deep.stdout
    assert "is intact: restore and export read it" in deep.stdout
    shallow = backup_target.cli("verify", "ver/app:v1")
    assert shallow.returncode == 1 and f"rewritten: {layer.digest}" in shallow.stdout

    # Restore reads the intact (first) version: the image still comes back exactly.
    result = restore(backup_target, target_registry, "ver/app:v1", "ver/back")
    assert layer.digest in result["report"]["recovered_versions"]
    assert skopeo_inspect_raw(target_registry, "ver/back", "v1") == image.manifest


def test_rebuild_index_after_dropping_the_table_answers_as_before(
    capsys: pytest.CaptureFixture[str],
    backup_target: BackupTarget,
    registry: EcrRegistry,
    oci_images: OciLayoutBuilder,
    moto_server: MotoServer,
) -> None:
    first = oci_images.simple_image(ref="a", n_layers=2, seed=491)
    second = oci_images.extend(first, ref="b", seed=495)
    multi = oci_images.multi_arch_image(ref="m", seed=497)
    signature = oci_images.artifact(multi, ref="sig")
    push_and_back_up(backup_target, registry, oci_images, first, "rb/app", "v1", at(1))
    push_and_back_up(backup_target, registry, oci_images, second, "rb/app", "v1", at(2))
    push_and_back_up(backup_target, registry, oci_images, first, "rb/app", "stable", at(3))
    push_and_back_up(backup_target, registry, oci_images, multi, "rb/multi", "latest", at(4))
    digest = skopeo_push(oci_images.path, "sig", registry, "rb/multi", None)
    back_up(backup_target, "rb/multi", digest, None, at(5))
    assert digest == signature.digest

    def query(*args: str) -> Any:
        # In-process: the fixture put the backup's settings in this process's environment.
        code = main([*args, "--json"])
        out, err = capsys.readouterr()
        # A lookup that finds nothing answers with its one-line error: compared as well.
        return json.loads(out) if code == 0 else {"exit": code, "error": err}

    def answers() -> dict[str, Any]:
        result: dict[str, Any] = {"repos": query("repos")}
        for repository in (r["repository"] for r in result["repos"]):
            tags = query("tags", repository)
            result[f"tags {repository}"] = tags
            for row in tags:
                ref = f"{repository}:{row['tag']}"
                result[f"history {ref}"] = query("history", ref)
                result[f"show {ref}"] = query("show", ref)
                result[f"at {ref}"] = query("show", ref, "--at", "2026-01-01T00:01:30Z")
            result[f"untagged {repository}"] = (
                query("history", repository, "--untagged") if repository == "rb/multi" else None
            )
        return result

    before = answers()
    assert before["repos"] == [{"repository": "rb/app"}, {"repository": "rb/multi"}]
    assert before["show rb/multi:latest"]["referrers"][0]["digest"] == signature.digest

    dynamo = moto_server.client("dynamodb")
    table = backup_target.settings.table
    dynamo.update_table(TableName=table, DeletionProtectionEnabled=False)
    dynamo.delete_table(TableName=table)
    assert answers() == before  # from the bucket's push records while the table is gone

    rebuilt = query("rebuild-index")
    assert (
        rebuilt["created_table"]
        and rebuilt["records"] == 5
        and rebuilt["manifests_incomplete"] == []
    )
    assert answers() == before
    again = query("rebuild-index")
    assert not again["created_table"]
    assert answers() == before
