"""backfill against the real parts: images pushed to the registry and registered with
moto's ECR (DescribeImages), events delivered only where a test says so, the CLI in a
subprocess, moto S3, DynamoDB and SQS."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from devkit import BuiltManifest, EcrRegistry, MotoServer, OciLayoutBuilder, skopeo_push
from devkit.events import sqs_record
from devkit.images import control_plane, http_push_manifest
from ecr_backup.backup.events import parse_event
from ecr_backup.coverage.reconcile import OBSERVED, PUSH_FROM_ECR
from ecr_backup.model import Action, format_time
from ecr_backup.oci.digest import Digest
from tests.integration.conftest import BackupTarget
from tests.integration.test_backup import ecr_event

pytestmark = pytest.mark.integration


def prefix() -> str:
    """A repository prefix of the test's own: the ECR stand-in is shared by the session."""
    return f"bf{uuid.uuid4().hex[:8]}/"


def pushed_at(moto: MotoServer, repository: str, digest: str) -> datetime:
    answer = moto.client("ecr").describe_images(
        repositoryName=repository, imageIds=[{"imageDigest": digest}]
    )
    moment: datetime = answer["imageDetails"][0]["imagePushedAt"]
    return moment.astimezone(UTC)


def backfill(target: BackupTarget, *args: str) -> tuple[int, dict[str, Any], str]:
    run = target.cli("backfill", *args, "--json")
    document = json.loads(run.stdout) if run.stdout.strip() else {}
    return run.returncode, document, run.stderr


def registry_requests(registry: EcrRegistry, repository: str) -> int:
    return sum(1 for r in registry.logged_requests() if f"/v2/{repository}/" in r.path)


def blob_digests(target: BackupTarget) -> set[str]:
    return {f"sha256:{key.rsplit('/', 1)[1]}" for key in target.blob_keys()}


def push_small_images(
    oci_images: OciLayoutBuilder,
    registry: EcrRegistry,
    repo: str,
    tag_prefix: str,
    count: int,
    *,
    seed: int,
) -> list[BuiltManifest]:
    """`count` one-layer images pushed to `repo`, each tagged `<tag_prefix><n>`."""
    images = [
        oci_images.simple_image(
            ref=f"{tag_prefix}{n}", n_layers=1, layer_size=20_000, seed=seed + n
        )
        for n in range(count)
    ]
    for image in images:
        skopeo_push(oci_images.path, image.ref, registry, repo, image.ref)
    return images


def test_backfill_copies_images_pushed_before_setup_with_their_push_times(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    moto_server: MotoServer,
    oci_images: OciLayoutBuilder,
) -> None:
    repo = prefix() + "app"
    images: list[BuiltManifest] = []
    for n, tag in enumerate(("v1", "v2", "v3")):
        image = oci_images.simple_image(ref=tag, n_layers=2, layer_size=50_000, seed=300 + 10 * n)
        assert skopeo_push(oci_images.path, tag, registry, repo, tag) == image.digest
        images.append(image)

    code, report, stderr = backfill(backup_target, "--repository-prefix", repo)

    assert code == 0, stderr
    assert {i["digest"] for i in report["copied"]} == {i.digest for i in images}
    assert report["failed"] == []
    stored = blob_digests(backup_target)
    for image in images:
        assert {image.digest, *(b.digest for b in image.blobs)} <= stored
    for key in backup_target.blob_keys():
        assert hashlib.sha256(backup_target.read(key)).hexdigest() == key.rsplit("/", 1)[1]
    index = backup_target.services.index
    rows_before = {}
    for image in images:
        tag = image.ref
        history = index.history(repo, tag)
        assert [(str(e.digest), e.time, e.event_id) for e in history] == [
            (image.digest, pushed_at(moto_server, repo, image.digest), PUSH_FROM_ECR)
        ]
        rows_before[tag] = history
    since_before = {t.tag: t.time for t in index.tags(repo)}

    # Everything is held: the second run reads ECR's API and the index, not the registry.
    requests_before = registry_requests(registry, repo)
    code, report, stderr = backfill(backup_target, "--repository-prefix", repo)
    assert code == 0, stderr
    assert report["copied"] == [] and report["events_recorded"] == 0
    # A request would be logged just after its response: give a late line time to land.
    time.sleep(1.0)
    assert registry_requests(registry, repo) == requests_before
    for image in images:
        assert index.history(repo, image.ref) == rows_before[image.ref]
    assert {t.tag: t.time for t in index.tags(repo)} == since_before


def test_replicate_records_ecrs_push_time_once(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    moto_server: MotoServer,
    oci_images: OciLayoutBuilder,
) -> None:
    repo = prefix() + "manual"
    image = oci_images.simple_image(ref="v1", n_layers=1, layer_size=20_000, seed=350)
    skopeo_push(oci_images.path, "v1", registry, repo, "v1")
    for _ in range(2):
        run = backup_target.cli("replicate", f"{repo}:v1")
        assert run.returncode == 0, run.stderr
    history = backup_target.services.index.history(repo, "v1")
    assert [(str(e.digest), e.time) for e in history] == [
        (image.digest, pushed_at(moto_server, repo, image.digest))
    ]


def test_dry_run_finds_a_dropped_event_and_backfill_records_drift_and_deletions(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    moto_server: MotoServer,
    oci_images: OciLayoutBuilder,
) -> None:
    repo = prefix() + "drift"
    kept = oci_images.simple_image(ref="kept", n_layers=1, layer_size=30_000, seed=400)
    deleted = oci_images.simple_image(ref="old", n_layers=1, layer_size=30_000, seed=410)
    moved = oci_images.simple_image(ref="moved", n_layers=1, layer_size=30_000, seed=420)
    dropped = oci_images.simple_image(ref="dropped", n_layers=1, layer_size=30_000, seed=430)
    # Pushed, but its event never arrives.
    skopeo_push(oci_images.path, "dropped", registry, repo, "v2")
    time.sleep(1.1)  # ECR's push times have whole seconds: the next events come later
    for image, tag in ((kept, "v1"), (deleted, "old"), (moved, "stable")):
        skopeo_push(oci_images.path, image.ref, registry, repo, tag)
        run = backup_target.cli(
            "handle-event", "-", stdin=json.dumps(ecr_event(repo, image.digest, tag))
        )
        assert run.returncode == 0, run.stderr
    # "stable" moves back onto the older, dropped image (ECR's push time stays the
    # image's first); "old" is deleted from ECR.
    http_push_manifest(registry, repo, "stable", dropped.manifest, dropped.media_type, {})
    ecr = control_plane(registry)
    assert ecr is not None
    ecr.delete(repo, deleted.digest)
    stored_before = blob_digests(backup_target)

    run = backup_target.cli("backfill", "--dry-run", "--repository-prefix", repo)
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"missing   {repo}@{dropped.digest}" in run.stdout
    assert f"{repo}:stable tag moved to {dropped.digest}" in run.stdout
    assert f"gone      {repo}@{deleted.digest}" in run.stdout
    assert blob_digests(backup_target) == stored_before  # a dry run copies nothing

    code, report, stderr = backfill(backup_target, "--repository-prefix", repo)
    assert code == 0, stderr
    assert [i["digest"] for i in report["copied"]] == [dropped.digest]
    assert dropped.digest in blob_digests(backup_target)

    index = backup_target.services.index
    v2 = index.tag(repo, "v2")
    assert v2 is not None and str(v2.digest) == dropped.digest
    assert v2.time == pushed_at(moto_server, repo, dropped.digest)
    stable = index.history(repo, "stable")[-1]
    assert (str(stable.digest), stable.action, stable.event_id) == (
        dropped.digest,
        Action.PUSH,
        OBSERVED,
    )
    removed = index.history(repo, "old")[-1]
    assert (str(removed.digest), removed.action, removed.event_id) == (
        deleted.digest,
        Action.DELETE,
        OBSERVED,
    )
    gone = index.history(repo, None)[-1]
    assert (str(gone.digest), gone.action, gone.event_id) == (
        deleted.digest,
        Action.DELETE,
        OBSERVED,
    )
    assert index.image_states(repo)[Digest.parse(deleted.digest)] is True
    # The backup keeps the deleted image.
    assert index.manifest(Digest.parse(deleted.digest)) is not None
    # The observation is kept in the bucket too, where rebuild-index finds it.
    record = f"{backup_target.settings.prefix}refs/{gone.record_name}"
    assert json.loads(backup_target.read(record))["eventId"] == OBSERVED
    assert format_time(gone.time) in record

    run = backup_target.cli("backfill", "--dry-run", "--repository-prefix", repo)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no drift" in run.stdout


def test_enqueue_sends_one_event_per_missing_image_that_handle_event_backs_up(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    moto_server: MotoServer,
    oci_images: OciLayoutBuilder,
) -> None:
    repo = prefix() + "queued"
    images = push_small_images(oci_images, registry, repo, "q", 3, seed=500)
    sqs = moto_server.client("sqs")
    url = sqs.create_queue(QueueName=f"replicate-{uuid.uuid4().hex[:8]}")["QueueUrl"]

    code, report, stderr = backfill(backup_target, "--repository-prefix", repo, "--enqueue", url)
    assert code == 0, stderr
    assert report["enqueued"] == 3 and report["copied"] == []
    assert blob_digests(backup_target) == set()  # the queue's consumer copies

    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        messages.extend(batch)
    assert len(messages) == 3
    events = [parse_event(m["Body"]) for m in messages]
    named = {(e.detail["image-digest"], e.detail["image-tag"]) for e in events}
    assert named == {(i.digest, i.ref) for i in images}
    for event in events:
        image_event = event.image_event()
        assert image_event is not None and image_event.action is Action.PUSH
        assert image_event.time == pushed_at(moto_server, repo, str(image_event.digest))

    batch = {"Records": [sqs_record(m["Body"], m["MessageId"]) for m in messages]}
    run = backup_target.cli("handle-event", "-", stdin=json.dumps(batch))
    assert run.returncode == 0, run.stderr
    for image in images:
        assert backup_target.services.index.manifest(Digest.parse(image.digest)) is not None
    run = backup_target.cli("backfill", "--dry-run", "--repository-prefix", repo)
    assert run.returncode == 0, run.stdout + run.stderr


def test_backfill_rides_out_ecrs_api_throttling_and_fails_cleanly_when_it_persists(
    backup_target: BackupTarget, registry: EcrRegistry, oci_images: OciLayoutBuilder
) -> None:
    """ECR's API throttles with ThrottlingException (HTTP 400): botocore's standard retries
    (3 attempts) ride out every other call refused; refusing them all ends in one line."""
    repo = prefix() + "throttled"
    images = push_small_images(oci_images, registry, repo, "t", 2, seed=700)

    before = registry.api_throttled
    with registry.quirks_changed(api_throttle_every=2):
        code, report, stderr = backfill(backup_target, "--repository-prefix", repo)
    assert code == 0, stderr
    assert {i["digest"] for i in report["copied"]} == {i.digest for i in images}
    assert registry.api_throttled > before

    with registry.quirks_changed(api_throttle_every=1):
        code, report, stderr = backfill(backup_target, "--repository-prefix", repo)
    assert code == 4, stderr  # ExitCode.REMOTE
    assert report == {}
    assert len(stderr.strip().splitlines()) == 1 and "ThrottlingException" in stderr, stderr
