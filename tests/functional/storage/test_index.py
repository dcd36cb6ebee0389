from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ecr_backup.errors import ConfigurationError, ExitCode
from ecr_backup.model import Action, ImageEvent, ManifestRecord
from ecr_backup.oci.digest import Digest
from ecr_backup.storage.index import DynamoIndex, Location

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def digest(n: int) -> Digest:
    return Digest.of(str(n).encode())


def event(tag: str | None, n: int, minutes: int, action: Action = Action.PUSH) -> ImageEvent:
    return ImageEvent(
        repository="team/app",
        digest=digest(n),
        action=action,
        time=T0 + timedelta(minutes=minutes),
        tag=tag,
        source_account="123456789012",
        source_region="eu-west-1",
        event_id=f"e{n}-{minutes}",
    )


def test_blob_lookup_costs_one_batch_get_per_hundred(
    index: DynamoIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = [digest(n) for n in range(0, 250, 2)]
    for d in stored:
        index.record_blob(d, 10, "application/octet-stream", T0)
    calls: list[int] = []
    real = index._db.batch_get_item

    def counting(**kwargs: Any) -> Any:
        calls.append(len(kwargs["RequestItems"][index.table]["Keys"]))
        return real(**kwargs)

    monkeypatch.setattr(index._db, "batch_get_item", counting)
    asked = [digest(n) for n in range(250)]
    assert index.stored_blobs(asked) == set(stored)
    assert calls == [100, 100, 50]


def test_manifest_complete_and_referrers(index: DynamoIndex) -> None:
    assert index.manifest(digest(1)) is None
    image = ManifestRecord(digest(1), "application/vnd.oci.image.manifest.v1+json", 500, 9000, T0)
    signature = ManifestRecord(
        digest(2), image.media_type, 300, 400, T0, subject=digest(1), artifact_type="sig"
    )
    index.mark_complete(image)
    index.mark_complete(signature)
    assert index.manifest(digest(1)) == image
    assert index.referrers(digest(1)) == [signature]


def test_tags_history_and_point_in_time(index: DynamoIndex) -> None:
    for e in (event("v1", 1, 0), event("v1", 2, 10), event("v1", 3, 20), event("v10", 9, 5)):
        index.record_event(e)
    assert index.repositories() == ["team/app"]
    current = {t.tag: (t.digest, t.action) for t in index.tags("team/app")}
    assert current == {"v1": (digest(3), Action.PUSH), "v10": (digest(9), Action.PUSH)}
    assert [e.digest for e in index.history("team/app", "v1")] == [digest(1), digest(2), digest(3)]
    assert index.tag_at("team/app", "v1", T0 - timedelta(seconds=1)) is None
    at_15 = index.tag_at("team/app", "v1", T0 + timedelta(minutes=15))
    assert at_15 is not None and at_15.digest == digest(2)
    at_10 = index.tag_at("team/app", "v1", T0 + timedelta(minutes=10))
    assert at_10 is not None and at_10.digest == digest(2)
    assert at_10.source_region == "eu-west-1"


def test_out_of_order_and_replayed_events_keep_the_newest(index: DynamoIndex) -> None:
    newer, older = event("prod", 2, 10), event("prod", 1, 0)
    for e in (newer, older, newer, older):
        index.record_event(e)
    [tag] = index.tags("team/app")
    assert tag.digest == digest(2)
    assert len(index.history("team/app", "prod")) == 2


def test_tag_removal_is_recorded_not_forgotten(index: DynamoIndex) -> None:
    index.record_event(event("v1", 1, 0))
    index.record_event(event("v1", 1, 5, Action.DELETE))
    [tag] = index.tags("team/app")
    assert tag.action is Action.DELETE
    removed = index.tag_at("team/app", "v1", T0 + timedelta(minutes=6))
    assert removed is not None and removed.action is Action.DELETE
    before = index.tag_at("team/app", "v1", T0 + timedelta(minutes=1))
    assert before is not None and before.action is Action.PUSH
    assert index.images("team/app") == [digest(1)]


def test_create_is_idempotent(index: DynamoIndex) -> None:
    assert index.create_if_missing() is False


def test_push_and_delete_in_the_same_second_are_both_kept(index: DynamoIndex) -> None:
    index.record_event(event("v1", 1, 0))
    index.record_event(event("v1", 1, 0, Action.DELETE))
    assert sorted(e.action for e in index.history("team/app", "v1")) == [
        Action.DELETE,
        Action.PUSH,
    ]


def test_the_first_location_claimed_wins_even_when_two_race(index: DynamoIndex) -> None:
    here, there = Location("backup-bucket", "backup/"), Location("backup-bucket", "other/")
    assert index.location() is None  # a table made before locations were recorded
    index.check_location(there)  # nothing recorded: nothing to refuse yet
    late = DynamoIndex(index.table, client=index._db)
    # The late claimer read "no location" before the first one wrote it.
    late.location = iter([None, here]).__next__  # type: ignore[method-assign]
    index.claim_location(here)
    with pytest.raises(ConfigurationError, match="indexes s3://backup-bucket/backup/, not"):
        late.claim_location(there)
    assert index.location() == here._replace(region="us-east-1")  # moto's region, no account
    index.claim_location(here)  # the same place again is fine
    with pytest.raises(ConfigurationError) as refused:
        index.check_location(there)
    assert refused.value.exit_code == ExitCode.CONFIGURATION
