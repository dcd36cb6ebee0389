"""The same assertions on the fakes of tests/fakes.py and on the real adapters under moto:
the fakes the unit tests run on cannot drift from what the adapters do.

Where moto is more lenient than AWS (moto lets a GOVERNANCE lock be shortened without the
bypass), the real side is an expected failure: the fake follows AWS, and the test says
where moto does not.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from ecr_backup.backup.ports import BackupIndex, BlobStore
from ecr_backup.errors import (
    BlobNotFoundError,
    ConfigurationError,
    DigestMismatchError,
    EcrBackupError,
    ObjectBeingPrunedError,
)
from ecr_backup.maintenance.locks import LockReader, LockRecorder
from ecr_backup.maintenance.ports import (
    HoldLedger,
    LegalHolds,
    PruneLedger,
    PruneLocks,
    RebuildBucket,
    RebuiltIndex,
)
from ecr_backup.maintenance.retention import HistorySource
from ecr_backup.model import Action, ImageEvent, ManifestRecord
from ecr_backup.oci.digest import Digest
from ecr_backup.settings import Settings
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex, EventChanges, Location, StoredObject
from ecr_backup.storage.ledger import Hold, Ledger
from ecr_backup.storage.objectlock import LockMode, ObjectLock, S3ObjectLocks
from tests.fakes import FakeAws, FakeBlobStore, FakeIndex, FakeLedger, FakeObjectLocks
from tests.helpers import BUCKET, TABLE

PREFIX = "backup/"


@dataclass
class Side:
    """One implementation of the four adapters, and what a person with more rights than
    the stack's roles can do to the bucket (to set up what the adapters must refuse)."""

    name: str
    store: S3BlobStore | FakeBlobStore
    locks: S3ObjectLocks | FakeObjectLocks
    index: DynamoIndex | FakeIndex
    ledger: Ledger | FakeLedger
    fake: FakeAws | None = None
    s3: Any = None

    def key(self, digest: Digest) -> str:
        return self.store.blob_key(digest)

    def overwrite(self, digest: Digest, data: bytes) -> None:
        if self.fake is not None:
            self.fake.bucket.overwrite(self.key(digest), data)
            return
        checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
        self.s3.put_object(
            Bucket=BUCKET,
            Key=self.key(digest),
            Body=data,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum,
        )

    def retain(self, digest: Digest, mode: LockMode, until: datetime, *, bypass: bool) -> None:
        if self.fake is not None:
            self.fake.bucket.put_retention(self.key(digest), mode, until, bypass=bypass)
            return
        try:
            self.s3.put_object_retention(
                Bucket=BUCKET,
                Key=self.key(digest),
                Retention={"Mode": mode, "RetainUntilDate": until},
                BypassGovernanceRetention=bypass,
            )
        except ClientError as e:
            raise _refused(e) from e

    def delete_version(self, digest: Digest, version_id: str, *, bypass: bool) -> None:
        if self.fake is not None:
            self.fake.bucket.delete(self.key(digest), version_id, bypass=bypass)
            return
        try:
            self.s3.delete_object(
                Bucket=BUCKET,
                Key=self.key(digest),
                VersionId=version_id,
                BypassGovernanceRetention=bypass,
            )
        except ClientError as e:
            raise _refused(e) from e


def _refused(error: ClientError) -> Exception:
    """S3's refusal as the adapters translate it (ecr_backup.awserrors.translate)."""
    code = error.response.get("Error", {}).get("Code", "")
    return ConfigurationError(str(error), code=code) if code == "AccessDenied" else error


def _typed(side: Side) -> None:
    """Both sides are what the services ask for (checked by mypy, not run)."""
    stores: list[BlobStore] = [side.store]
    listings: list[RebuildBucket] = [side.store]
    indexes: list[BackupIndex] = [side.index]
    histories: list[HistorySource] = [side.index]
    rebuilt: list[RebuiltIndex] = [side.index]
    ledgers: list[PruneLedger] = [side.ledger]
    hold_ledgers: list[HoldLedger] = [side.ledger]
    recorders: list[LockRecorder] = [side.ledger]
    locks: list[PruneLocks] = [side.locks]
    readers: list[LockReader] = [side.locks]
    holds: list[LegalHolds] = [side.locks]
    del stores, listings, indexes, histories, rebuilt, ledgers, hold_ledgers
    del recorders, locks, readers, holds


@pytest.fixture(params=["fake", "moto"])
def side(request: pytest.FixtureRequest) -> Iterator[Side]:
    if request.param == "fake":
        fake = FakeAws(settings=Settings(bucket=BUCKET, table=TABLE, prefix=PREFIX))
        yield Side("fake", fake.store, fake.locks, fake.index, fake.ledger, fake=fake)
        return
    s3 = request.getfixturevalue("s3")
    index = request.getfixturevalue("index")
    store = S3BlobStore(BUCKET, PREFIX, client=s3)
    yield Side(
        "moto",
        store,
        S3ObjectLocks(BUCKET, PREFIX, s3),
        index,
        Ledger(TABLE, client=boto3.client("dynamodb")),
        s3=s3,
    )
    store.close()


def near(a: datetime | None, b: datetime) -> bool:
    """S3 keeps lock dates to the millisecond or second: equal within a second."""
    return a is not None and abs(a - b) <= timedelta(seconds=1)


T = datetime(2026, 3, 1, tzinfo=UTC)


# -- the bucket ---------------------------------------------------------------------------


def test_an_object_is_written_once_and_read_back(side: Side) -> None:
    data = b"layer bytes"
    digest = Digest.of(data)
    assert side.store.put_bytes(digest, data) is True
    assert side.store.put_bytes(digest, data) is False  # If-None-Match: never overwritten
    assert side.store.put_stream(digest, len(data), io.BytesIO(data)) is False
    assert side.store.stat(digest) == len(data)
    assert side.store.read(digest) == data
    assert [v.size for v in side.store.versions(digest)] == [len(data)]
    assert [n for n, _ in side.store.iter_blob_versions()] == [digest.hex]


def test_bytes_that_do_not_hash_to_their_name_store_nothing(side: Side) -> None:
    digest = Digest.of(b"the real thing")
    with pytest.raises(DigestMismatchError):
        side.store.put_bytes(digest, b"something else")
    with pytest.raises(DigestMismatchError):
        side.store.put_stream(digest, 14, io.BytesIO(b"something else"))
    assert side.store.stat(digest) is None
    assert side.store.versions(digest) == []
    with pytest.raises(BlobNotFoundError):
        side.store.read(digest)


def test_records_are_written_once_and_listed_by_name(side: Side) -> None:
    assert side.store.put_record("app/_events/b.json", b"2") is True
    assert side.store.put_record("app/_events/a.json", b"1") is True
    assert side.store.put_record("app/_events/a.json", b"other") is False
    assert list(side.store.iter_record_names("app/")) == [
        "app/_events/a.json",
        "app/_events/b.json",
    ]
    assert side.store.read_record("app/_events/a.json") == b"1"


def test_a_delete_marker_hides_the_object_and_a_new_write_goes_over_it(side: Side) -> None:
    data = b"pruned, then needed again"
    digest = Digest.of(data)
    side.store.put_bytes(digest, data)
    side.locks.delete_current(digest)  # allowed while locked: versions stay, locked
    assert side.store.stat(digest) is None
    with pytest.raises(BlobNotFoundError):
        side.locks.read(digest)
    with pytest.raises(BlobNotFoundError):
        side.store.read(digest)
    versions = side.store.versions(digest)
    assert [(v.deleted, v.is_latest) for v in versions] == [(False, False), (True, True)]
    assert side.store.put_bytes(digest, data) is True
    assert side.store.read(digest) == data
    assert [v.deleted for v in side.store.versions(digest)] == [False, False, True]


def test_a_rewritten_object_keeps_its_first_version_readable(side: Side) -> None:
    data = b"original"
    digest = Digest.of(data)
    side.store.put_bytes(digest, data)
    side.overwrite(digest, b"tampered!")
    versions = side.store.versions(digest)
    assert [(v.size, v.is_latest) for v in versions] == [(9, True), (8, False)]  # newest first
    with side.store.open(digest, version_id=versions[1].version_id) as body:
        assert body.read() == data
    with pytest.raises(DigestMismatchError):
        side.store.read(digest)


# -- Object Lock ---------------------------------------------------------------------------


def _stored(side: Side, data: bytes = b"locked object") -> Digest:
    digest = Digest.of(data)
    side.store.put_bytes(digest, data)
    return digest


def test_a_new_object_has_the_default_retention_and_locks_only_get_longer(side: Side) -> None:
    digest = _stored(side)
    lock = side.locks.read(digest)
    assert lock.mode == "GOVERNANCE"
    assert lock.until is not None
    assert abs(lock.until - (datetime.now(UTC) + timedelta(days=35))) < timedelta(minutes=5)
    assert not lock.legal_hold
    later = lock.until + timedelta(days=10)
    side.locks.extend(digest, "GOVERNANCE", later)
    assert near(side.locks.read(digest).until, later)


def moto_departs(side: Side, request: pytest.FixtureRequest, how: str) -> None:
    """Where moto is more lenient than S3: expected to fail on moto, strictly, so the mark
    goes when moto catches up. S3's rules: the S3 User Guide, "Object Lock" (retention
    modes, legal holds; https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock.html)."""
    if side.name == "moto":
        request.applymarker(pytest.mark.xfail(reason=f"moto {how}", strict=True))


def test_a_put_sets_the_retention_it_asks_for_instead_of_the_default(side: Side) -> None:
    data, other = b"locked by the backup", b"default"
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=50)
    assert side.store.put_bytes(Digest.of(data), data, ObjectLock("GOVERNANCE", until))
    assert side.store.put_stream(Digest.of(other), len(other), io.BytesIO(other))
    lock = side.locks.read(Digest.of(data))
    assert lock.mode == "GOVERNANCE" and near(lock.until, until)
    default = side.locks.read(Digest.of(other)).until
    assert default is not None and default < until


def test_a_governance_lock_is_shortened_only_with_the_bypass(
    side: Side, request: pytest.FixtureRequest
) -> None:
    moto_departs(side, request, "shortens GOVERNANCE without the bypass")
    digest = _stored(side)
    lock = side.locks.read(digest)
    assert lock.until is not None
    with pytest.raises(ConfigurationError) as refused:
        side.locks.extend(digest, "GOVERNANCE", lock.until - timedelta(days=1))
    assert refused.value.code == "AccessDenied"
    side.retain(digest, "GOVERNANCE", lock.until - timedelta(days=1), bypass=True)


def test_a_compliance_lock_is_never_shortened_nor_weakened(
    side: Side, request: pytest.FixtureRequest
) -> None:
    moto_departs(side, request, "shortens COMPLIANCE and turns it into GOVERNANCE")
    digest = _stored(side)
    until = datetime.now(UTC) + timedelta(days=40)
    side.locks.extend(digest, "COMPLIANCE", until)
    for mode, earlier in (("COMPLIANCE", until - timedelta(days=1)), ("GOVERNANCE", until)):
        with pytest.raises(ConfigurationError):
            side.retain(digest, mode, earlier, bypass=True)  # type: ignore[arg-type]
    assert near(side.locks.read(digest).until, until)
    assert side.locks.read(digest).mode == "COMPLIANCE"


def test_a_locked_version_is_not_removable_without_the_bypass(
    side: Side, request: pytest.FixtureRequest
) -> None:
    moto_departs(side, request, "deletes a version under default retention without the bypass")
    digest = _stored(side)
    version = side.store.versions(digest)[0].version_id
    assert version is not None
    with pytest.raises(ConfigurationError):
        side.delete_version(digest, version, bypass=False)
    assert side.store.stat(digest) is not None


def test_a_legal_hold_locks_until_released(side: Side) -> None:
    digest = _stored(side)
    side.locks.set_legal_hold(digest, True)
    lock = side.locks.read(digest)
    assert lock.legal_hold
    assert lock.locked_at(datetime.now(UTC) + timedelta(days=3650))
    version = side.store.versions(digest)[0].version_id
    assert version is not None
    with pytest.raises(ConfigurationError):
        side.delete_version(digest, version, bypass=True)  # a hold yields to no bypass
    side.locks.set_legal_hold(digest, False)
    assert not side.locks.read(digest).legal_hold


def test_locks_of_a_missing_object(side: Side, request: pytest.FixtureRequest) -> None:
    moto_departs(side, request, "crashes (AttributeError) on PutObjectRetention of no object")
    digest = Digest.of(b"never stored")
    with pytest.raises(BlobNotFoundError):
        side.locks.read(digest)
    with pytest.raises(EcrBackupError):
        side.locks.extend(digest, "GOVERNANCE", datetime.now(UTC) + timedelta(days=90))


# -- the index and the ledger ------------------------------------------------------------------


def test_claims_tombstones_and_sweeps_are_conditional(side: Side) -> None:
    ledger, index = side.ledger, side.index
    digest, other = Digest.of(b"a"), Digest.of(b"b")
    assert ledger.claim(digest, T) is None  # not in the index: copy it again
    index.record_blob(digest, 1, "application/octet-stream", T)
    claimed = ledger.claim(digest, T + timedelta(hours=1))
    assert claimed is not None
    assert claimed.claimed_at == T + timedelta(hours=1)
    assert not ledger.tombstone(digest, T + timedelta(days=2), T)  # claimed after the cutoff
    assert ledger.tombstone(digest, T + timedelta(days=2), T + timedelta(days=1))
    assert not ledger.tombstone(digest, T + timedelta(days=3), T + timedelta(days=2))
    seen = ledger.objects()[digest].tombstone_at
    assert seen == T + timedelta(days=2)
    assert not ledger.start_sweep(digest, T, "run-1")  # not the tombstone it saw
    assert ledger.start_sweep(digest, seen, "run-1")
    assert not ledger.start_sweep(digest, seen, "run-2")
    with pytest.raises(ObjectBeingPrunedError):
        ledger.claim(digest, T + timedelta(days=3))
    with pytest.raises(ObjectBeingPrunedError):
        index.record_blob(digest, 1, "application/octet-stream", T + timedelta(days=3))
    ledger.abandon_sweep(digest, "run-2")  # not its sweep: nothing changes
    assert ledger.objects()[digest].sweeping == "run-1"
    ledger.abandon_sweep(digest, "run-1")
    state = ledger.objects()[digest]
    assert (state.sweeping, state.tombstone_at) == (None, None)

    index.record_blob(other, 1, "application/octet-stream", T)
    assert ledger.tombstone(other, T + timedelta(days=2), T + timedelta(days=1))
    assert ledger.start_sweep(other, T + timedelta(days=2), "run-3")
    ledger.finish_sweep(other, "run-4")
    assert other in ledger.objects()
    ledger.finish_sweep(other, "run-3")
    assert other not in ledger.objects()
    assert ledger.claim(other, T + timedelta(days=4)) is None
    assert index.stored_blobs([digest, other]) == {digest}


def test_record_blob_keeps_the_first_stored_time_and_clears_the_tombstone(side: Side) -> None:
    digest = Digest.of(b"a")
    side.index.record_blob(digest, 1, "x", T)
    assert side.ledger.tombstone(digest, T + timedelta(days=2), T + timedelta(days=1))
    side.index.record_blob(digest, 1, "x", T + timedelta(days=3))
    state = side.ledger.objects()[digest]
    assert (state.stored_at, state.claimed_at) == (T, T + timedelta(days=3))
    assert state.tombstone_at is None


def test_a_recorded_lock_only_moves_later(side: Side) -> None:
    digest = Digest.of(b"a")
    side.ledger.record_lock(digest, T)  # not in the index: nothing is written
    assert digest not in side.ledger.objects()
    side.index.record_blob(digest, 1, "x", T)
    side.ledger.record_lock(digest, T + timedelta(days=10))
    side.ledger.record_lock(digest, T + timedelta(days=5))
    assert side.ledger.objects()[digest].lock_until == T + timedelta(days=10)


def test_one_prune_lease_at_a_time(side: Side) -> None:
    ledger = side.ledger
    assert ledger.take_prune_lease("a", T, T + timedelta(hours=6))
    assert not ledger.take_prune_lease("b", T + timedelta(hours=1), T + timedelta(hours=7))
    ledger.drop_prune_lease("b")  # not its lease
    assert not ledger.take_prune_lease("b", T + timedelta(hours=1), T + timedelta(hours=7))
    assert ledger.take_prune_lease("b", T + timedelta(hours=7), T + timedelta(hours=13))
    ledger.drop_prune_lease("b")
    assert ledger.take_prune_lease("c", T + timedelta(hours=8), T + timedelta(hours=14))


def test_holds(side: Side) -> None:
    one, two = Digest.of(b"1"), Digest.of(b"2")
    side.ledger.add_hold(Hold("b", one, T, "incident 42", 4))
    side.ledger.add_hold(Hold("a", two, T + timedelta(seconds=1)))
    assert side.ledger.holds() == [
        Hold("a", two, T + timedelta(seconds=1), None, None),
        Hold("b", one, T, "incident 42", 4),
    ]
    assert side.ledger.remove_hold("a", two) is True
    assert side.ledger.remove_hold("a", two) is False  # twice: no error, and no hold
    assert [h.digest for h in side.ledger.holds()] == [one]


def test_complete_manifests_and_referrers(side: Side) -> None:
    subject, signature = Digest.of(b"image"), Digest.of(b"signature")
    for digest in (subject, signature):
        side.index.record_blob(digest, 5, "x", T)
    side.index.mark_complete(ManifestRecord(subject, "m", 5, 50, T))
    side.index.mark_complete(ManifestRecord(signature, "m", 9, 90, T, subject=subject))
    assert side.index.complete_manifests([subject, Digest.of(b"z")]) == {subject}
    assert side.ledger.complete_manifests() == {subject, signature}
    assert [r.digest for r in side.index.referrers(subject)] == [signature]
    assert side.ledger.objects()[signature].complete
    side.ledger.uncomplete(signature)
    assert side.index.manifest(signature) is None
    assert side.index.referrers(subject) == []
    assert not side.ledger.objects()[signature].complete


def test_events_out_of_order_pruned_images_and_pushes_again(side: Side) -> None:
    index = side.index
    one, two = Digest.of(b"one"), Digest.of(b"two")
    index.record_event(ImageEvent("app", two, Action.PUSH, T + timedelta(hours=2), "v1"))
    index.record_event(ImageEvent("app", one, Action.PUSH, T + timedelta(hours=1), "v1"))
    index.record_event(ImageEvent("app", one, Action.PUSH, T + timedelta(hours=1), "v1"))
    index.record_event(ImageEvent("app", one, Action.DELETE, T + timedelta(hours=3), None))
    assert index.repositories() == ["app"]
    [tag] = index.tags("app")
    assert (tag.tag, tag.digest) == ("v1", two)  # the newest event won
    assert [e.digest for e in index.history("app", "v1")] == [one, two]
    assert [e.action for e in index.history("app", None)] == [Action.DELETE]
    at = index.tag_at("app", "v1", T + timedelta(hours=1, minutes=30))
    assert at is not None and at.digest == one
    assert index.image_states("app") == dict(sorted({one: True, two: False}.items(), key=str))
    side.ledger.mark_pruned("app", two, T + timedelta(days=100))
    assert index.images("app") == [one]
    assert index.repository_state("app").pruned == {two}
    index.record_event(ImageEvent("app", two, Action.PUSH, T + timedelta(days=101), "v2"))
    assert set(index.images("app")) == {one, two}


def test_object_states_read_blobs_and_completeness_writing_nothing(side: Side) -> None:
    blob, manifest, absent = Digest.of(b"blob"), Digest.of(b"manifest"), Digest.of(b"none")
    side.index.record_blob(blob, 4, "layer", T)
    side.index.record_blob(manifest, 8, "m", T)
    side.index.mark_complete(ManifestRecord(manifest, "m", 8, 12, T))
    assert side.ledger.tombstone(blob, T + timedelta(days=2), T + timedelta(days=1))
    states = side.index.object_states([blob, manifest, absent, blob])
    assert set(states) == {blob, manifest}
    assert (states[blob].size, states[blob].complete) == (4, False)
    assert states[blob].tombstone_at == T + timedelta(days=2)
    assert states[manifest].complete and states[manifest].tombstone_at is None
    assert side.ledger.objects()[blob] == states[blob]  # read, not claimed


def test_complete_records_and_completes_in_one_transaction_or_not_at_all(side: Side) -> None:
    new, manifest, swept = Digest.of(b"new"), Digest.of(b"manifest"), Digest.of(b"swept")
    side.index.record_blob(swept, 1, "layer", T)
    assert side.ledger.tombstone(swept, T + timedelta(days=2), T + timedelta(days=1))
    assert side.ledger.start_sweep(swept, T + timedelta(days=2), "run-1")
    later = T + timedelta(days=3)
    record = ManifestRecord(manifest, "m", 9, 99, later, subject=new)
    with pytest.raises(ObjectBeingPrunedError):
        side.index.complete(
            [
                StoredObject(new, 3, "layer", later),
                StoredObject(swept, 1, "layer", later),
                StoredObject(manifest, 9, "m", later),
            ],
            record,
        )
    assert set(side.ledger.objects()) == {swept}  # nothing of the transaction was written
    assert side.index.manifest(manifest) is None

    until = later + timedelta(days=30)
    side.index.record_blob(new, 3, "layer", T)
    side.ledger.record_lock(new, T + timedelta(days=60))
    side.index.complete(
        [StoredObject(new, 3, "layer", later, until), StoredObject(manifest, 9, "m", later, until)],
        record,
    )
    objects = side.ledger.objects()
    assert objects[manifest].complete and objects[manifest].lock_until == until
    assert objects[new].lock_until == T + timedelta(days=60)  # a recorded end never moves
    assert (objects[new].stored_at, objects[new].claimed_at) == (T, later)
    assert [r.digest for r in side.index.referrers(new)] == [manifest]


def test_complete_spreads_many_records_over_transactions_of_a_hundred(side: Side) -> None:
    blobs = [Digest.of(str(n).encode()) for n in range(150)]
    manifest = Digest.of(b"manifest")
    side.index.complete(
        [StoredObject(d, 1, "layer", T) for d in blobs] + [StoredObject(manifest, 2, "m", T)],
        ManifestRecord(manifest, "m", 2, 152, T),
    )
    assert set(side.index.object_states([*blobs, manifest])) == {*blobs, manifest}
    assert side.index.manifest(manifest) is not None
    side.index.record_stored([StoredObject(Digest.of(b"late"), 1, "layer", T)])
    assert side.index.object_states([Digest.of(b"late")])[Digest.of(b"late")].size == 1


def test_event_changes_name_what_recording_a_push_would_change(side: Side) -> None:
    index, digest, other = side.index, Digest.of(b"one"), Digest.of(b"two")
    push = ImageEvent("app", digest, Action.PUSH, T + timedelta(hours=1), "v1")
    every = EventChanges(history=True, repository=True, image=True, tag=True)
    assert index.event_changes(push) == every
    index.record_event(push, index.event_changes(push))
    assert index.event_changes(push) == EventChanges(False, False, False, False)
    assert not index.event_changes(push).any
    older = ImageEvent("app", other, Action.PUSH, T, "v1")  # out of order: the tag stays
    assert index.event_changes(older) == EventChanges(True, False, True, False)
    index.record_event(older, index.event_changes(older))
    [tag] = index.tags("app")
    assert tag.digest == digest
    index.record_event(ImageEvent("app", digest, Action.DELETE, T + timedelta(hours=2), None))
    side.ledger.mark_pruned("app", other, T + timedelta(days=100))
    again = ImageEvent("app", digest, Action.PUSH, T + timedelta(hours=3), "v2")
    assert index.event_changes(again) == EventChanges(True, False, True, True)
    assert index.event_changes(older).image  # pruned: a push holds it again
    index.record_event(again, index.event_changes(again))
    assert index.image_states("app")[digest] is False  # the newer push undid the deletion
    assert {t.tag: t.digest for t in index.tags("app")} == {"v1": digest, "v2": digest}


def test_the_first_location_claimed_wins(side: Side) -> None:
    here, there = Location(BUCKET, PREFIX), Location("another", "")
    assert side.index.location() is None
    side.index.claim_location(here)
    side.index.claim_location(here)
    with pytest.raises(ConfigurationError):
        side.index.claim_location(there)
    with pytest.raises(ConfigurationError):
        side.index.check_location(there)
    found = side.index.location()
    # The real index also records its own region (and account) beside what was claimed.
    assert found is not None and (found.bucket, found.prefix) == (here.bucket, here.prefix)
