"""Holds are truthful and survive a rebuild; a rebuild never copies a lie."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ecr_backup.cli import main
from ecr_backup.composition import AwsServices
from ecr_backup.errors import RefusedError
from ecr_backup.maintenance.maintain import maintain
from ecr_backup.maintenance.rebuild import rebuild_index
from ecr_backup.maintenance.stats import stats
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Manifest
from ecr_backup.schema import render
from ecr_backup.settings import Settings
from ecr_backup.storage.ledger import Hold
from tests.fakes import MovableClock
from tests.functional.maintenance.conftest import PREFIX
from tests.helpers import BUCKET, TABLE, Backup


def objects_of(image: Manifest) -> set[Digest]:
    return {image.digest, *(b.digest for b in image.blobs)}


def legal_holds(services: AwsServices, digests: set[Digest]) -> set[Digest]:
    return {d for d in digests if services.locks.read(d).legal_hold}


def two_images(kit: Backup, clock: MovableClock) -> tuple[Manifest, Manifest, Digest]:
    shared = kit.layer()
    one = kit.image("app", [shared, kit.layer()])
    two = kit.image("app", [shared, kit.layer()])
    kit.push("app", one, "one", clock())
    kit.push("app", two, "two", clock())
    return one, two, Digest.of(shared)


def test_release_without_a_hold_is_refused_and_lifts_nothing(
    kit: Backup, services: AwsServices, clock: MovableClock
) -> None:
    one, two, _ = two_images(kit, clock)
    services.holds().hold("app", two.digest, clock())
    before = legal_holds(services, objects_of(one) | objects_of(two))
    with pytest.raises(RefusedError, match=f"no hold on app@{one.digest}") as refused:
        services.holds().release("app", one.digest, clock())
    assert refused.value.exit_code == 1
    assert legal_holds(services, objects_of(one) | objects_of(two)) == before
    assert [h.digest for h in services.holds().in_force()] == [two.digest]


def test_release_reports_exactly_the_holds_it_turned_off(
    kit: Backup, services: AwsServices, clock: MovableClock
) -> None:
    one, two, shared = two_images(kit, clock)
    holds = services.holds()
    held = holds.hold("app", one.digest, clock(), "incident 1")
    assert set(held.changed) == objects_of(one) and held.reason == "incident 1"
    holds.hold("app", two.digest, clock())
    # Someone lifted one object's hold by hand: the release did not turn that one off.
    by_hand = one.blobs[-1].digest
    services.locks.set_legal_hold(by_hand, False)
    released = holds.release("app", one.digest, clock())
    assert set(released.changed) == objects_of(one) - {shared, by_hand}
    assert released.objects == len(released.changed)
    assert legal_holds(services, objects_of(two)) == objects_of(two)  # shared stays held
    assert legal_holds(services, objects_of(one) - {shared}) == set()


def test_holds_lists_every_hold_in_text_and_json(
    kit: Backup,
    services: AwsServices,
    clock: MovableClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in (("BUCKET", BUCKET), ("TABLE", TABLE), ("PREFIX", PREFIX)):
        monkeypatch.setenv(f"ECR_BACKUP_{name}", value)
    one, two, _ = two_images(kit, clock)
    assert main(["hold", f"app@{one.digest}", "--reason", "legal case 7"]) == 0
    assert main(["hold", "app:two", "--json"]) == 0
    capsys.readouterr()
    assert main(["holds", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["digest"], r["objects"], r["reason"]) for r in rows] == [
        (str(one.digest), 4, "legal case 7"),
        (str(two.digest), 4, None),
    ]
    assert main(["holds", "other"]) == 0
    assert capsys.readouterr().out == "no holds\n"
    assert main(["holds"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].split() == ["IMAGE", "OBJECTS", "PLACED", "AT", "REASON"]
    assert text[1].startswith(f"app@{one.digest.hex[:12]}") and "legal case 7" in text[1]

    assert main(["release", "app:two"]) == 0
    out = capsys.readouterr().out
    assert "legal hold turned off on 3 objects" in out  # the shared layer stays held
    code = main(["release", "app:two"])
    _, err = capsys.readouterr()
    assert code == 1 and f"no hold on app@{two.digest}" in err


def rebuilt_services(services: AwsServices, clock: MovableClock) -> AwsServices:
    settings = Settings(
        bucket=BUCKET, table="rebuilt-index", prefix=PREFIX, keep_deleted_days=90, keep_per_tag=1
    )
    return AwsServices(settings, services.session, clock=clock)


def comparable(services: AwsServices, clock: MovableClock) -> dict[str, Any]:
    answer = stats(
        services.ledger,
        services.index,
        services.graph(),
        services.rules,
        clock(),
        surges=services.surges(),
    )
    document: dict[str, Any] = render("stats", answer)
    return {k: v for k, v in document.items() if k != "time"}


def test_rebuild_restores_holds_and_lock_ends_and_stats_stay_the_same(
    kit: Backup, services: AwsServices, clock: MovableClock, s3: Any
) -> None:
    one, two, _ = two_images(kit, clock)
    kit.delete("app", one, "one", clock.advance(days=1))
    kit.delete("app", two, "two", clock())
    holds = services.holds()
    holds.hold("app", one.digest, clock(), "kept for the auditors")
    holds.hold("app", two.digest, clock())
    holds.release("app", two.digest, clock())  # a rebuild must not bring this one back
    clock.advance(days=100)  # past KeepDeletedDays: only the hold keeps `one`
    kept = maintain(
        services.ledger,
        services.index,
        services.graph(),
        services.rules,
        services.keeper,
        surges=services.surges(),
    )
    assert kept.images_kept == 1 and kept.extended  # `one`'s locks, recorded in the index
    before = comparable(services, clock)
    assert before["repositories"][0]["images_kept"] == 1 and before["locked_bytes"] > 0

    rebuilt = rebuilt_services(services, clock)
    report = rebuild_index(rebuilt.store, rebuilt.index, ledger=rebuilt.ledger, locks=rebuilt.locks)
    assert (
        report.ok and report.holds == 1 and report.locks == len(objects_of(one) | objects_of(two))
    )
    (hold,) = rebuilt.holds().in_force()
    assert (hold.repository, hold.digest, hold.reason, hold.objects) == (
        "app",
        one.digest,
        "kept for the auditors",
        4,
    )
    assert comparable(rebuilt, clock) == before
    for digest, state in rebuilt.ledger.objects().items():
        assert state.lock_until == services.locks.read(digest).until
    rebuilt.store.close()

    # Over a table that still holds a hold released since: the release record wins.
    services.ledger.add_hold(Hold("app", two.digest, clock()))
    rebuild_index(services.store, services.index, ledger=services.ledger, locks=services.locks)
    assert [h.digest for h in services.holds().in_force()] == [one.digest]


def test_rebuild_records_the_intact_version_and_reports_the_rewrite(
    kit: Backup, services: AwsServices, clock: MovableClock, s3: Any
) -> None:
    one, _, _ = two_images(kit, clock)
    before = comparable(services, clock)
    layer = one.blobs[-1]
    kit.tamper(s3, layer.digest, b"x" * (layer.size + 100))  # bigger: the lie is its size
    rebuilt = rebuilt_services(services, clock)
    report = rebuild_index(rebuilt.store, rebuilt.index, ledger=rebuilt.ledger, locks=rebuilt.locks)
    assert [(kind, digest) for kind, digest, _ in report.problems] == [("rewritten", layer.digest)]
    assert not report.ok and report.manifests_incomplete == []
    assert rebuilt.ledger.objects()[layer.digest].size == layer.size
    assert comparable(rebuilt, clock) == before
    rebuilt.store.close()


def test_rebuild_does_not_record_an_object_with_no_intact_version(
    kit: Backup,
    services: AwsServices,
    clock: MovableClock,
    s3: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one, _, _ = two_images(kit, clock)
    layer = one.blobs[-1]
    key = services.locks.key(layer.digest)
    for version in s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]:
        s3.delete_object(
            Bucket=BUCKET, Key=key, VersionId=version["VersionId"], BypassGovernanceRetention=True
        )
    kit.tamper(s3, layer.digest, b"not the layer")
    for name, value in (("BUCKET", BUCKET), ("TABLE", "rebuilt-index"), ("PREFIX", PREFIX)):
        monkeypatch.setenv(f"ECR_BACKUP_{name}", value)
    code = main(["rebuild-index", "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 1
    assert [(p["kind"], p["subject"]) for p in document["problems"]] == [
        ("tampered", str(layer.digest))
    ]
    rebuilt = rebuilt_services(services, clock)
    assert layer.digest not in rebuilt.ledger.objects()
    assert one.digest not in rebuilt.ledger.complete_manifests()
    rebuilt.store.close()
