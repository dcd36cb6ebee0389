"""The devkit's ECR events (devkit/events.py) for images built with the devkit: each kind
parses as the AWS samples do and takes the backup's one event path (over the fakes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devkit.events import EcrEventSource
from devkit.images import BuiltManifest, OciLayoutBuilder
from ecr_backup.backup.events import EventKind, parse_event
from ecr_backup.backup.replicator import Replicator
from ecr_backup.backup.service import handle_ecr_event
from ecr_backup.model import Action
from ecr_backup.oci.digest import Digest
from tests.fakes import FakeAws
from tests.helpers import FakeRegistry

REPO = "team/app"


def publish(
    layout: OciLayoutBuilder, built: BuiltManifest, registry: FakeRegistry, tag: str | None
) -> None:
    """What a push of `built` leaves in a registry: its blobs and manifests, by digest."""
    for child in built.children:
        publish(layout, child, registry, None)
    for blob in built.blobs:
        registry.blobs[Digest.parse(blob.digest)] = layout.read_blob(blob.digest)
    for ref in filter(None, (built.digest, tag)):
        registry.manifests[f"{REPO}@{ref}"] = built.manifest


@pytest.fixture
def layout(tmp_path: Path) -> OciLayoutBuilder:
    return OciLayoutBuilder(tmp_path / "oci")


def test_a_multi_arch_push_emits_its_children_first(layout: OciLayoutBuilder) -> None:
    built = layout.multi_arch_image(ref="v1", layer_size=512)
    events = EcrEventSource().pushed(built, REPO, "v1")
    images = [parse_event(e).image_event() for e in events]
    assert [str(i.digest) for i in images if i] == [c.digest for c in built.children] + [
        built.digest
    ]
    assert [i.tag for i in images if i] == [None] * len(built.children) + ["v1"]


def test_every_devkit_kind_takes_the_event_path(layout: OciLayoutBuilder) -> None:
    aws = FakeAws()
    west, east = FakeRegistry(), FakeRegistry()
    registries = {"us-west-2": west, "us-east-1": east}

    def replicator(account: str, region: str) -> Replicator:
        return Replicator(registries[region], aws.store, aws.index)

    def handle(event: dict[str, object]) -> tuple[str, EventKind | None]:
        outcome = handle_ecr_event(parse_event(event), replicator)
        return outcome.status, outcome.kind

    source = EcrEventSource(region="us-west-2")
    image = layout.simple_image(ref="v1", layer_size=512)
    publish(layout, image, west, "v1")
    (push,) = source.pushed(image, REPO, "v1")
    assert handle(push) == ("backed up", EventKind.IMAGE)

    # A signature pushed later: a Referrer Action, linked to its subject.
    signature = layout.artifact(image)
    publish(layout, signature, west, None)
    (signed,) = source.pushed(signature, REPO)
    assert signed["detail-type"] == "ECR Referrer Action"
    assert handle(signed) == ("backed up", EventKind.REFERRER)
    assert [str(r.digest) for r in aws.index.referrers(Digest.parse(image.digest))] == [
        signature.digest
    ]

    # The same image pushed into the second region's registry stands for replication.
    publish(layout, image, east, "v1")
    replicated = source.replicated(image, REPO, "v1", to_region="us-east-1")
    assert (replicated["region"], replicated["detail"]["source-region"]) == (
        "us-east-1",
        "us-west-2",
    )
    assert handle(replicated) == ("already backed up", EventKind.REPLICATION)
    assert east.manifest_gets == 0

    cached_image = layout.simple_image(ref="cached", layer_size=256, seed=7)
    publish(layout, cached_image, west, "3.19")
    assert handle(source.cached(cached_image, REPO, "3.19")) == (
        "backed up",
        EventKind.PULL_THROUGH_CACHE,
    )

    assert handle(source.archived(image, REPO)) == ("storage class recorded", EventKind.IMAGE)
    assert handle(source.restored(image, REPO)) == ("storage class recorded", EventKind.IMAGE)
    assert handle(source.archived(signature, REPO)) == (
        "storage class recorded",
        EventKind.REFERRER,
    )
    deleted = parse_event(source.deleted(signature, REPO)).image_event()
    assert deleted is not None and deleted.action is Action.DELETE
    assert handle(source.deleted(signature, REPO)) == ("deletion recorded", EventKind.REFERRER)
