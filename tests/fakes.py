"""In-memory stand-ins of the bucket (versioned, with Object Lock) and the index table, as
strict as the real services (not as lenient as moto), for the unit tests.

A FakeBucket is shared by a FakeBlobStore (storage.blobstore.S3BlobStore) and FakeObjectLocks
(storage.objectlock.S3ObjectLocks); a FakeTable by a FakeIndex (storage.index.DynamoIndex)
and a FakeLedger (storage.ledger.Ledger), as the real adapters share one bucket and one
table. What S3 and DynamoDB do, and these do too:
- a conditional write (If-None-Match: *) never replaces a current version: it answers
  "already there"; over a delete marker it writes a new current version;
- every new version gets the bucket's default retention; a lock is only ever extended:
  COMPLIANCE cannot be shortened or turned into GOVERNANCE, GOVERNANCE only with the
  bypass (which no role of the stack holds), and a locked or legally held version cannot
  be deleted (a delete without a version id only lays a delete marker over it);
- a HEAD, a GET without a version, a retention or legal hold change on a delete-marked key
  answers "no such key";
- each index transition is one conditional write with the same condition as the real
  adapter's, times compared as the index stores them (fixed-width UTC text).
tests/functional/test_fakes_contract.py runs the same assertions on these and on the real
adapters under moto, so the two cannot drift apart.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from ecr_backup.errors import (
    BlobNotFoundError,
    ConfigurationError,
    DigestMismatchError,
    IndexMissingError,
    ObjectBeingPrunedError,
    StorageError,
)
from ecr_backup.maintenance.wiring import Maintained, MaintenanceServices
from ecr_backup.model import (
    UNTAGGED,
    Action,
    ImageEvent,
    ManifestRecord,
    RepositoryState,
    TagState,
    format_time,
    parse_time,
)
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.streams import Readable, VerifyingReader
from ecr_backup.settings import Settings
from ecr_backup.storage.blobstore import ObjectVersion
from ecr_backup.storage.index import TRANSACT_LIMIT, EventChanges, Location, StoredObject
from ecr_backup.storage.ledger import Hold, ObjectState
from ecr_backup.storage.objectlock import LockMode, ObjectLock

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


# -- the bucket ---------------------------------------------------------------------------


class AccessDenied(ConfigurationError):
    """What the adapters make of S3's AccessDenied (ecr_backup.awserrors.translate)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what}: AccessDenied", code="AccessDenied", status=403)


@dataclass
class _Version:
    version_id: str
    data: bytes | None  # None: a delete marker
    last_modified: datetime
    mode: LockMode | None = None
    until: datetime | None = None
    legal_hold: bool = False

    def locked(self, now: datetime) -> bool:
        return self.legal_hold or (self.until is not None and self.until > now)


class FakeBucket:
    """A versioned S3 bucket with Object Lock and a default retention (storage.provision)."""

    def __init__(
        self,
        name: str = "backup-bucket",
        *,
        clock: Clock = _now,
        retention_days: int = 35,
        retention_mode: LockMode = "GOVERNANCE",
    ) -> None:
        self.name = name
        self.clock = clock
        self.retention = (retention_mode, timedelta(days=retention_days))
        self._keys: dict[str, list[_Version]] = {}  # oldest first
        self._serial = 0
        self._lock = threading.RLock()

    # -- what S3 answers ------------------------------------------------------------------

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        retain: tuple[LockMode, datetime] | None = None,
    ) -> bool:
        """PutObject; False for a 412 (If-None-Match and a current version that is not a
        delete marker). `retain`: the retention the PUT sets, instead of the default."""
        with self._lock:
            current = self._current(key)
            if if_none_match and current is not None and current.data is not None:
                return False
            now = self.clock()
            mode, days = self.retention
            lock_mode, until = retain if retain is not None else (mode, now + days)
            self._add(key, _Version(self._next_id(), bytes(data), now, lock_mode, until))
            return True

    def head(self, key: str) -> _Version:
        """HeadObject / GetObject without a version: the current version, or NoSuchKey."""
        with self._lock:
            current = self._current(key)
            if current is None or current.data is None:
                raise BlobNotFoundError(f"s3://{self.name}/{key}: NoSuchKey", code="NoSuchKey")
            return current

    def get(self, key: str, version_id: str | None = None) -> bytes:
        with self._lock:
            if version_id is None:
                data = self.head(key).data
            else:
                data = self._version(key, version_id).data
                if data is None:  # S3 answers 405 for a GET of a delete marker
                    raise StorageError(
                        f"GET {key}?versionId={version_id}: MethodNotAllowed",
                        code="MethodNotAllowed",
                        status=405,
                    )
            assert data is not None
            return data

    def delete(self, key: str, version_id: str | None = None, *, bypass: bool = False) -> None:
        """DeleteObject: without a version, a delete marker (allowed whatever the locks);
        with one, the version goes, unless locked (GOVERNANCE gives way to the bypass)."""
        with self._lock:
            if version_id is None:
                self._add(key, _Version(self._next_id(), None, self.clock()))
                return
            version = self._version(key, version_id)
            now = self.clock()
            held = version.legal_hold or (
                version.until is not None
                and version.until > now
                and (version.mode == "COMPLIANCE" or not bypass)
            )
            if held:
                raise AccessDenied(f"DELETE {key}?versionId={version_id}")
            self._keys[key].remove(version)

    def put_retention(
        self, key: str, mode: LockMode, until: datetime, *, bypass: bool = False
    ) -> None:
        """PutObjectRetention on the current version: later only, unless GOVERNANCE and the
        bypass; COMPLIANCE never earlier and never GOVERNANCE again."""
        with self._lock:
            version = self.head(key)
            if version.until is not None and version.until > self.clock():
                shorter = until < version.until
                weaker = version.mode == "COMPLIANCE" and mode != "COMPLIANCE"
                if version.mode == "COMPLIANCE" and (shorter or weaker):
                    raise AccessDenied(f"extend the lock of {key}")
                if version.mode == "GOVERNANCE" and shorter and not bypass:
                    raise AccessDenied(f"extend the lock of {key}")
            version.mode, version.until = mode, until

    def put_legal_hold(self, key: str, on: bool) -> None:
        with self._lock:
            self.head(key).legal_hold = on

    def list_versions(self, prefix: str) -> Iterator[tuple[str, ObjectVersion]]:
        """ListObjectVersions: keys in order, each key's versions newest first, then (as S3
        lists them apart) the delete markers."""
        with self._lock:
            keys = sorted(k for k in self._keys if k.startswith(prefix))
            listing = [(k, list(self._keys[k])) for k in keys]
        markers: list[tuple[str, ObjectVersion]] = []
        for key, versions in listing:
            latest = versions[-1] if versions else None
            for version in reversed(versions):
                seen = ObjectVersion(
                    version.version_id,
                    len(version.data or b""),
                    version.last_modified,
                    version is latest,
                    deleted=version.data is None,
                )
                if version.data is None:
                    markers.append((key, seen))
                else:
                    yield key, seen
        yield from markers

    def list_keys(self, prefix: str) -> Iterator[str]:
        """ListObjectsV2: the keys whose current version is not a delete marker."""
        with self._lock:
            keys = sorted(k for k, v in self._keys.items() if k.startswith(prefix) and v)
            yield from (k for k in keys if self._keys[k][-1].data is not None)

    # -- for tests ------------------------------------------------------------------------

    def overwrite(self, key: str, data: bytes) -> None:
        """A new version over the key, as someone holding s3:PutObject could write."""
        self.put(key, data)

    def lock_of(self, key: str) -> ObjectLock:
        version = self.head(key)
        return ObjectLock(version.mode, version.until, version.legal_hold)

    # -- plumbing -------------------------------------------------------------------------

    def _current(self, key: str) -> _Version | None:
        versions = self._keys.get(key)
        return versions[-1] if versions else None

    def _version(self, key: str, version_id: str) -> _Version:
        for version in self._keys.get(key, []):
            if version.version_id == version_id:
                return version
        raise BlobNotFoundError(f"s3://{self.name}/{key}: NoSuchVersion", code="NoSuchVersion")

    def _add(self, key: str, version: _Version) -> None:
        self._keys.setdefault(key, []).append(version)

    def _next_id(self) -> str:
        self._serial += 1
        return f"v{self._serial:08d}"


def _retention(retain: ObjectLock | None) -> tuple[LockMode, datetime] | None:
    if retain is None or retain.mode is None or retain.until is None:
        return None
    return retain.mode, retain.until


class FakeBlobStore:
    """storage.blobstore.S3BlobStore over a FakeBucket (every PUT whole: no multipart)."""

    def __init__(self, bucket: FakeBucket, prefix: str = "") -> None:
        self.fake = bucket
        self.bucket = bucket.name
        self.prefix = prefix
        self.part_size = 1 << 62

    def close(self) -> None:
        pass

    def blob_key(self, digest: Digest) -> str:
        return f"{self.prefix}blobs/{digest.algorithm}/{digest.hex}"

    def record_key(self, name: str) -> str:
        return f"{self.prefix}refs/{name}"

    def stat(self, digest: Digest) -> int | None:
        try:
            return len(self.fake.head(self.blob_key(digest)).data or b"")
        except BlobNotFoundError:
            return None

    def open(
        self, digest: Digest, *, version_id: str | None = None
    ) -> AbstractContextManager[Readable]:
        return self._open(digest, version_id)

    @contextmanager
    def _open(self, digest: Digest, version_id: str | None) -> Iterator[Readable]:
        key = self.blob_key(digest)
        try:
            data = self.fake.get(key, version_id)
        except BlobNotFoundError as e:
            raise BlobNotFoundError(
                f"{digest} is not in s3://{self.bucket}/{key}", code=e.code
            ) from e
        yield io.BytesIO(data)

    def read(self, digest: Digest) -> bytes:
        with self.open(digest) as body:
            data = body.read()
        if Digest.of(data) != digest:
            raise DigestMismatchError(digest, "stored object no longer hashes to its name")
        return data

    def put_bytes(self, digest: Digest, data: bytes, retain: ObjectLock | None = None) -> bool:
        if Digest.of(data) != digest:
            raise DigestMismatchError(digest, f"bytes hash to {Digest.of(data)}")
        return self.fake.put(
            self.blob_key(digest), data, if_none_match=True, retain=_retention(retain)
        )

    def put_stream(
        self, digest: Digest, size: int, source: Readable, retain: ObjectLock | None = None
    ) -> bool:
        reader = VerifyingReader(source, digest, size)
        data = reader.read_exactly(size + 1)
        reader.verify()  # a mismatch stores nothing
        return self.fake.put(
            self.blob_key(digest), data, if_none_match=True, retain=_retention(retain)
        )

    def put_record(self, name: str, body: bytes) -> bool:
        return self.fake.put(self.record_key(name), body, if_none_match=True)

    def versions(self, digest: Digest) -> list[ObjectVersion]:
        key = self.blob_key(digest)
        return [v for k, v in self.fake.list_versions(key) if k == key]

    def iter_blob_versions(self) -> Iterator[tuple[str, ObjectVersion]]:
        prefix = f"{self.prefix}blobs/sha256/"
        for key, version in self.fake.list_versions(prefix):
            yield key.removeprefix(prefix), version

    def iter_record_names(self, under: str = "") -> Iterator[str]:
        start = len(self.record_key(""))
        for key in self.fake.list_keys(self.record_key(under)):
            yield key[start:]

    def iter_records(self, under: str = "") -> Iterator[tuple[str, bytes]]:
        for key in self.fake.list_keys(self.record_key(under)):
            yield key, self.fake.get(key)

    def read_record(self, name: str) -> bytes:
        return self.fake.get(self.record_key(name))


class FakeObjectLocks:
    """storage.objectlock.S3ObjectLocks over a FakeBucket (never asks for the bypass)."""

    def __init__(self, bucket: FakeBucket, prefix: str = "") -> None:
        self.fake = bucket
        self.bucket = bucket.name
        self.prefix = prefix

    def key(self, digest: Digest) -> str:
        return f"{self.prefix}blobs/{digest.algorithm}/{digest.hex}"

    def read(self, digest: Digest) -> ObjectLock:
        key = self.key(digest)
        try:
            return self.fake.lock_of(key)
        except BlobNotFoundError as e:
            raise BlobNotFoundError(f"{digest} is not in s3://{self.bucket}/{key}") from e

    def extend(self, digest: Digest, mode: LockMode, until: datetime) -> None:
        key = self.key(digest)
        try:
            self.fake.put_retention(key, mode, until)
        except BlobNotFoundError as e:
            raise StorageError(f"extend the lock of {key}: NoSuchKey", code="NoSuchKey") from e

    def set_legal_hold(self, digest: Digest, on: bool) -> None:
        key = self.key(digest)
        try:
            self.fake.put_legal_hold(key, on)
        except BlobNotFoundError as e:
            raise StorageError(f"set the legal hold of {key}: NoSuchKey", code="NoSuchKey") from e

    def delete_current(self, digest: Digest) -> None:
        self.fake.delete(self.key(digest))


# -- the index table ------------------------------------------------------------------------


@dataclass
class _Blob:
    """A BLOB#<digest> / BLOB item; times as the table stores them (format_time text)."""

    size: int
    media_type: str
    stored_at: str
    claimed_at: str | None = None
    lock_until: str | None = None
    tombstone_at: str | None = None
    sweeping: str | None = None


@dataclass
class _Image:
    time: str
    gone: str | None = None
    pruned_at: str | None = None


@dataclass
class _Repository:
    tags: dict[str, tuple[str, Digest, Action]] = field(default_factory=dict)  # time first
    history: dict[str, ImageEvent] = field(default_factory=dict)  # by sort key
    images: dict[Digest, _Image] = field(default_factory=dict)


class FakeTable:
    """One index table: the items of storage.index and storage.ledger, in memory."""

    def __init__(self, name: str = "backup-index", *, exists: bool = True) -> None:
        self.name = name
        self.exists = exists
        self.location: Location | None = None
        self.blobs: dict[Digest, _Blob] = {}
        self.manifests: dict[Digest, ManifestRecord] = {}
        self.subjects: dict[Digest, set[Digest]] = {}
        self.repositories: dict[str, _Repository] = {}
        self.listed: set[str] = set()  # REPOS items
        self.holds: dict[tuple[str, Digest], Hold] = {}
        self.lease: tuple[str, str] | None = None  # (owner, until)
        self.lock = threading.RLock()

    def check(self) -> None:
        if not self.exists:
            raise IndexMissingError(
                f"read {self.name}: index table not found", code="ResourceNotFoundException"
            )


def _digest_text_order(digests: Iterable[Digest]) -> list[Digest]:
    return sorted(digests, key=str)


class FakeIndex:
    """storage.index.DynamoIndex over a FakeTable."""

    def __init__(self, table: FakeTable) -> None:
        self.fake = table
        self.table = table.name

    def create_if_missing(self) -> bool:
        with self.fake.lock:
            if self.fake.exists:
                return False
            self.fake.exists = True
            return True

    def location(self) -> Location | None:
        self.fake.check()
        return self.fake.location

    def check_location(self, here: Location) -> None:
        recorded = self.location()
        if recorded is not None and recorded != here:
            raise ConfigurationError(
                f"index table {self.table} indexes {recorded}, not {here}",
                code="IndexLocationMismatch",
                hint="use that bucket and prefix, or another index table (ECR_BACKUP_TABLE)",
            )

    def claim_location(self, here: Location) -> None:
        with self.fake.lock:
            if self.location() is None:
                self.fake.location = here
        self.check_location(here)

    def stored_blobs(self, digests: Iterable[Digest]) -> set[Digest]:
        with self.fake.lock:
            self.fake.check()
            return {d for d in digests if d in self.fake.blobs}

    def record_blob(self, digest: Digest, size: int, media_type: str, stored_at: datetime) -> None:
        now = format_time(stored_at)
        with self.fake.lock:
            self.fake.check()
            blob = self.fake.blobs.get(digest)
            if blob is not None and blob.sweeping is not None:
                raise ObjectBeingPrunedError(digest)
            if blob is None:
                blob = self.fake.blobs[digest] = _Blob(size, media_type, now)
            blob.size, blob.media_type, blob.claimed_at = size, media_type, now
            blob.tombstone_at = None

    def object_states(self, digests: Iterable[Digest]) -> dict[Digest, ObjectState]:
        """A consistent BatchGetItem of BLOB and MANIFEST items: read, nothing written."""
        with self.fake.lock:
            self.fake.check()
            return {
                d: _state(d, self.fake.blobs[d], complete=d in self.fake.manifests)
                for d in set(digests)
                if d in self.fake.blobs
            }

    def complete(self, stored: Sequence[StoredObject], record: ManifestRecord) -> None:
        """TransactWriteItems of record_blob's updates and the completion: all or nothing."""
        limit = TRANSACT_LIMIT - (2 if record.subject else 1)
        head = max(0, len(stored) - limit)
        for start in range(0, head, TRANSACT_LIMIT):
            self.record_stored(stored[start : min(start + TRANSACT_LIMIT, head)])
        with self.fake.lock:
            self._record_all(stored[head:])
            self.mark_complete(record)

    def record_stored(self, stored: Sequence[StoredObject]) -> None:
        for start in range(0, len(stored), TRANSACT_LIMIT):
            with self.fake.lock:
                self._record_all(stored[start : start + TRANSACT_LIMIT])

    def _record_all(self, stored: Sequence[StoredObject]) -> None:
        """One transaction's records: refused whole while one object is being swept."""
        self.fake.check()
        for item in stored:
            blob = self.fake.blobs.get(item.digest)
            if blob is not None and blob.sweeping is not None:
                raise ObjectBeingPrunedError(item.digest)
        for item in stored:
            self.record_blob(item.digest, item.size, item.media_type, item.stored_at)
            blob = self.fake.blobs[item.digest]
            if item.lock_until is not None and blob.lock_until is None:
                blob.lock_until = format_time(item.lock_until)

    def record_blobs(self, blobs: Iterable[tuple[Digest, int, str, datetime]]) -> int:
        """BatchWriteItem puts: whole items, replacing whatever was there."""
        written = 0
        with self.fake.lock:
            self.fake.check()
            for digest, size, media_type, stored_at in blobs:
                self.fake.blobs[digest] = _Blob(size, media_type, format_time(stored_at))
                written += 1
        return written

    def claim(self, digest: Digest, now: datetime) -> ObjectState | None:
        return FakeLedger(self.fake).claim(digest, now)

    def blob_size(self, digest: Digest) -> int | None:
        with self.fake.lock:
            self.fake.check()
            blob = self.fake.blobs.get(digest)
            return blob.size if blob else None

    def manifest(self, digest: Digest) -> ManifestRecord | None:
        with self.fake.lock:
            self.fake.check()
            return self.fake.manifests.get(digest)

    def complete_manifests(self, digests: Iterable[Digest]) -> set[Digest]:
        with self.fake.lock:
            self.fake.check()
            return {d for d in digests if d in self.fake.manifests}

    def mark_complete(self, record: ManifestRecord) -> None:
        # Stored as the table would: times to the microsecond, in UTC.
        stored = replace(record, completed_at=parse_time(format_time(record.completed_at)))
        with self.fake.lock:
            self.fake.check()
            if record.subject:
                self.fake.subjects.setdefault(record.subject, set()).add(record.digest)
            self.fake.manifests[record.digest] = stored

    def referrers(self, subject: Digest) -> list[ManifestRecord]:
        with self.fake.lock:
            self.fake.check()
            found = _digest_text_order(self.fake.subjects.get(subject, set()))
            return [self.fake.manifests[d] for d in found if d in self.fake.manifests]

    def event_changes(self, event: ImageEvent) -> EventChanges:
        """One BatchGetItem of the HIST#, REPOS, IMAGE# and TAG# items; nothing written."""
        when = format_time(event.time)
        with self.fake.lock:
            self.fake.check()
            repo = self.fake.repositories.get(event.repository, _Repository())
            image = repo.images.get(event.digest)
            held = repo.tags.get(event.tag) if event.tag else None
            return EventChanges(
                history=_history_key(event, when) not in repo.history,
                repository=event.repository not in self.fake.listed,
                image=image is None
                or image.pruned_at is not None
                or (image.gone is not None and image.gone < when),
                tag=event.tag is not None
                and (
                    held is None
                    or held[0] < when
                    or (held[0] == when and held[1:] != (event.digest, event.action))
                ),
            )

    def record_event(self, event: ImageEvent, changes: EventChanges | None = None) -> None:
        """The real one's writes; given event_changes' answer, only the items it names."""
        when = format_time(event.time)
        every = EventChanges(history=True, repository=True, image=True, tag=True)
        write = changes or every
        with self.fake.lock:
            self.fake.check()
            repo = self.fake.repositories.setdefault(event.repository, _Repository())
            if write.history:
                repo.history[_history_key(event, when)] = replace(event, time=parse_time(when))
            if event.action is Action.PUSH:
                if write.repository:
                    self.fake.listed.add(event.repository)
                if write.image:
                    image = repo.images.setdefault(event.digest, _Image(when))
                    image.pruned_at = None
                    if image.gone is not None and image.gone < when:
                        image.gone = None
            elif event.tag is None:
                image_gone = repo.images.get(event.digest)
                if image_gone is not None and (image_gone.gone is None or image_gone.gone < when):
                    image_gone.gone = when
            if event.tag and write.tag:
                held = repo.tags.get(event.tag)
                if held is None or held[0] <= when:
                    repo.tags[event.tag] = (when, event.digest, event.action)

    def repositories(self) -> list[str]:
        with self.fake.lock:
            self.fake.check()
            return sorted(self.fake.listed)

    def _repo(self, repository: str) -> _Repository:
        self.fake.check()
        return self.fake.repositories.get(repository, _Repository())

    def tags(self, repository: str) -> list[TagState]:
        with self.fake.lock:
            held = self._repo(repository).tags
            return [_tag_state(repository, tag, held[tag]) for tag in sorted(held)]

    def repository_state(self, repository: str) -> RepositoryState:
        with self.fake.lock:
            repo = self._repo(repository)
            state = RepositoryState()
            for tag in sorted(repo.tags):
                state.tags[tag] = _tag_state(repository, tag, repo.tags[tag])
            for digest in _digest_text_order(repo.images):
                state.images[digest] = repo.images[digest].gone is not None
                if repo.images[digest].pruned_at is not None:
                    state.pruned.add(digest)
            return state

    def tag(self, repository: str, tag: str) -> TagState | None:
        with self.fake.lock:
            held = self._repo(repository).tags.get(tag)
            return _tag_state(repository, tag, held) if held else None

    def history(self, repository: str, tag: str | None) -> list[ImageEvent]:
        prefix = f"HIST#{tag or UNTAGGED}#"
        with self.fake.lock:
            history = self._repo(repository).history
            return [history[k] for k in sorted(history) if k.startswith(prefix)]

    def tag_at(self, repository: str, tag: str, at: datetime) -> ImageEvent | None:
        low, high = f"HIST#{tag}#", f"HIST#{tag}#{format_time(at)}#~"
        with self.fake.lock:
            history = self._repo(repository).history
            keys = [k for k in sorted(history) if low <= k <= high]
            return history[keys[-1]] if keys else None

    def images(self, repository: str) -> list[Digest]:
        with self.fake.lock:
            images = self._repo(repository).images
            return [d for d in _digest_text_order(images) if images[d].pruned_at is None]

    def image_states(self, repository: str) -> dict[Digest, bool]:
        with self.fake.lock:
            images = self._repo(repository).images
            return {d: images[d].gone is not None for d in _digest_text_order(images)}


def _history_key(event: ImageEvent, when: str) -> str:
    return f"HIST#{event.tag or UNTAGGED}#{when}#{event.digest}#{event.action}"


def _tag_state(repository: str, tag: str, held: tuple[str, Digest, Action]) -> TagState:
    when, digest, action = held
    return TagState(repository, tag, digest, parse_time(when), action)


class FakeLedger:
    """storage.ledger.Ledger over a FakeTable: each method one conditional write, with the
    real one's condition."""

    def __init__(self, table: FakeTable) -> None:
        self.fake = table
        self.table = table.name

    def _blob(self, digest: Digest) -> _Blob | None:
        self.fake.check()
        return self.fake.blobs.get(digest)

    def claim(self, digest: Digest, now: datetime) -> ObjectState | None:
        with self.fake.lock:
            blob = self._blob(digest)
            if blob is None:
                return None
            if blob.sweeping is not None:
                raise ObjectBeingPrunedError(digest)
            blob.claimed_at, blob.tombstone_at = format_time(now), None
            return _state(digest, blob, complete=False)

    def record_lock(self, digest: Digest, until: datetime) -> None:
        text = format_time(until)
        with self.fake.lock:
            blob = self._blob(digest)
            if blob is not None and (blob.lock_until is None or blob.lock_until < text):
                blob.lock_until = text

    def objects(self) -> dict[Digest, ObjectState]:
        with self.fake.lock:
            self.fake.check()
            return {
                d: _state(d, b, complete=d in self.fake.manifests)
                for d, b in self.fake.blobs.items()
            }

    def complete_manifests(self) -> set[Digest]:
        with self.fake.lock:
            self.fake.check()
            return set(self.fake.manifests)

    def tombstone(self, digest: Digest, now: datetime, claimed_before: datetime) -> bool:
        cutoff = format_time(claimed_before)
        with self.fake.lock:
            blob = self._blob(digest)
            if (
                blob is None
                or blob.tombstone_at is not None
                or blob.sweeping is not None
                or (blob.claimed_at is not None and not blob.claimed_at < cutoff)
            ):
                return False
            blob.tombstone_at = format_time(now)
            return True

    def start_sweep(self, digest: Digest, tombstone_at: datetime, token: str) -> bool:
        with self.fake.lock:
            blob = self._blob(digest)
            if (
                blob is None
                or blob.tombstone_at != format_time(tombstone_at)
                or blob.sweeping is not None
            ):
                return False
            blob.sweeping = token
            return True

    def abandon_sweep(self, digest: Digest, token: str) -> None:
        with self.fake.lock:
            blob = self._blob(digest)
            if blob is not None and blob.sweeping == token:
                blob.sweeping, blob.tombstone_at = None, None

    def uncomplete(self, digest: Digest) -> None:
        with self.fake.lock:
            self.fake.check()
            self.fake.manifests.pop(digest, None)

    def finish_sweep(self, digest: Digest, token: str) -> None:
        with self.fake.lock:
            blob = self._blob(digest)
            if blob is not None and blob.sweeping == token:
                del self.fake.blobs[digest]

    def mark_pruned(self, repository: str, digest: Digest, now: datetime) -> None:
        with self.fake.lock:
            self.fake.check()
            image = self.fake.repositories.get(repository, _Repository()).images.get(digest)
            if image is not None:
                image.pruned_at = format_time(now)

    def take_prune_lease(self, owner: str, now: datetime, until: datetime) -> bool:
        with self.fake.lock:
            self.fake.check()
            lease = self.fake.lease
            if lease is not None and not lease[1] < format_time(now):
                return False
            self.fake.lease = (owner, format_time(until))
            return True

    def drop_prune_lease(self, owner: str) -> None:
        with self.fake.lock:
            self.fake.check()
            if self.fake.lease is not None and self.fake.lease[0] == owner:
                self.fake.lease = None

    def add_hold(self, hold: Hold) -> None:
        with self.fake.lock:
            self.fake.check()
            # Stored as the item holds it: the time as text, to the microsecond.
            stored = Hold(
                hold.repository,
                hold.digest,
                parse_time(format_time(hold.time)),
                hold.reason or None,
                hold.objects,
            )
            self.fake.holds[(hold.repository, hold.digest)] = stored

    def remove_hold(self, repository: str, digest: Digest) -> bool:
        with self.fake.lock:
            self.fake.check()
            return self.fake.holds.pop((repository, digest), None) is not None

    def holds(self) -> list[Hold]:
        with self.fake.lock:
            self.fake.check()
            # The query returns them in sort-key order: "<repository>@<digest>".
            keys = sorted(self.fake.holds, key=lambda k: f"{k[0]}@{k[1]}")
            return [self.fake.holds[k] for k in keys]


def _state(digest: Digest, blob: _Blob, *, complete: bool) -> ObjectState:
    def time(text: str | None) -> datetime | None:
        return parse_time(text) if text is not None else None

    return ObjectState(
        digest=digest,
        size=blob.size,
        media_type=blob.media_type,
        stored_at=parse_time(blob.stored_at),
        complete=complete,
        lock_until=time(blob.lock_until),
        claimed_at=time(blob.claimed_at),
        tombstone_at=time(blob.tombstone_at),
        sweeping=blob.sweeping,
    )


# -- one backup's worth ------------------------------------------------------------------


class MovableClock:
    """Starts at the real time (S3 computes a new object's default retention from the real
    time) and moves on demand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class FakeAws(MaintenanceServices):
    """A bucket and a table with the four adapters over them, sharing state as the real
    ones do (the store and the locks one bucket, the index and the ledger one table), and
    the maintenance services wired over them by the same code as the real ones."""

    clock: Clock = _now
    settings: Settings = field(
        default_factory=lambda: Settings(bucket="backup-bucket", table="backup-index")
    )
    bucket: FakeBucket = field(init=False)
    table: FakeTable = field(init=False)
    store: FakeBlobStore = field(init=False)
    locks: FakeObjectLocks = field(init=False)
    index: FakeIndex = field(init=False)
    ledger: FakeLedger = field(init=False)

    def __post_init__(self) -> None:
        self.bucket = FakeBucket(self.settings.bucket, clock=self.clock)
        self.table = FakeTable(self.settings.table or "backup-index")
        self.store = FakeBlobStore(self.bucket, self.settings.prefix)
        self.locks = FakeObjectLocks(self.bucket, self.settings.prefix)
        self.index = FakeIndex(self.table)
        self.ledger = FakeLedger(self.table)

    def maintained(self) -> Maintained:
        return Maintained(self.store, self.index, self.ledger, self.locks)
