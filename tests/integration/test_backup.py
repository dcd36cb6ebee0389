"""The core engine against real parts: Debian's registry (S3 storage on moto, 307 redirects,
basic auth with moto's ECR password), skopeo-pushed images, moto S3 and DynamoDB."""

from __future__ import annotations

import hashlib
import json
import random
import threading
from datetime import UTC, datetime

import pytest

from devkit import EcrRegistry, OciLayoutBuilder, skopeo_push
from ecr_backup.errors import DigestMismatchError
from ecr_backup.model import Action, ImageEvent
from ecr_backup.oci.digest import Digest
from tests.integration.conftest import BackupTarget

pytestmark = pytest.mark.integration

BLOB_GET = r"^/v2/{repo}/blobs/sha256:[0-9a-f]{{64}}$"


def ecr_event(repo: str, digest: str, tag: str | None, action: str = "PUSH") -> dict[str, object]:
    detail: dict[str, object] = {
        "result": "SUCCESS",
        "repository-name": repo,
        "image-digest": digest,
        "action-type": action,
    }
    if tag:
        detail["image-tag"] = tag
    return {
        "version": "0",
        "id": f"evt-{digest[7:19]}-{tag}",
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "account": "123456789012",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def blob_gets(registry: EcrRegistry, repo: str) -> int:
    return registry.count_requests("GET", BLOB_GET.format(repo=repo))


def push_event(target: BackupTarget, repo: str, digest: str, tag: str) -> ImageEvent:
    event = ImageEvent(
        repository=repo,
        digest=Digest.parse(digest),
        action=Action.PUSH,
        time=datetime.now(UTC),
        tag=tag,
        source_account="123456789012",
        source_region="us-east-1",
    )
    target.services.replicator("123456789012", "us-east-1").backup_event(event)
    return event


def test_event_backs_up_exact_bytes_under_their_digests(
    backup_target: BackupTarget, registry: EcrRegistry, oci_images: OciLayoutBuilder
) -> None:
    image = oci_images.simple_image(ref="v1", n_layers=3, layer_size=300_000, seed=1)
    digest = skopeo_push(oci_images.path, "v1", registry, "exact/app", "v1")
    assert digest == image.digest

    run = backup_target.cli(
        "handle-event", "-", "--json", stdin=json.dumps(ecr_event("exact/app", digest, "v1"))
    )
    assert run.returncode == 0, run.stderr
    outcome = json.loads(run.stdout)
    assert outcome["action"] == "backed up"
    assert len(outcome["report"]["blobs_copied"]) == 4  # config + 3 layers

    keys = backup_target.blob_keys()
    expected = {image.digest, *(b.digest for b in image.blobs)}
    assert {f"sha256:{k.rsplit('/', 1)[1]}" for k in keys} == expected
    for key in keys:
        data = backup_target.read(key)
        assert hashlib.sha256(data).hexdigest() == key.rsplit("/", 1)[1]
        name = f"sha256:{key.rsplit('/', 1)[1]}"
        source = image.manifest if name == image.digest else oci_images.read_blob(name)
        assert data == source


def test_second_image_fetches_only_new_blobs_and_replay_fetches_none(
    backup_target: BackupTarget, registry: EcrRegistry, oci_images: OciLayoutBuilder
) -> None:
    repo = "incremental/app"
    base = oci_images.simple_image(ref="v1", n_layers=3, layer_size=100_000, seed=2)
    skopeo_push(oci_images.path, "v1", registry, repo, "v1")
    push_event(backup_target, repo, base.digest, "v1")
    assert blob_gets(registry, repo) == 4

    newer = oci_images.extend(base, ref="v2", layer_size=50_000, seed=3)
    skopeo_push(oci_images.path, "v2", registry, repo, "v2")
    before = blob_gets(registry, repo)
    push_event(backup_target, repo, newer.digest, "v2")
    new_blobs = {b.digest for b in newer.blobs} - {b.digest for b in base.blobs}
    assert len(new_blobs) == 2  # its own config and the one new layer
    assert blob_gets(registry, repo) - before == len(new_blobs)

    before = blob_gets(registry, repo)
    manifests_before = registry.count_requests("GET", rf"^/v2/{repo}/manifests/")
    push_event(backup_target, repo, newer.digest, "v2")
    assert blob_gets(registry, repo) == before
    assert registry.count_requests("GET", rf"^/v2/{repo}/manifests/") == manifests_before


def test_blob_corrupted_in_registry_storage_is_refused(
    backup_target: BackupTarget, registry: EcrRegistry, oci_images: OciLayoutBuilder
) -> None:
    repo = "corrupt/app"
    image = oci_images.simple_image(ref="v1", n_layers=2, layer_size=200_000, seed=4)
    skopeo_push(oci_images.path, "v1", registry, repo, "v1")
    victim = image.layers[1].descriptor.digest
    original = oci_images.read_blob(victim)
    tampered = bytearray(original)
    tampered[1000] ^= 0x01
    registry.overwrite_blob_data(victim, bytes(tampered))
    try:
        run = backup_target.cli("replicate", f"{repo}:v1")
    finally:
        registry.overwrite_blob_data(victim, original)
    assert run.returncode == 5  # a data error: the registry served bytes that do not hash
    assert victim in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    stored = {f"sha256:{k.rsplit('/', 1)[1]}" for k in backup_target.blob_keys()}
    assert victim not in stored
    assert image.digest not in stored
    assert backup_target.services.index.manifest(Digest.parse(image.digest)) is None


def test_multi_arch_index_complete_only_after_all_children(
    backup_target: BackupTarget, registry: EcrRegistry, oci_images: OciLayoutBuilder
) -> None:
    repo = "multi/app"
    index = oci_images.multi_arch_image(ref="v1", layer_size=20_000, seed=5)
    skopeo_push(oci_images.path, "v1", registry, repo, "v1")
    amd64, arm64 = index.children
    victim = arm64.layers[0].descriptor.digest
    original = oci_images.read_blob(victim)
    registry.overwrite_blob_data(victim, original[:-1])
    try:
        with pytest.raises(DigestMismatchError, match=victim.removeprefix("sha256:")):
            push_event(backup_target, repo, index.digest, "v1")
        lookup = backup_target.services.index.manifest
        assert lookup(Digest.parse(amd64.digest)) is not None
        assert lookup(Digest.parse(arm64.digest)) is None
        assert lookup(Digest.parse(index.digest)) is None
    finally:
        registry.overwrite_blob_data(victim, original)

    # ECR sends one event per child and one for the index, in any order.
    events = [(child.digest, None) for child in index.children] + [(index.digest, "v1")]
    random.Random(7).shuffle(events)
    for digest, tag in events:
        run = backup_target.cli("handle-event", "-", stdin=json.dumps(ecr_event(repo, digest, tag)))
        assert run.returncode == 0, run.stderr
    for digest in (amd64.digest, arm64.digest, index.digest):
        assert backup_target.services.index.manifest(Digest.parse(digest)) is not None
    assert backup_target.read(f"ecr/blobs/sha256/{index.digest[7:]}") == index.manifest


def test_concurrent_replications_sharing_layers_write_each_blob_once(
    backup_target: BackupTarget, registry: EcrRegistry, oci_images: OciLayoutBuilder
) -> None:
    repo = "concurrent/app"
    base = oci_images.simple_image(ref="a", n_layers=4, layer_size=400_000, seed=8)
    other = oci_images.extend(base, ref="b", layer_size=10_000, seed=9)
    skopeo_push(oci_images.path, "a", registry, repo, "a")
    skopeo_push(oci_images.path, "b", registry, repo, "b")

    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def replicate(digest: str, tag: str) -> None:
        try:
            start.wait()
            push_event(backup_target, repo, digest, tag)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [
        threading.Thread(target=replicate, args=(base.digest, "a")),
        threading.Thread(target=replicate, args=(other.digest, "b")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    s3 = backup_target.s3
    versions = s3.list_object_versions(Bucket=backup_target.settings.bucket, Prefix="ecr/blobs/")
    counts: dict[str, int] = {}
    for version in versions.get("Versions", []):
        counts[version["Key"]] = counts.get(version["Key"], 0) + 1
    expected = {base.digest, other.digest, *(b.digest for b in (*base.blobs, *other.blobs))}
    assert set(counts) == {f"ecr/blobs/sha256/{d[7:]}" for d in expected}
    assert set(counts.values()) == {1}
    for digest in (base.digest, other.digest):
        assert backup_target.services.index.manifest(Digest.parse(digest)) is not None


def test_artifact_with_subject_is_stored_and_indexed(
    backup_target: BackupTarget, registry: EcrRegistry, oci_images: OciLayoutBuilder
) -> None:
    repo = "signed/app"
    image = oci_images.simple_image(ref="v1", n_layers=1, layer_size=1000, seed=10)
    signature = oci_images.artifact(image, ref="sig")
    skopeo_push(oci_images.path, "v1", registry, repo, "v1")
    skopeo_push(oci_images.path, "sig", registry, repo, "sha256-" + image.digest[7:] + ".sig")
    push_event(backup_target, repo, image.digest, "v1")
    push_event(backup_target, repo, signature.digest, "sha256-" + image.digest[7:] + ".sig")
    referrers = backup_target.services.index.referrers(Digest.parse(image.digest))
    assert [str(r.digest) for r in referrers] == [signature.digest]
    assert referrers[0].artifact_type == signature.artifact_type


def test_bad_input_gives_one_line_and_writes_nothing(
    backup_target: BackupTarget, registry: EcrRegistry
) -> None:
    cases = [
        (("replicate", "Bad/Name:v1"), "invalid repository name", 2),
        (("replicate", "app@md5:abcd"), "only sha256", 2),
        (("replicate", "app:bad tag"), "invalid tag", 2),
        (("replicate", "never/pushed:v1"), "not found", 5),
        (("handle-event", "-"), "invalid EventBridge event", 2),
    ]
    for args, message, exit_code in cases:
        run = backup_target.cli(*args, stdin='{"id": "x"}')
        assert run.returncode == exit_code, (args, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, run.stderr)
    malformed = ecr_event("app", "sha256:" + "0" * 64, "v1")
    malformed["detail"] = {"result": "SUCCESS", "action-type": "PUSH"}
    run = backup_target.cli("handle-event", "-", stdin=json.dumps(malformed))
    assert run.returncode == 2 and "repository-name" in run.stderr
    assert backup_target.blob_keys() == []
    assert backup_target.services.index.repositories() == []
