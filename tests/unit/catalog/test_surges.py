"""Deletion surges: the counting rule, its windows, replays, and acknowledgements (in memory)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from ecr_backup.catalog.surges import (
    SURGES_DIR,
    Surge,
    SurgeRules,
    SurgeWatch,
    acknowledge,
    read_surges,
    slot_of,
    window_of,
)
from ecr_backup.errors import InvalidInputError, NotFoundError
from ecr_backup.model import Action, ImageEvent
from ecr_backup.oci.digest import Digest

ACCOUNT = "111111111111"
NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Counts:
    """DeletionCounts as the index keeps them: one entry per (account, repo, digest, slot)."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str, Digest, datetime]] = set()

    def note_deletion(self, account: str, repository: str, digest: Digest, slot: datetime) -> bool:
        key = (account, repository, digest, slot)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def count_deletions(
        self, account: str, repository: str | None, start: datetime, end: datetime
    ) -> int:
        return sum(
            1
            for a, r, _, slot in self.seen
            if a == account and repository in (None, r) and start <= slot < end
        )


class Images:
    def __init__(self, live: dict[str, int]) -> None:
        self.live = live

    def image_states(self, repository: str) -> dict[Digest, bool]:
        live = self.live.get(repository, 0)
        return {Digest.of(f"{repository}{n}".encode()): False for n in range(live)}


class Records:
    """The bucket's write-once records."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_record(self, name: str, body: bytes) -> bool:
        if name in self.objects:
            return False
        self.objects[name] = body
        return True

    def iter_records(self, under: str = "") -> Iterator[tuple[str, bytes]]:
        for name in sorted(self.objects):
            if name.startswith(under):
                yield f"backup/refs/{name}", self.objects[name]


def deletion(repository: str, n: int, at: datetime, account: str | None = ACCOUNT) -> ImageEvent:
    return ImageEvent(
        repository,
        Digest.of(f"{repository}-{n}".encode()),
        Action.DELETE,
        at,
        source_account=account,
    )


def watch(
    records: Records, live: dict[str, int] | None = None, **rules: int
) -> tuple[SurgeWatch, list[Surge]]:
    seen: list[Surge] = []
    built = SurgeWatch(
        Counts(),
        Images(live or {}),
        records,
        SurgeRules(**rules),
        clock=lambda: NOON + timedelta(hours=1),
        on_surge=seen.append,
    )
    return built, seen


def test_a_window_is_the_hour_of_slots_ending_with_the_deletions_slot() -> None:
    assert slot_of(datetime(2026, 12, 1, 12, 19, 59, tzinfo=UTC)) == NOON + timedelta(minutes=10)
    assert window_of(datetime(2026, 12, 1, 12, 19, tzinfo=UTC)) == (
        NOON - timedelta(minutes=40),
        NOON + timedelta(minutes=20),
    )


def test_more_deletions_in_an_hour_than_the_limit_record_one_surge_for_the_account() -> None:
    records = Records()
    surges, seen = watch(records, images=10, percent=100)
    found: list[Surge] = []
    for n in range(11):  # spread over three repositories and 50 minutes
        found = surges.observe(deletion(f"team/r{n % 3}", n, NOON + timedelta(minutes=5 * n)))
    assert [s.repository for s in seen] == [None]
    assert seen[0].deletions == 11 and seen[0].account == ACCOUNT
    assert found == seen
    assert list(records.objects) == [f"{SURGES_DIR}{seen[0].id}.json"]


def test_ten_deletions_are_not_a_surge_of_a_limit_of_ten() -> None:
    records = Records()
    surges, seen = watch(records, {"team/app": 1000}, images=10)
    for n in range(10):
        assert surges.observe(deletion("team/app", n, NOON)) == []
    assert seen == [] and records.objects == {}


def test_deletions_an_hour_apart_do_not_add_up() -> None:
    surges, seen = watch(Records(), {"team/app": 1000}, images=10)
    for n in range(10):
        surges.observe(deletion("team/app", n, NOON))
    for n in range(10, 20):
        surges.observe(deletion("team/app", n, NOON + timedelta(hours=1)))
    assert seen == []


def test_a_replayed_deletion_counts_nothing() -> None:
    surges, seen = watch(Records(), {"team/app": 1000}, images=3)
    event = deletion("team/app", 1, NOON)
    for _ in range(10):
        surges.observe(event)
    assert seen == []


def test_a_share_of_a_repositorys_images_is_a_surge_from_the_minimum_on() -> None:
    records = Records()
    # 20 images live after the deletions: 5 of 25 is 20%, not over it; 6 of 26 is over.
    surges, seen = watch(records, {"team/app": 20}, images=50, percent=20, min_images=5)
    for n in range(5):
        surges.observe(deletion("team/app", n, NOON))
    assert seen == []
    surges.observe(deletion("team/app", 5, NOON))
    assert [s.repository for s in seen] == ["team/app"]
    assert "6 of 26 images" in seen[0].rule


def test_a_small_repository_needs_the_minimum_number_of_deletions() -> None:
    surges, seen = watch(Records(), {"team/app": 1}, percent=20, min_images=5)
    for n in range(4):  # 4 of 5 images: 80%, but fewer than 5 deletions
        surges.observe(deletion("team/app", n, NOON))
    assert seen == []


def test_two_detections_of_the_same_hour_write_one_record_and_report_it_once() -> None:
    records = Records()
    first, seen_first = watch(records, images=2, percent=100)
    second, seen_second = watch(records, images=2, percent=100)
    for n in range(3):
        first.observe(deletion("team/app", n, NOON))
        second.observe(deletion("team/app", n, NOON))
    assert len(records.objects) == 2  # the account's and the repository's
    assert len(seen_first) == 2 and seen_second == []


def test_the_surge_holds_deletions_of_its_scope_and_hour_until_acknowledged() -> None:
    records = Records()
    surges, seen = watch(records, images=2, percent=100)
    for n in range(3):
        surges.observe(deletion("team/app", n, NOON))
    book = read_surges(records)
    assert {s.id for s in book.surges} == {s.id for s in seen}
    inside = NOON + timedelta(minutes=5)
    assert book.holding(ACCOUNT, "team/other", inside) is not None  # the account's surge
    assert book.holding("222222222222", "team/app", inside) is None
    assert book.holding(ACCOUNT, "team/app", NOON + timedelta(minutes=10)) is None  # after it
    for surge in seen:
        acknowledge(records, surge.id, "planned clean-up", "arn:aws:iam::1:user/ops", NOON)
    after = read_surges(records)
    assert after.unacknowledged() == []
    assert after.holding(ACCOUNT, "team/app", inside) is None
    assert after.acknowledgements[seen[0].id].reason == "planned clean-up"


def test_acknowledging_refuses_an_empty_reason_an_unknown_id_and_a_second_time() -> None:
    records = Records()
    surges, seen = watch(records, images=2, percent=100)
    for n in range(3):
        surges.observe(deletion("team/app", n, NOON))
    surge_id = seen[0].id
    with pytest.raises(InvalidInputError, match="--reason"):
        acknowledge(records, surge_id, "  ", "me", NOON)
    with pytest.raises(NotFoundError, match="no surge 'nope'"):
        acknowledge(records, "nope", "why", "me", NOON)
    acknowledge(records, surge_id, "why", "me", NOON)
    with pytest.raises(InvalidInputError, match="acknowledged already"):
        acknowledge(records, surge_id, "again", "someone", NOON)


def test_an_unreadable_surge_record_is_reported_not_dropped() -> None:
    records = Records()
    records.put_record(f"{SURGES_DIR}broken.json", b"{not json")
    book = read_surges(records)
    assert book.surges == [] and book.unreadable[0].startswith("backup/refs/_surges/broken.json")


def test_a_deletion_without_an_account_is_counted_under_no_account() -> None:
    surges, seen = watch(Records(), images=1, percent=100)
    surges.observe(deletion("team/app", 1, NOON, account=None))
    surges.observe(deletion("team/app", 2, NOON, account=None))
    assert seen and seen[0].account == "-"
    assert read_surges(Records()).holding(None, "team/app", NOON) is None


def test_pushes_are_not_counted() -> None:
    surges, seen = watch(Records(), images=0)
    push = ImageEvent("team/app", Digest.of(b"x"), Action.PUSH, NOON, source_account=ACCOUNT)
    assert surges.observe(push) == [] and seen == []
