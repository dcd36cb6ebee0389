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

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from ecr_backup.errors import (
    DigestMismatchError,
    EcrBackupError,
    NotFoundError,
)
from ecr_backup.model import UNTAGGED, Action, ImageEvent, ManifestRecord, TagState, format_time
from ecr_backup.oci.digest import Digest
from ecr_backup.storage.pushrecords import (
    EVENTS_DIR,
    RecordSource,
    parse_record_name,
    read_push_records,
)
from ecr_backup.storage.reader import BucketReader

log = logging.getLogger(__name__)


T = TypeVar("T")


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


class IndexReads(Protocol):
    """What IndexLog asks of the index (storage.index.DynamoIndex in production)."""

    @property
    def table(self) -> str: ...

    def repositories(self) -> list[str]: ...

    def tags(self, repository: str) -> list[TagState]: ...

    def tag(self, repository: str, tag: str) -> TagState | None: ...

    def history(self, repository: str, tag: str | None) -> list[ImageEvent]: ...

    def tag_at(self, repository: str, tag: str, at: datetime) -> ImageEvent | None: ...

    def images(self, repository: str) -> list[Digest]: ...

    def manifest(self, digest: Digest) -> ManifestRecord | None: ...

    def referrers(self, subject: Digest) -> list[ManifestRecord]: ...


class RecordStore(RecordSource, Protocol):
    """Where RecordLog finds the push records (storage.blobstore.S3BlobStore in production)."""

    def iter_record_names(self, under: str = "") -> Iterator[str]: ...


class IndexLog:
    def __init__(self, index: IndexReads) -> None:
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
        key = (event.tag or UNTAGGED, when, str(event.digest), str(event.action))
        self.history[key] = event
        if event.action is Action.PUSH:
            self.images.add(event.digest)
        if event.tag:
            current = self.tags.get(event.tag)
            # DynamoIndex moves a tag when the stored time <= the new one.
            if current is None or format_time(current.time) <= when:
                self.tags[event.tag] = event


class RecordLog:
    """Answers from the push records in the bucket: what rebuild-index writes back."""

    def __init__(self, store: RecordStore, reader: BucketReader) -> None:
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
        names = list(self._store.iter_record_names(f"{repository}{EVENTS_DIR}"))
        # A repository may hold thousands of records: read them in parallel.
        records = read_push_records(self._store, names, workers=16)
        for problem in records.invalid:
            log.warning("skipping %s", problem)
        state = _RepositoryRecords()
        for _, event in records.events:  # name order = the order the index applied them
            state.apply(event)
        with self._lock:
            self.invalid.extend(records.invalid)
            self._repositories[repository] = state
        return state

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
        wanted = tag or UNTAGGED
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
