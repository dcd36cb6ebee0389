"""Restore against the ECR-faithful proxy (devkit/ecr_proxy.py) with its quirks at their
strictest: 201 on PATCH, a second PATCH per session dropped, parts under 5 MiB refused,
throttling, expiring tokens, unknown repositories refused."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime

import boto3
import pytest

from devkit import EcrRegistry, MotoServer, OciLayoutBuilder, skopeo_inspect_raw, skopeo_push
from ecr_backup.registry.auth import TokenCredentials
from ecr_backup.registry.client import RegistryClient
from ecr_backup.registry.ecr import EcrTokenSource
from ecr_backup.settings import MiB
from tests.integration.conftest import BackupTarget
from tests.integration.test_restore import ACCOUNT, REGION, at, ok, push_and_back_up, restore

pytestmark = pytest.mark.integration

PATCHES = r"^/v2/{repo}/blobs/uploads/[^/]+$"


def stored_sha256(registry: EcrRegistry, digest: str) -> str:
    """What the registry's storage holds for a blob, hashed: byte-exact or not."""
    s3 = registry.storage.client("s3")
    body = s3.get_object(Bucket=registry.storage_bucket, Key=registry.blob_data_key(digest))
    return "sha256:" + hashlib.sha256(body["Body"].read()).hexdigest()


def test_a_40_mib_layer_is_restored_byte_exact_in_one_patch(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    target_registry: EcrRegistry,
    oci_images: OciLayoutBuilder,
) -> None:
    image = oci_images.simple_image(ref="big", n_layers=1, layer_size=40 * MiB, seed=801)
    push_and_back_up(backup_target, registry, oci_images, image, "ecr/big", "v1", at(1))
    layer = image.layers[0].descriptor

    report = restore(backup_target, target_registry, "ecr/big:v1", "ecr/big-restored")["report"]
    assert layer.digest in report["blobs_uploaded"]
    assert skopeo_inspect_raw(target_registry, "ecr/big-restored", "v1") == image.manifest
    assert stored_sha256(target_registry, layer.digest) == layer.digest
    # One PATCH per upload session: the proxy would have dropped a second one.
    patches = target_registry.count_requests("PATCH", PATCHES.format(repo="ecr/big-restored"))
    assert patches == len(report["blobs_uploaded"]) == 2


def test_chunks_are_refused_or_dropped_and_nothing_wrong_is_stored(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    target_registry: EcrRegistry,
    oci_images: OciLayoutBuilder,
) -> None:
    """The multi-chunk option meets ECR's reported dropping of later PATCHes: the registry
    refuses to commit a blob that lacks bytes, and the restore fails loudly."""
    image = oci_images.simple_image(ref="chunky", n_layers=1, layer_size=12 * MiB, seed=811)
    push_and_back_up(backup_target, registry, oci_images, image, "ecr/chunky", "v1", at(1))
    target_registry.ensure_repository("ecr/chunked")
    run = backup_target.cli(
        "restore", "ecr/chunky:v1", "--to", f"{target_registry.host}/ecr/chunked",
        "--to-auth", "ecr", "--chunk-size-mib", "5",
    )  # fmt: skip
    assert run.returncode != 0
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "finish upload" in run.stderr
    layer = image.layers[0].descriptor
    head = target_registry.count_requests("HEAD", rf"^/v2/ecr/chunked/blobs/{layer.digest}$")
    assert head >= 1
    with pytest.raises(Exception, match=r"NoSuchKey|Not Found|404"):
        stored_sha256(target_registry, layer.digest)


def test_a_throttled_restore_completes(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    target_registry: EcrRegistry,
    oci_images: OciLayoutBuilder,
) -> None:
    image = oci_images.simple_image(ref="t", n_layers=3, layer_size=300_000, seed=821)
    push_and_back_up(backup_target, registry, oci_images, image, "ecr/throttled", "v1", at(1))
    with target_registry.quirks_changed(throttle_every=3, retry_after_s=1):
        restore(backup_target, target_registry, "ecr/throttled:v1", "ecr/throttled-back")
    throttled = [r for r in target_registry.logged_requests() if r.status == 429]
    assert len(throttled) >= 3
    assert skopeo_inspect_raw(target_registry, "ecr/throttled-back", "v1") == image.manifest


@pytest.mark.parametrize("status", [401, 403])
def test_an_expired_token_is_refreshed_once(
    target_registry: EcrRegistry,
    moto_server: MotoServer,
    oci_images: OciLayoutBuilder,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
) -> None:
    """ECR answers a stale token with 403 DENIED; the issue speaks of 401: both refresh."""
    image = oci_images.simple_image(ref="tok", n_layers=1, seed=831 + status)
    skopeo_push(oci_images.path, "tok", target_registry, "ecr/tokens", "v1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", target_registry.url)
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    session = boto3.Session(region_name=moto_server.region)
    fetched: list[str] = []
    source = EcrTokenSource(session, ACCOUNT, REGION)

    def counted() -> tuple[str, datetime]:
        fetched.append("token")
        return source()

    client = RegistryClient(target_registry.url, TokenCredentials(counted))
    with target_registry.quirks_changed(token_lifetime_s=1.0, expired_token_status=status):
        assert str(client.get_manifest("ecr/tokens", "v1").digest) == image.digest
        time.sleep(1.5)  # the cached token (kept a minute by the client) is now stale
        refused = target_registry.count_requests("GET", r"/manifests/", status=status)
        assert str(client.get_manifest("ecr/tokens", "v1").digest) == image.digest
    assert len(fetched) == 2
    assert target_registry.count_requests("GET", r"/manifests/", status=status) == refused + 1


def test_a_missing_repository_fails_with_one_clear_line(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    target_registry: EcrRegistry,
    oci_images: OciLayoutBuilder,
) -> None:
    image = oci_images.simple_image(ref="m", n_layers=1, seed=841)
    push_and_back_up(backup_target, registry, oci_images, image, "ecr/src-m", "v1", at(1))
    ecr_host = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    via_ecr = backup_target.cli(
        "restore", "ecr/src-m:v1", "--to", f"{ecr_host}/ecr/nowhere",
        "--to-endpoint", target_registry.url,
    )  # fmt: skip
    assert via_ecr.returncode != 0 and via_ecr.stdout == ""
    assert via_ecr.stderr.count("\n") == 1 and "pass --create-repository" in via_ecr.stderr
    # A host not named as ECR but reached the ECR way is checked through ECR's API too.
    direct = backup_target.cli(
        "restore", "ecr/src-m:v1", "--to", f"{target_registry.host}/ecr/nowhere",
        "--to-auth", "ecr",
    )  # fmt: skip
    assert direct.returncode != 0
    assert direct.stderr.count("\n") == 1, direct.stderr
    assert "ecr/nowhere does not exist" in direct.stderr
    assert "pass --create-repository" in direct.stderr


def repositories(moto_server: MotoServer) -> list[str]:
    listed = moto_server.client("ecr").describe_repositories()["repositories"]
    return [r["repositoryName"] for r in listed]


def test_a_dry_run_checks_the_target_and_any_ecr_api_target_can_be_created(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    target_registry: EcrRegistry,
    oci_images: OciLayoutBuilder,
    moto_server: MotoServer,
) -> None:
    """--to-auth ecr on a host not named as ECR: the dry run refuses a missing repository
    as the real run would, --create-repository creates it (only for real), and a dry
    run into an existing repository opens an upload session there and cancels it."""
    image = oci_images.simple_image(ref="d", n_layers=1, seed=851)
    push_and_back_up(backup_target, registry, oci_images, image, "ecr/src-d", "v1", at(1))
    to = ["--to", f"{target_registry.host}/ecr/dry-new:v1", "--to-auth", "ecr", "--json"]

    refused = backup_target.cli("restore", "ecr/src-d:v1", *to, "--dry-run")
    assert refused.returncode == 5 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "pass --create-repository" in refused.stderr
    would = ok(
        backup_target.cli("restore", "ecr/src-d:v1", *to, "--dry-run", "--create-repository")
    )
    assert would["report"]["dry_run"] and would["report"]["created_repository"] is True
    assert "ecr/dry-new" not in repositories(moto_server)  # a dry run creates nothing
    assert target_registry.count_requests("POST", r"^/v2/ecr/dry-new/") == 0

    done = ok(backup_target.cli("restore", "ecr/src-d:v1", *to, "--create-repository"))
    assert done["report"]["created_repository"] is True
    assert "ecr/dry-new" in repositories(moto_server)
    assert skopeo_inspect_raw(target_registry, "ecr/dry-new", "v1") == image.manifest

    posts = target_registry.count_requests("POST", r"^/v2/ecr/dry-new/blobs/uploads/")
    again = ok(backup_target.cli("restore", "ecr/src-d:v1", *to, "--dry-run"))
    assert again["report"]["dry_run"] and again["report"]["created_repository"] is False
    # The push was tried (and cancelled): the credentials may push there.
    assert target_registry.count_requests("POST", r"^/v2/ecr/dry-new/blobs/uploads/") == posts + 1


def test_a_throttled_token_call_is_retried(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    target_registry: EcrRegistry,
    oci_images: OciLayoutBuilder,
) -> None:
    """The restore's calls to ECR's API answered ThrottlingException (HTTP 400, as ECR's
    API throttles) are retried by botocore; the restore goes on. With every second call
    throttled, the repository check (DescribeRepositories, asked of every target reached
    with --to-auth ecr) and GetAuthorizationToken are each throttled once."""
    image = oci_images.simple_image(ref="tt", n_layers=1, layer_size=100_000, seed=841)
    push_and_back_up(backup_target, registry, oci_images, image, "ecr/token-throttled", "v1", at(1))
    ecr = registry.api_client()  # ECR's API for both registries (one account's tokens)
    before = registry.api_throttled
    with registry.quirks_changed(api_throttle_every=2):
        ecr.describe_repositories()  # the first call passes: the restore's calls are next
        restore(backup_target, target_registry, "ecr/token-throttled:v1", "ecr/token-back")
    assert registry.api_throttled == before + 2
    served = skopeo_inspect_raw(target_registry, "ecr/token-back", "v1")
    assert served == image.manifest
