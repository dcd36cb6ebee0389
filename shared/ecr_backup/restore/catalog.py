"""The read side of the backup: which images were pushed where and when, and what they hold.

Tag lookups have two sources. The DynamoDB index answers with Get and Query calls; when its
table is gone (or not to be trusted: `--from-bucket`), the immutable push records under
`<prefix>refs/<repository>/_events/` answer instead. `Catalog` is the one place that
chooses, and `RecordLog` replays the records with the index's own rules (newest event
wins a tag, one history entry per tag/time/digest), so both give the same answers.

Manifests and blobs always come from the bucket and are checked against their digest.
Objects are written once (If-None-Match), so a bucket object with several versions was
written over by something else: `BucketReader` then reads the oldest version that still
hashes to its name, and says so.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from ecr_backup.errors import (
    BlobNotFoundError,
    DigestMismatchError,
    EcrBackupError,
    IndexMissingError,
    InvalidInputError,
    ManifestNotFoundError,
    NotFoundError,
    StorageError,
)
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Descriptor, Manifest, Platform, parse_manifest
from ecr_backup.oci.reference import ImageRef
from ecr_backup.oci.streams import VerifyingReader, read_full
from ecr_backup.storage.blobstore import MiB, ObjectVersion, S3BlobStore
from ecr_backup.storage.index import DynamoIndex
from ecr_backup.storage.records import Action, ImageEvent, TagState, format_time

log = logging.getLogger(__name__)

# Registries refuse manifests over 4 MiB; a bigger object named as a manifest is a layer.
MAX_MANIFEST_SIZE = 4 * MiB
_HASH_CHUNK = MiB
_UNTAGGED = "@"

T = TypeVar("T")


def display_time(moment: datetime) -> str:
    """UTC ISO 8601 for people: seconds unless the time has a fraction."""
    moment = moment.astimezone(UTC)
    spec = "microseconds" if moment.microsecond else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


# -- reading the bucket ----------------------------------------------------------------


class CheckedStream(VerifyingReader):
    """A blob stream whose digest is checked *before* its last bytes are handed out.

    The registry upload sends its final chunk only after reading it, so a blob that does
    not hash to its name fails here, with its digest named, and is never committed.
    """

    def read(self, amt: int = -1, /) -> bytes:
        data = super().read(amt)
        if self.bytes_read == self.size or (not data and amt != 0):
            self.verify()
        return data


class BucketReader:
    """Manifests and blobs out of the bucket, each verified against its digest."""

    def __init__(self, store: S3BlobStore) -> None:
        self.store = store
        self._manifests: dict[Digest, Manifest] = {}
        self._located: dict[Digest, str | None] = {}
        self._lock = threading.Lock()
        self._versions_denied = False
        # Objects read from an older version because the current one was not intact.
        self.recovered: dict[Digest, str | None] = {}

    def where(self, digest: Digest) -> str:
        return f"s3://{self.store.bucket}/{self.store.blob_key(digest)}"

    def manifest(self, digest: Digest) -> Manifest:
        with self._lock:
            cached = self._manifests.get(digest)
        if cached is not None:
            return cached
        try:
            raw = self._read_manifest(digest, self.locate(digest, limit=MAX_MANIFEST_SIZE))
            if Digest.of(raw) != digest:
                raw = self._read_manifest(digest, self.recover(digest))
        except BlobNotFoundError as e:
            raise ManifestNotFoundError(f"manifest {digest} is not in the backup: {e}") from e
        if Digest.of(raw) != digest:
            raise DigestMismatchError(digest, f"{self.where(digest)} no longer hashes to its name")
        manifest = parse_manifest(raw)
        with self._lock:
            self._manifests[digest] = manifest
        return manifest

    def _read_manifest(self, digest: Digest, version: str | None) -> bytes:
        with self.store.open(digest, version_id=version) as body:
            return read_full(body, MAX_MANIFEST_SIZE + 1)

    @contextmanager
    def open_blob(
        self, digest: Digest, size: int, *, thorough: bool = False
    ) -> Iterator[CheckedStream]:
        """Stream a blob; its last read raises DigestMismatchError if it does not match.

        After such an error, `recover()` finds an intact older version and the next
        open_blob reads that one. `thorough` looks before reading (see `locate`).
        """
        version = self.locate(digest, size=size, thorough=thorough)
        with self.store.open(digest, version_id=version) as body:
            yield CheckedStream(body, digest, size)

    def locate(
        self,
        digest: Digest,
        *,
        size: int | None = None,
        limit: int | None = None,
        thorough: bool = False,
    ) -> str | None:
        """Which version of the object to read: None for the current one.

        Quick (the default, one HEAD): a current version of the right size is read, and its
        hash checked while it streams. Thorough (one version listing): an object written
        more than once, deleted or of the wrong size is someone else's doing, and the oldest
        version that hashes to the name is chosen before anything is read. Either way, a
        missing or wrongly sized current version leads to the listing.
        """
        with self._lock:
            if digest in self._located:
                return self._located[digest]
        version: str | None = None
        stored = None if thorough else self.store.stat(digest)
        fits = stored is not None and (size is None or stored == size)
        if not (fits and (limit is None or (stored or 0) <= limit)):
            version = self._locate(digest, size, limit, check_single=False)
        with self._lock:
            self._located[digest] = version
        return version

    def recover(self, digest: Digest, size: int | None = None) -> str | None:
        """After a read that did not hash to its name: the intact version to read instead.

        Raises DigestMismatchError naming the digest when no version is intact.
        """
        version = self._locate(digest, size, None, check_single=True)
        with self._lock:
            self._located[digest] = version
        return version

    def _locate(
        self, digest: Digest, size: int | None, limit: int | None, *, check_single: bool
    ) -> str | None:
        versions = self._versions(digest)
        if versions is None:
            self._current_only(digest, size, limit)
            if check_single:
                raise DigestMismatchError(
                    digest,
                    f"{self.where(digest)} does not hash to its name (older versions "
                    "cannot be listed: s3:ListBucketVersions is denied)",
                )
            return None
        live = [v for v in versions if not v.deleted]
        if not live:
            gone = " (deleted, and no earlier version remains)" if versions else ""
            raise BlobNotFoundError(f"{digest} is not in the bucket: {self.where(digest)}{gone}")
        if limit is not None and all(v.size > limit for v in live):
            raise InvalidInputError(
                f"{digest} is a {live[0].size} byte object, not a manifest (a layer or config?)"
            )
        if not check_single and len(versions) == 1 and (size is None or live[0].size == size):
            return None
        current = next((v for v in versions if v.is_latest), None)
        for version in reversed(live):  # oldest first: the backup wrote the first one
            if (size is not None and version.size != size) or (
                limit is not None and version.size > limit
            ):
                continue
            if self.hash_version(digest, version.version_id)[0] == digest:
                if version is not current:
                    log.warning(
                        "%s: the current version of %s is not intact; reading version %s",
                        digest,
                        self.where(digest),
                        version.version_id,
                    )
                    with self._lock:
                        self.recovered[digest] = version.version_id
                return version.version_id
        expected = f" of {size} bytes" if size is not None else ""
        raise DigestMismatchError(
            digest, f"no version{expected} of {self.where(digest)} hashes to its name"
        )

    def _versions(self, digest: Digest) -> list[ObjectVersion] | None:
        if self._versions_denied:
            return None
        try:
            return self.store.versions(digest)
        except StorageError as e:
            # A role without s3:ListBucketVersions still restores; it only loses the fallback.
            if "AccessDenied" not in str(e):
                raise
            log.warning("cannot list object versions (%s): reading current versions only", e)
            self._versions_denied = True
            return None

    def _current_only(self, digest: Digest, size: int | None, limit: int | None) -> None:
        stored = self.store.stat(digest)
        if stored is None:
            raise BlobNotFoundError(f"{digest} is not in the bucket: {self.where(digest)}")
        if size is not None and stored != size:
            raise DigestMismatchError(
                digest, f"{self.where(digest)} holds {stored} bytes, expected {size}"
            )
        if limit is not None and stored > limit:
            raise InvalidInputError(f"{digest} is a {stored} byte object, not a manifest")

    def hash_version(self, digest: Digest, version_id: str | None) -> tuple[Digest, int]:
        """Re-read one object version and hash it, streamed: (its real digest, its size)."""
        hasher = hashlib.sha256()
        size = 0
        with self.store.open(digest, version_id=version_id) as body:
            while chunk := body.read(_HASH_CHUNK):
                hasher.update(chunk)
                size += len(chunk)
        return Digest.from_hash(hasher), size

    def closure(self, digest: Digest) -> Closure:
        return build_closure(digest, self.manifest)


# -- closures ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    """A manifest of a closure, with what its parent index says about it."""

    manifest: Manifest
    platform: Platform | None = None
    parent: Digest | None = None


@dataclass(frozen=True)
class Closure:
    """A manifest and everything under it: child manifests, configs and layers."""

    root: Manifest
    nodes: tuple[Node, ...]  # root first (pre-order), each manifest once
    blobs: tuple[Descriptor, ...]  # configs and layers, each once, in order of appearance
    total_size: int  # counted as the backup counts it (ManifestRecord.total_size)

    @property
    def digest(self) -> Digest:
        return self.root.digest

    def push_order(self) -> list[Manifest]:
        """Children before the indexes that list them: the order a registry accepts."""
        by_digest = {n.manifest.digest: n.manifest for n in self.nodes}
        ordered: list[Manifest] = []
        seen: set[Digest] = set()

        def visit(manifest: Manifest) -> None:
            if manifest.digest in seen:
                return
            seen.add(manifest.digest)
            for child in manifest.children:
                visit(by_digest[child.digest])
            ordered.append(manifest)

        visit(self.root)
        return ordered

    @property
    def platforms(self) -> list[Platform]:
        return [n.platform for n in self.nodes if n.platform is not None]

    def image_for(self, wanted: str) -> Manifest:
        """The image of one platform (os/arch[/variant]) of an index; the root when it is one."""
        if not self.root.is_index:
            return self.root
        want = wanted.split("/")
        for node in self.nodes:
            platform = node.platform
            if platform is None or node.manifest.is_index:
                continue
            have = [platform.os, platform.architecture]
            if platform.variant:
                have.append(platform.variant)
            # "linux/arm64" picks linux/arm64/v8; "linux/arm/v7" wants that variant.
            if have[: len(want)] == want:
                return node.manifest
        choices = ", ".join(str(p) for p in self.platforms if p.os != "unknown") or "none"
        raise NotFoundError(f"{self.root.digest} has no {wanted} image (platforms: {choices})")


def build_closure(digest: Digest, load: Callable[[Digest], Manifest]) -> Closure:
    nodes: dict[Digest, Node] = {}
    blobs: dict[Digest, Descriptor] = {}

    def walk(manifest: Manifest, platform: Platform | None, parent: Digest | None) -> int:
        nodes.setdefault(manifest.digest, Node(manifest, platform, parent))
        total = manifest.size
        for child in manifest.children:
            child_manifest = load(child.digest)
            if child_manifest.size != child.size:
                raise DigestMismatchError(
                    child.digest, f"{manifest.digest} lists it with {child.size} bytes"
                )
            total += walk(child_manifest, child.platform, manifest.digest)
        own: dict[Digest, Descriptor] = {}
        for blob in manifest.blobs:
            own.setdefault(blob.digest, blob)
            blobs.setdefault(blob.digest, blob)
        # The replicator's count: own unique blobs, plus each child's total.
        return total + sum(b.size for b in own.values())

    root = load(digest)
    total = walk(root, None, None)
    return Closure(root, tuple(nodes.values()), tuple(blobs.values()), total)


# -- where tags and pushes come from -----------------------------------------------------


class EventLog(Protocol):
    """What the index answers; RecordLog answers the same from the bucket alone."""

    def repositories(self) -> list[str]: ...

    def tags(self, repository: str) -> list[TagState]: ...

    def tag(self, repository: str, tag: str) -> TagState | None: ...

    def history(self, repository: str, tag: str | None) -> list[ImageEvent]: ...

    def tag_at(self, repository: str, tag: str, at: datetime) -> ImageEvent | None: ...

    def images(self, repository: str) -> list[Digest]: ...

    def total_size(self, digest: Digest) -> int | None: ...

    def is_complete(self, digest: Digest) -> bool | None: ...

    def referrers(self, repository: str, subjects: set[Digest]) -> list[Digest]: ...


class IndexLog:
    def __init__(self, index: DynamoIndex) -> None:
        self.index = index

    def repositories(self) -> list[str]:
        return self.index.repositories()

    def tags(self, repository: str) -> list[TagState]:
        return self.index.tags(repository)

    def tag(self, repository: str, tag: str) -> TagState | None:
        return self.index.tag(repository, tag)

    def history(self, repository: str, tag: str | None) -> list[ImageEvent]:
        return self.index.history(repository, tag)

    def tag_at(self, repository: str, tag: str, at: datetime) -> ImageEvent | None:
        return self.index.tag_at(repository, tag, at)

    def images(self, repository: str) -> list[Digest]:
        return self.index.images(repository)

    def total_size(self, digest: Digest) -> int | None:
        record = self.index.manifest(digest)
        return record.total_size if record else None

    def is_complete(self, digest: Digest) -> bool | None:
        return self.index.manifest(digest) is not None

    def referrers(self, repository: str, subjects: set[Digest]) -> list[Digest]:
        # Referrers live in the repository of their subject (OCI referrers API): the index
        # knows them by subject across repositories, so keep the ones pushed here.
        pushed = set(self.index.images(repository))
        found = {
            record.digest
            for subject in subjects
            for record in self.index.referrers(subject)
            if record.digest in pushed
        }
        return sorted(found)


@dataclass
class _RepositoryRecords:
    """One repository's records replayed in name order (= time order) as the index would."""

    history: dict[tuple[str, str, str, str], ImageEvent] = field(default_factory=dict)
    tags: dict[str, ImageEvent] = field(default_factory=dict)
    images: set[Digest] = field(default_factory=set)

    def apply(self, event: ImageEvent) -> None:
        when = format_time(event.time)
        # The index keys history by tag, time, digest and action (its sort key's order): a
        # later record with the same key replaces the earlier one there too.
        key = (event.tag or _UNTAGGED, when, str(event.digest), str(event.action))
        self.history[key] = event
        if event.action is Action.PUSH:
            self.images.add(event.digest)
        if event.tag:
            current = self.tags.get(event.tag)
            # DynamoIndex moves a tag when the stored time <= the new one.
            if current is None or format_time(current.time) <= when:
                self.tags[event.tag] = event


def parse_record_name(name: str) -> tuple[str, str] | None:
    """(repository, action) from `<repository>/_events/<time>_<action>_<tag>_<hex>.json`."""
    repository, sep, rest = name.rpartition("/_events/")
    if not sep:
        return None
    parts = rest.split("_", 2)
    return (repository, parts[1]) if len(parts) == 3 else None


class RecordLog:
    """Answers from the push records in the bucket: what rebuild-index writes back."""

    def __init__(self, store: S3BlobStore, reader: BucketReader) -> None:
        self._store = store
        self._reader = reader
        self._repositories: dict[str, _RepositoryRecords] = {}
        self._lock = threading.Lock()
        self.invalid: list[str] = []

    def load(self, repository: str) -> _RepositoryRecords:
        with self._lock:
            loaded = self._repositories.get(repository)
        if loaded is not None:
            return loaded
        state = _RepositoryRecords()
        # Record names start with the event time: name order is the order the index applied.
        for _, event in sorted(self._events(repository), key=lambda item: item[0]):
            state.apply(event)
        with self._lock:
            self._repositories[repository] = state
        return state

    def _events(self, repository: str) -> Iterator[tuple[str, ImageEvent]]:
        names = list(self._store.iter_record_names(f"{repository}/_events/"))
        # One GET per record: read them in parallel, a repository may hold thousands.
        with ThreadPoolExecutor(16, thread_name_prefix="records") as pool:
            bodies = list(pool.map(self._store.read_record, names))
        for name, body in zip(names, bodies, strict=True):
            key = self._store.record_key(name)
            try:
                event = ImageEvent.from_json(body)
            except InvalidInputError as e:
                self.invalid.append(f"{key}: {e}")
                log.warning("skipping %s: %s", key, e)
                continue
            if name != event.record_name:
                # A record is named after its content; one that is not was not written by us.
                self.invalid.append(f"{key}: content is the record {event.record_name}")
                continue
            yield name, event

    def repositories(self) -> list[str]:
        found: set[str] = set()
        for name in self._store.iter_record_names():
            parsed = parse_record_name(name)
            if parsed and parsed[1] == Action.PUSH:
                found.add(parsed[0])
        return sorted(found)

    def tags(self, repository: str) -> list[TagState]:
        state = self.load(repository)
        return [_tag_state(e) for _, e in sorted(state.tags.items())]

    def tag(self, repository: str, tag: str) -> TagState | None:
        event = self.load(repository).tags.get(tag)
        return _tag_state(event) if event else None

    def history(self, repository: str, tag: str | None) -> list[ImageEvent]:
        wanted = tag or _UNTAGGED
        state = self.load(repository)
        return [e for key, e in sorted(state.history.items()) if key[0] == wanted]

    def tag_at(self, repository: str, tag: str, at: datetime) -> ImageEvent | None:
        limit = format_time(at)
        earlier = [
            e
            for key, e in sorted(self.load(repository).history.items())
            if key[0] == tag and key[1] <= limit
        ]
        return earlier[-1] if earlier else None

    def images(self, repository: str) -> list[Digest]:
        return sorted(self.load(repository).images, key=str)

    def total_size(self, digest: Digest) -> int | None:
        try:
            return self._reader.closure(digest).total_size
        except (NotFoundError, DigestMismatchError):
            return None

    def is_complete(self, digest: Digest) -> bool | None:
        return None  # a record is written after its backup completed; the bucket decides

    def referrers(self, repository: str, subjects: set[Digest]) -> list[Digest]:
        found: list[Digest] = []
        for digest in self.images(repository):
            try:
                subject = self._reader.manifest(digest).subject
            except EcrBackupError:
                continue  # verify reports unreadable manifests; a lookup should not fail on one
            if subject is not None and subject.digest in subjects:
                found.append(digest)
        return found


def _tag_state(event: ImageEvent) -> TagState:
    assert event.tag is not None
    return TagState(event.repository, event.tag, event.digest, event.time, event.action)


# -- the catalog -------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    """A reference resolved to a digest, with the event that made the tag point there."""

    repository: str
    digest: Digest
    tag: str | None = None
    pushed_at: datetime | None = None
    at: datetime | None = None

    def __str__(self) -> str:
        name = f"{self.repository}:{self.tag}" if self.tag else self.repository
        return f"{name}@{self.digest}"


@dataclass(frozen=True)
class TagRow:
    tag: str
    digest: Digest
    time: datetime
    removed: bool
    total_size: int | None

    def as_dict(self) -> dict[str, object]:
        return {
            "tag": self.tag,
            "digest": str(self.digest),
            "time": format_time(self.time),
            "state": "removed" if self.removed else "current",
            "total_size": self.total_size,
        }


@dataclass(frozen=True)
class ImageView:
    """What `show` prints: an image's closure and its referrers (signatures, SBOMs)."""

    resolved: Resolved
    closure: Closure
    referrers: tuple[Closure, ...]

    def as_dict(self) -> dict[str, object]:
        root = self.closure.root
        return {
            "repository": self.resolved.repository,
            "tag": self.resolved.tag,
            "digest": str(root.digest),
            "media_type": root.media_type,
            "at": format_time(self.resolved.at) if self.resolved.at else None,
            "pushed_at": format_time(self.resolved.pushed_at) if self.resolved.pushed_at else None,
            "size": root.size,
            "total_size": self.closure.total_size,
            "platforms": [str(p) for p in self.closure.platforms],
            "manifests": [
                {
                    "digest": str(n.manifest.digest),
                    "media_type": n.manifest.media_type,
                    "size": n.manifest.size,
                    "platform": str(n.platform) if n.platform else None,
                    "artifact_type": n.manifest.artifact_type,
                    "parent": str(n.parent) if n.parent else None,
                }
                for n in self.closure.nodes
            ],
            "blobs": [
                {
                    "digest": str(b.digest),
                    "media_type": b.media_type,
                    "size": b.size,
                    "foreign": b.is_foreign,
                }
                for b in self.closure.blobs
            ],
            "referrers": [
                {
                    "digest": str(r.root.digest),
                    "media_type": r.root.media_type,
                    "artifact_type": r.root.artifact_type,
                    "subject": str(r.root.subject.digest) if r.root.subject else None,
                    "size": r.root.size,
                    "total_size": r.total_size,
                }
                for r in self.referrers
            ],
        }


class Catalog:
    """Tag lookups from the index, or from the bucket's push records when the table is gone."""

    def __init__(
        self,
        store: S3BlobStore,
        index: DynamoIndex | None,
        *,
        reader: BucketReader | None = None,
    ) -> None:
        self.store = store
        self.reader = reader or BucketReader(store)
        self._index_name = index.table if index else None
        self._log: EventLog = IndexLog(index) if index else RecordLog(store, self.reader)

    @property
    def source(self) -> str:
        """'index' or 'bucket': where tag lookups are answered from."""
        return "index" if isinstance(self._log, IndexLog) else "bucket"

    @property
    def records(self) -> RecordLog | None:
        return self._log if isinstance(self._log, RecordLog) else None

    def _ask(self, question: Callable[[EventLog], T]) -> T:
        if isinstance(self._log, IndexLog):
            try:
                return question(self._log)
            except IndexMissingError:
                log.warning(
                    "index table %s not found: answering from the bucket's push records "
                    "(run `ecr-backup rebuild-index` to recreate it)",
                    self._index_name,
                )
                self._log = RecordLog(self.store, self.reader)
        return question(self._log)

    # -- questions -----------------------------------------------------------------

    def repositories(self) -> list[str]:
        return self._ask(lambda s: s.repositories())

    def images(self, repository: str) -> list[Digest]:
        return self._ask(lambda s: s.images(repository))

    def is_complete(self, digest: Digest) -> bool | None:
        return self._ask(lambda s: s.is_complete(digest))

    def total_size(self, digest: Digest) -> int | None:
        return self._ask(lambda s: s.total_size(digest))

    def tag_at(self, repository: str, tag: str, at: datetime) -> ImageEvent | None:
        return self._ask(lambda s: s.tag_at(repository, tag, at))

    def tag_rows(self, repository: str, at: datetime | None = None) -> list[TagRow]:
        """Each tag's state now (or at `at`), removed tags included, with its total size."""
        states = self._tags(repository, at)
        return [
            TagRow(
                s.tag,
                s.digest,
                s.time,
                s.action is Action.DELETE,
                self.total_size(s.digest),
            )
            for s in states
        ]

    def _tags(self, repository: str, at: datetime | None) -> list[TagState]:
        states = self._ask(lambda s: s.tags(repository))
        if not states:
            self._require_repository(repository)
        if at is None:
            return states
        found: list[TagState] = []
        for state in states:
            event = self.tag_at(repository, state.tag, at)
            if event is not None:
                found.append(_tag_state(event))
        return found

    def tags(self, repository: str, at: datetime | None = None) -> list[TagState]:
        return self._tags(repository, at)

    def history(
        self, repository: str, tag: str | None, at: datetime | None = None
    ) -> list[ImageEvent]:
        events = self._ask(lambda s: s.history(repository, tag))
        if at is not None:
            events = [e for e in events if e.time <= at]
        if not events:
            name = f"{repository}:{tag}" if tag else f"untagged images of {repository}"
            when = f" at {display_time(at)}" if at else ""
            raise NotFoundError(f"no backup of {name}{when}")
        return events

    def resolve(self, ref: ImageRef, at: datetime | None = None) -> Resolved:
        """The digest a reference names: a digest as it is, a tag now or at `at`."""
        if ref.digest is not None:
            return Resolved(ref.repository, ref.digest, ref.tag, None, at)
        if ref.tag is None:
            raise InvalidInputError(f"{ref.repository}: name a tag or a digest")
        name = f"{ref.repository}:{ref.tag}"
        if at is None:
            state = self._ask(lambda s: s.tag(ref.repository, ref.tag or ""))
            if state is None:
                self._require_repository(ref.repository)
                raise NotFoundError(f"no backup of {name}")
            if state.action is Action.DELETE:
                raise NotFoundError(
                    f"{name} was removed at {display_time(state.time)} (it pointed at "
                    f"{state.digest}): restore {ref.repository}@{state.digest}, or pass --at "
                    "a time before the removal"
                )
            return Resolved(ref.repository, state.digest, ref.tag, state.time, None)
        event = self._ask(lambda s: s.tag_at(ref.repository, ref.tag or "", at))
        if event is None:
            raise NotFoundError(f"no backup of {name} at {display_time(at)}")
        if event.action is Action.DELETE:
            raise NotFoundError(
                f"no backup of {name} at {display_time(at)}: it was removed at "
                f"{display_time(event.time)} (it pointed at {event.digest})"
            )
        return Resolved(ref.repository, event.digest, ref.tag, event.time, at)

    def _require_repository(self, repository: str) -> None:
        if repository not in self.repositories():
            raise NotFoundError(f"no backup of repository {repository}")

    def referrers(self, repository: str, closure: Closure) -> list[Closure]:
        """Signatures, SBOMs and attestations of any manifest of the closure, and theirs."""
        found: list[Closure] = []
        seen: set[Digest] = {n.manifest.digest for n in closure.nodes}
        frontier = set(seen)
        while frontier:
            digests = self._referrers_of(repository, frontier)
            frontier = set()
            for digest in digests:
                if digest in seen:
                    continue
                seen.add(digest)
                referrer = self.reader.closure(digest)
                found.append(referrer)
                frontier.update(n.manifest.digest for n in referrer.nodes)
        return found

    def _referrers_of(self, repository: str, subjects: set[Digest]) -> list[Digest]:
        return self._ask(lambda s: s.referrers(repository, subjects))

    def show(self, ref: ImageRef, at: datetime | None = None) -> ImageView:
        resolved = self.resolve(ref, at)
        closure = self.reader.closure(resolved.digest)
        return ImageView(resolved, closure, tuple(self.referrers(ref.repository, closure)))
