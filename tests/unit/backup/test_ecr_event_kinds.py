"""Every ECR event kind the backup subscribes to, from AWS's documented samples
(tests/ecr_samples.py): what each parses to, what hostile variants are refused with, and
what the one event code path (backup/service.py) does with each, over the in-memory fakes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ecr_backup.backup.events import EventKind, parse_event
from ecr_backup.backup.replicator import Replicator
from ecr_backup.backup.service import EventOutcome, handle_ecr_event
from ecr_backup.errors import InvalidInputError
from ecr_backup.model import Action, StorageClass
from ecr_backup.oci import mediatypes
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Manifest
from ecr_backup.schema import render
from tests import ecr_samples
from tests.ecr_samples import referrer_action, usable
from tests.fakes import FakeAws
from tests.helpers import FakeRegistry, descriptor

DIGEST = Digest.parse("sha256:" + "ab" * 32)


# -- parsing ------------------------------------------------------------------------------


def test_a_push_sample_becomes_a_push() -> None:
    change = parse_event(usable(ecr_samples.IMAGE_PUSH, DIGEST)).change()
    assert change is not None and change.kind is EventKind.IMAGE and change.storage is None
    assert change.image is not None
    assert (change.image.action, change.image.repository, change.image.tag) == (
        Action.PUSH,
        "my-repository-name",
        "latest",
    )
    assert (change.image.source_account, change.image.source_region) == (
        "123456789012",
        "us-west-2",
    )


def test_a_delete_sample_becomes_a_deletion() -> None:
    image = parse_event(usable(ecr_samples.IMAGE_DELETE, DIGEST)).image_event()
    assert image is not None and image.action is Action.DELETE and image.digest == DIGEST


def test_a_replication_is_a_push_where_the_copy_now_lives() -> None:
    change = parse_event(usable(ecr_samples.REPLICATION, DIGEST)).change()
    assert change is not None and change.kind is EventKind.REPLICATION
    image = change.image
    assert image is not None and image.action is Action.PUSH
    assert (image.repository, image.tag, str(image.digest)) == (
        "docker-hub/alpine",
        "3.17.2",
        str(DIGEST),
    )
    # Pulled from the destination (the event's account and region); the origin is logged.
    assert (image.source_account, image.source_region) == ("123456789012", "us-east-1")
    assert change.origin == "123456789012/us-west-2"


def test_a_failed_replication_is_ignored_before_its_detail_is_trusted() -> None:
    # AWS's sample of a failure carries a digest that is not hex: never parsed.
    assert parse_event(ecr_samples.REPLICATION_FAILED).change() is None


def test_a_pull_through_cache_sync_is_a_push_of_the_cached_image() -> None:
    change = parse_event(usable(ecr_samples.PULL_THROUGH_CACHE, DIGEST)).change()
    assert change is not None and change.kind is EventKind.PULL_THROUGH_CACHE
    image = change.image
    assert image is not None and image.action is Action.PUSH
    assert (image.repository, image.tag) == ("docker-hub/alpine", "3.17.2")
    assert change.origin == "public.ecr.aws"


@pytest.mark.parametrize(
    ("sample", "kind", "storage_class"),
    [
        (ecr_samples.IMAGE_ARCHIVE, EventKind.IMAGE, StorageClass.ARCHIVE),
        (ecr_samples.IMAGE_RESTORE, EventKind.IMAGE, StorageClass.STANDARD),
        (ecr_samples.REFERRER_RESTORE, EventKind.REFERRER, StorageClass.STANDARD),
    ],
)
def test_storage_class_samples_become_storage_changes(
    sample: dict[str, Any], kind: EventKind, storage_class: StorageClass
) -> None:
    # These samples' digests are valid as printed: parsed verbatim.
    change = parse_event(sample).change()
    assert change is not None and change.kind is kind and change.image is None
    storage = change.storage
    assert storage is not None and storage.storage_class is storage_class
    assert storage.repository == sample["detail"]["repository-name"]
    assert storage.artifact_media_type == sample["detail"]["artifact-media-type"]
    assert storage.record_name.startswith(f"{storage.repository}/_storage/")
    assert json.loads(storage.to_json())["storageClass"] == str(storage_class)


@pytest.mark.parametrize("action", ["PUSH", "DELETE"])
def test_referrer_pushes_and_deletions_become_image_events(action: str) -> None:
    change = parse_event(referrer_action(action, DIGEST)).change()
    assert change is not None and change.kind is EventKind.REFERRER
    assert change.image is not None and change.image.action is Action(action)


@pytest.mark.parametrize(
    "event",
    [
        usable(ecr_samples.IMAGE_PUSH, DIGEST, result="FAILURE"),
        usable(ecr_samples.IMAGE_PUSH, DIGEST, action_type="SCAN"),
        usable(ecr_samples.PULL_THROUGH_CACHE, DIGEST, sync_status="FAILED"),
        usable(ecr_samples.REPLICATION, DIGEST, action_type="PUSH"),
        {**usable(ecr_samples.IMAGE_PUSH, DIGEST), "source": "my.app"},
        {**usable(ecr_samples.IMAGE_PUSH, DIGEST), "detail-type": "ECR Image Scan"},
    ],
    ids=["failed", "other-action", "sync-failed", "not-replicate", "not-ecr", "scan"],
)
def test_events_not_acted_on_are_ignored(event: dict[str, Any]) -> None:
    assert parse_event(event).change() is None


@pytest.mark.parametrize(
    ("event", "message"),
    [
        # AWS's own placeholders, as printed: 60 hex digits, and a 29 February in 2023.
        (ecr_samples.IMAGE_PUSH, "digest"),
        (ecr_samples.REPLICATION, "digest"),
        (usable(ecr_samples.PULL_THROUGH_CACHE), "digest"),
        (ecr_samples.PULL_THROUGH_CACHE, "time"),
        (usable(ecr_samples.IMAGE_ARCHIVE, target_storage_class="GLACIER"), "'GLACIER'"),
        (usable(ecr_samples.IMAGE_RESTORE, target_storage_class=None), "target-storage-class"),
        (usable(ecr_samples.IMAGE_ARCHIVE, image_digest=None), "no image-digest"),
        (usable(ecr_samples.REPLICATION, image_digest=None), "no image-digest"),
        (usable(ecr_samples.PULL_THROUGH_CACHE, image_digest=None), "no image-digest"),
        (referrer_action("PUSH", DIGEST, repository="Team/App"), "repository name"),
        (usable(ecr_samples.PULL_THROUGH_CACHE, DIGEST, sync_status=None), "sync-status"),
        (usable(ecr_samples.REPLICATION, DIGEST, result=None), "result"),
        (usable(ecr_samples.REPLICATION, DIGEST, image_tag="-bad tag"), "tag"),
        (usable(ecr_samples.IMAGE_PUSH, DIGEST, image_digest=["sha256:00"]), "image-digest"),
        ({**ecr_samples.IMAGE_ARCHIVE, "detail": "ARCHIVE"}, "detail"),
    ],
    ids=[
        "push-sample-digest",
        "replication-sample-digest",
        "cache-sample-digest",
        "cache-sample-day",
        "unknown-class",
        "no-class",
        "archive-no-digest",
        "replication-no-digest",
        "cache-no-digest",
        "referrer-bad-repository",
        "cache-no-status",
        "replication-no-result",
        "replication-bad-tag",
        "digest-not-text",
        "detail-not-object",
    ],
)
def test_hostile_events_are_refused_in_one_line(event: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as refused:
        parse_event(json.dumps(event)).change()
    assert "\n" not in str(refused.value)


# -- acting on them -------------------------------------------------------------------------


class Kit:
    """A source registry in two regions (the second holds the replicated copies) and the
    in-memory backup, with the replicator handle_ecr_event asks for, per account and region."""

    def __init__(self) -> None:
        self.aws = FakeAws()
        self.registries = {"us-west-2": FakeRegistry(), "us-east-1": FakeRegistry()}
        self.asked: list[tuple[str, str]] = []

    def replicator(self, account: str, region: str) -> Replicator:
        self.asked.append((account, region))
        return Replicator(self.registries[region], self.aws.store, self.aws.index)

    def handle(self, event: dict[str, Any], **options: bool) -> EventOutcome:
        return handle_ecr_event(parse_event(event), self.replicator, **options)

    def records(self, under: str) -> list[str]:
        return [n for n in self.aws.store.iter_record_names() if under in n]


def sign(registry: FakeRegistry, repository: str, subject: Manifest) -> Manifest:
    """A signature referring to `subject`, pushed to `registry` by digest as cosign does."""
    registry.add_blob(b"{}")
    registry.add_blob(b"signed")
    return registry.add_manifest(repository, signature_of(subject))


def signature_of(subject: Manifest) -> dict[str, object]:
    return {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        "config": descriptor(mediatypes.OCI_EMPTY, b"{}"),
        "layers": [descriptor("application/vnd.dev.sigstore.bundle.v0.3+json", b"signed")],
        "subject": {
            "mediaType": subject.media_type,
            "digest": str(subject.digest),
            "size": len(subject.raw),
        },
    }


def test_a_referrer_pushed_later_is_backed_up_and_linked_to_its_subject() -> None:
    kit = Kit()
    source = kit.registries["us-west-2"]
    image = source.image("team/app", [b"layer"], tag="v1")
    kit.handle(usable(ecr_samples.IMAGE_PUSH, image.digest, repository="team/app"))
    signature = sign(source, "team/app", image)

    outcome = kit.handle(
        referrer_action("PUSH", signature.digest, "team/app") | {"region": "us-west-2"}
    )

    assert (outcome.status, outcome.kind) == ("backed up", EventKind.REFERRER)
    assert [r.digest for r in kit.aws.index.referrers(image.digest)] == [signature.digest]


def test_a_referrer_deletion_is_recorded_and_nothing_is_deleted() -> None:
    kit = Kit()
    source = kit.registries["us-west-2"]
    image = source.image("team/app", [b"layer"], tag="v1")
    signature = sign(source, "team/app", image)
    west = {"region": "us-west-2"}
    kit.handle(referrer_action("PUSH", signature.digest) | west)
    held = set(kit.aws.bucket.list_keys(""))

    outcome = kit.handle(referrer_action("DELETE", signature.digest) | west)

    assert outcome.status == "deletion recorded" and outcome.kind is EventKind.REFERRER
    assert kit.aws.index.manifest(signature.digest) is not None
    assert [r.digest for r in kit.aws.index.referrers(image.digest)] == [signature.digest]
    assert len(kit.records("_DELETE_")) == 1
    assert held <= set(kit.aws.bucket.list_keys(""))


def test_a_replicated_image_already_held_copies_nothing_and_reads_no_registry() -> None:
    kit = Kit()
    image = kit.registries["us-west-2"].image("team/app", [b"base", b"app"], tag="v1")
    kit.handle(usable(ecr_samples.IMAGE_PUSH, image.digest, repository="team/app"))
    east = kit.registries["us-east-1"]
    east.image("team/app", [b"base", b"app"], tag="v1")

    outcome = kit.handle(usable(ecr_samples.REPLICATION, image.digest, repository="team/app"))

    assert (outcome.status, outcome.kind) == ("already backed up", EventKind.REPLICATION)
    assert kit.asked[-1] == ("123456789012", "us-east-1")
    assert (east.manifest_gets, sum(east.blob_gets.values())) == (0, 0)


def test_a_replicated_image_copies_only_the_blobs_not_held() -> None:
    kit = Kit()
    first = kit.registries["us-west-2"].image("team/app", [b"base", b"v1"], tag="v1")
    kit.handle(usable(ecr_samples.IMAGE_PUSH, first.digest, repository="team/app"))
    east = kit.registries["us-east-1"]
    second = east.image("team/app", [b"base", b"v2"], tag="v2")

    outcome = kit.handle(
        usable(ecr_samples.REPLICATION, second.digest, repository="team/app", image_tag="v2")
    )

    assert outcome.status == "backed up" and outcome.report is not None
    assert outcome.report.blobs_copied == [Digest.of(b"v2")]
    assert set(outcome.report.blobs_skipped) == {Digest.of(b"base"), Digest.of(b"{}")}
    assert east.blob_gets[Digest.of(b"base")] == 0


def test_a_pull_through_cached_image_is_backed_up_unless_turned_off() -> None:
    kit = Kit()
    cached = kit.registries["us-west-2"].image("docker-hub/alpine", [b"alpine"], tag="3.17.2")
    event = usable(ecr_samples.PULL_THROUGH_CACHE, cached.digest)

    off = kit.handle(event, pull_through_cache=False)
    assert (off.status, off.kind) == ("ignored", EventKind.PULL_THROUGH_CACHE)
    assert kit.asked == [] and kit.aws.index.manifest(cached.digest) is None

    on = kit.handle(event)
    assert (on.status, on.kind) == ("backed up", EventKind.PULL_THROUGH_CACHE)
    assert kit.aws.index.manifest(cached.digest) is not None


def test_an_archive_is_recorded_without_reading_the_registry_and_replays_are_harmless() -> None:
    kit = Kit()
    archive = usable(ecr_samples.IMAGE_ARCHIVE, DIGEST, region="us-east-1")

    outcomes = [kit.handle(archive), kit.handle(archive)]

    assert [o.status for o in outcomes] == ["storage class recorded"] * 2
    assert render("handle-event", outcomes[0])["storage_class"] == "ARCHIVE"
    assert len(kit.records("/_storage/")) == 1
    assert kit.registries["us-east-1"].manifest_gets == 0
    assert kit.aws.index.manifest(DIGEST) is None


def test_a_restored_image_already_held_is_only_recorded() -> None:
    kit = Kit()
    east = kit.registries["us-east-1"]
    image = east.image("ubuntu", [b"jammy"], tag="22.04")
    kit.handle(
        usable(ecr_samples.IMAGE_PUSH, image.digest, repository="ubuntu", region="us-east-1")
    )
    gets = east.manifest_gets

    outcome = kit.handle(usable(ecr_samples.IMAGE_RESTORE, image.digest))

    assert outcome.status == "storage class recorded" and outcome.report is None
    assert east.manifest_gets == gets
    assert len(kit.records("_STANDARD_")) == 1


def test_a_restored_image_missing_from_the_backup_is_backed_up() -> None:
    kit = Kit()
    image = kit.registries["us-east-1"].image("ubuntu", [b"jammy"])

    outcome = kit.handle(usable(ecr_samples.IMAGE_RESTORE, image.digest))

    assert (outcome.status, outcome.kind) == ("backed up", EventKind.IMAGE)
    assert outcome.storage is not None and outcome.storage.storage_class is StorageClass.STANDARD
    assert kit.aws.index.manifest(image.digest) is not None
    assert len(kit.records("_PUSH_")) == 1 and len(kit.records("_STANDARD_")) == 1
