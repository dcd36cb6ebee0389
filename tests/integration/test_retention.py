"""Locks, prune, stats against real parts: Debian's registry, skopeo-pushed images, the
moto server's S3 and DynamoDB, and the CLI. Time is moved with an injected clock; S3's own
default retention is computed from the real time, as AWS does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from devkit import LocalRegistry, OciLayoutBuilder, skopeo_push
from devkit.images import BuiltManifest
from ecr_backup.cli import main
from ecr_backup.cli.common import settings_from
from ecr_backup.composition import AwsServices
from ecr_backup.model import Action, ImageEvent
from ecr_backup.oci.digest import Digest
from tests.integration.conftest import BackupTarget

pytestmark = pytest.mark.integration
LOCK = timedelta(days=35)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def services(
    backup_target: BackupTarget, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AwsServices]:
    """The engine wired as in production, on the target, reading the moved clock; the
    CLI's maintenance commands are given the same (they build their own otherwise)."""
    session = boto3.Session(region_name=backup_target.s3.meta.region_name)
    built = AwsServices(backup_target.settings, session, clock=clock)

    def with_clock(args: Any) -> AwsServices:
        return AwsServices(settings_from(args), session, clock=clock)

    monkeypatch.setattr("ecr_backup.cli.maintenance.services_from", with_clock)
    yield built
    built.store.close()


@dataclass
class World:
    target: BackupTarget
    services: AwsServices
    clock: Clock
    registry: LocalRegistry
    images: OciLayoutBuilder
    capsys: pytest.CaptureFixture[str]


@pytest.fixture
def world(
    backup_target: BackupTarget,
    services: AwsServices,
    clock: Clock,
    registry: LocalRegistry,
    oci_images: OciLayoutBuilder,
    capsys: pytest.CaptureFixture[str],
) -> World:
    return World(backup_target, services, clock, registry, oci_images, capsys)


def back_up(services: AwsServices, repo: str, digest: str, tag: str, clock: Clock) -> None:
    event = ImageEvent(repo, Digest.parse(digest), Action.PUSH, clock(), tag)
    services.replicator("123456789012", "us-east-1").backup_event(event)


def objects_of(image: BuiltManifest) -> dict[str, int]:
    return {image.digest: len(image.manifest), **{b.digest: b.size for b in image.blobs}}


def lock_of(target: BackupTarget, digest: str) -> datetime:
    key = f"{target.settings.prefix}blobs/sha256/{digest.removeprefix('sha256:')}"
    head = target.s3.head_object(Bucket=target.settings.bucket, Key=key)
    until: datetime = head["ObjectLockRetainUntilDate"]
    return until.astimezone(UTC)


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code = main([*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_reused_base_layer_and_maintain_keep_kept_images_locked(world: World) -> None:
    backup_target, services, clock = world.target, world.services, world.clock
    registry, oci_images, capsys = world.registry, world.images, world.capsys
    image_a = oci_images.simple_image(ref="a", n_layers=2, layer_size=50_000, seed=10)
    back_up(
        services, "ret/app", skopeo_push(oci_images.path, "a", registry, "ret/app", "a"), "a", clock
    )
    base = image_a.layers[0].descriptor.digest

    clock.now += timedelta(days=20)  # beyond half the lock period
    image_b = oci_images.extend(image_a, ref="b", layer_size=50_000, seed=20)
    back_up(
        services, "ret/app", skopeo_push(oci_images.path, "b", registry, "ret/app", "b"), "b", clock
    )
    assert lock_of(backup_target, base) >= clock() + LOCK  # read with HeadObject
    only_b = set(objects_of(image_b)) - set(objects_of(image_a))
    for digest in only_b:  # written whole, with the retention the PUT set: now + LockDays
        assert abs(lock_of(backup_target, digest) - (clock() + LOCK)) < timedelta(minutes=1)

    clock.now += timedelta(days=30)  # A's own objects and B's new ones lapse within 5 days
    code, report = cli_json(capsys, "maintain")
    assert code == 1  # locks were found short: the invariant had broken
    assert report["images_kept"] == 2
    only_a = set(objects_of(image_a)) - set(objects_of(image_b))
    # B's backup extended what it reused from A (the base layer): only that is not short.
    assert {c["digest"] for c in report["short"]} == only_a | only_b
    for digest in {*objects_of(image_a), *objects_of(image_b)}:
        assert lock_of(backup_target, digest) >= clock() + LOCK
    code, report = cli_json(capsys, "maintain")
    assert code == 0 and report["extended"] == [] and report["short"] == []


def test_prune_two_phases_keep_the_shared_layer_and_a_locked_object(world: World) -> None:
    backup_target, services, clock = world.target, world.services, world.clock
    registry, oci_images, capsys = world.registry, world.images, world.capsys
    base = oci_images.simple_image(ref="base", n_layers=1, layer_size=40_000, seed=30)
    kept = oci_images.extend(base, ref="kept", layer_size=40_000, seed=31)
    gone = oci_images.extend(
        oci_images.extend(base, ref="gone0", layer_size=40_000, seed=32),
        ref="gone",
        layer_size=40_000,
        seed=33,
    )
    for ref in ("kept", "gone"):
        digest = skopeo_push(oci_images.path, ref, registry, "ret/svc", ref)
        back_up(services, "ret/svc", digest, ref, clock)
    clock.now += timedelta(days=1)
    deleted = ImageEvent("ret/svc", Digest.parse(gone.digest), Action.DELETE, clock(), "gone")
    services.replicator("123456789012", "us-east-1").record(deleted)

    clock.now += timedelta(days=100)  # past KeepDeletedDays (90) and every default lock
    shared = base.layers[0].descriptor.digest
    unshared = set(objects_of(gone)) - set(objects_of(kept))
    assert shared not in unshared and len(unshared) == 4  # manifest, config, two layers
    locked = gone.layers[-1].descriptor.digest
    locked_until = clock() + timedelta(days=30)
    backup_target.s3.put_object_retention(
        Bucket=backup_target.settings.bucket,
        Key=f"{backup_target.settings.prefix}blobs/sha256/{locked.removeprefix('sha256:')}",
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": locked_until},
    )

    code, dry = cli_json(capsys, "prune", "--dry-run")
    assert code == 0 and dry["dry_run"]
    by_action: dict[str, set[str]] = {}
    for entry in dry["objects"]:
        by_action.setdefault(entry["action"], set()).add(entry["digest"])
    assert by_action == {"mark": unshared - {locked}, "locked": {locked}}
    assert dry["bytes_marked"] == sum(objects_of(gone)[d] for d in unshared - {locked})
    assert all("past 90 days" in e["reason"] for e in dry["objects"])

    code, first = cli_json(capsys, "prune")
    assert {e["digest"] for e in first["objects"] if e["action"] == "mark"} == unshared
    clock.now += timedelta(hours=25)
    code, second = cli_json(capsys, "prune")
    deleted_now = {e["digest"] for e in second["objects"] if e["action"] == "delete"}
    assert deleted_now == unshared - {locked}
    (reported,) = [e for e in second["objects"] if e["action"] == "locked"]
    assert reported["digest"] == locked
    assert reported["lock_until"] == locked_until.replace(microsecond=0).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert second["bytes_freed"] == sum(objects_of(gone)[d] for d in deleted_now)
    assert second["images_pruned"] == [{"repository": "ret/svc", "digest": gone.digest}]

    keys = set(backup_target.blob_keys())  # current objects only
    for digest in objects_of(kept):
        assert f"{backup_target.settings.prefix}blobs/sha256/{digest[7:]}" in keys
    for digest in deleted_now:
        assert f"{backup_target.settings.prefix}blobs/sha256/{digest[7:]}" not in keys

    verified = backup_target.cli("verify", "--deep", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"]
    restored = backup_target.cli("show", "ret/svc:kept", "--json")
    assert restored.returncode == 0, restored.stderr


def test_stats_match_a_hand_count(world: World) -> None:
    services, clock = world.services, world.clock
    registry, oci_images, capsys = world.registry, world.images, world.capsys
    first = oci_images.simple_image(ref="one", n_layers=2, layer_size=30_000, seed=40)
    second = oci_images.extend(first, ref="two", layer_size=30_000, seed=41)
    other = oci_images.simple_image(ref="other", n_layers=1, layer_size=20_000, seed=42)
    for repo, ref in (("ret/a", "one"), ("ret/a", "two"), ("ret/b", "other")):
        back_up(services, repo, skopeo_push(oci_images.path, ref, registry, repo, ref), ref, clock)

    code, answer = cli_json(capsys, "stats", "--aws-backup")
    assert code == 0
    a_objects = {**objects_of(first), **objects_of(second)}
    b_objects = objects_of(other)
    logical_a = sum(objects_of(first).values()) + sum(objects_of(second).values())
    unique = sum({**a_objects, **b_objects}.values())
    assert answer["objects"] == len({**a_objects, **b_objects})
    assert answer["logical_bytes"] == logical_a + sum(b_objects.values())
    assert answer["unique_bytes"] == unique == answer["kept_unique_bytes"]
    assert answer["dedup_ratio"] == round(answer["logical_bytes"] / unique, 3)
    assert answer["locked_bytes"] == unique and answer["unlocked_bytes"] == 0
    assert answer["repositories"] == [
        {
            "repository": "ret/a",
            "images_kept": 2,
            "logical_bytes": logical_a,
            "unique_bytes": sum(a_objects.values()),
        },
        {
            "repository": "ret/b",
            "images_kept": 1,
            "logical_bytes": sum(b_objects.values()),
            "unique_bytes": sum(b_objects.values()),
        },
    ]
    cost = answer["monthly_cost"]
    assert cost["s3_standard"] == round(unique / 1024**3 * 0.023, 2)
    assert cost["aws_backup"] == round(unique / 1024**3 * 0.05 * 2, 2)
