"""What a lookup answers: references resolved to digests, tag rows and image views."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from ecr_backup.catalog.eventlog import (
    EventLog,
    IndexLog,
    IndexReads,
    RecordLog,
    RecordStore,
    T,
    _tag_state,
)
from ecr_backup.errors import (
    IndexMissingError,
    InvalidInputError,
    NotFoundError,
)
from ecr_backup.model import Action, ImageEvent, TagState, rfc3339
from ecr_backup.oci.closure import Closure
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.reference import ImageRef
from ecr_backup.storage.blobstore import ObjectVersion
from ecr_backup.storage.reader import BucketReader, VersionedObjects

# -- the catalog -------------------------------------------------------------------------

log = logging.getLogger(__name__)


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
    repository: str
    tag: str
    digest: Digest
    time: datetime
    removed: bool
    total_size: int | None

    @property
    def state(self) -> Literal["current", "removed"]:
        return "removed" if self.removed else "current"


@dataclass(frozen=True)
class ImageView:
    """What `show` prints: an image's closure and its referrers (signatures, SBOMs)."""

    resolved: Resolved
    closure: Closure
    referrers: tuple[Closure, ...]


class CatalogStore(VersionedObjects, RecordStore, Protocol):
    """What the catalog, and verify through it, read in the bucket (storage.blobstore.
    S3BlobStore in production)."""

    def iter_blob_versions(self) -> Iterator[tuple[str, ObjectVersion]]: ...


class Catalog:
    """Tag lookups from the index, or from the bucket's push records when the table is gone."""

    def __init__(
        self,
        store: CatalogStore,
        index: IndexReads | None,
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
                repository,
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
            when = f" at {rfc3339(at)}" if at else ""
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
                    f"{name} was removed at {rfc3339(state.time)} (it pointed at "
                    f"{state.digest}): restore {ref.repository}@{state.digest}, or pass --at "
                    "a time before the removal"
                )
            return Resolved(ref.repository, state.digest, ref.tag, state.time, None)
        event = self._ask(lambda s: s.tag_at(ref.repository, ref.tag or "", at))
        if event is None:
            raise NotFoundError(f"no backup of {name} at {rfc3339(at)}")
        if event.action is Action.DELETE:
            raise NotFoundError(
                f"no backup of {name} at {rfc3339(at)}: it was removed at "
                f"{rfc3339(event.time)} (it pointed at {event.digest})"
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

    def direct_referrers(self, repository: str, subject: Digest) -> list[Digest]:
        """The manifests pushed to `repository` whose subject is `subject` (not theirs)."""
        return self._referrers_of(repository, {subject})

    def show(self, ref: ImageRef, at: datetime | None = None) -> ImageView:
        resolved = self.resolve(ref, at)
        closure = self.reader.closure(resolved.digest)
        return ImageView(resolved, closure, tuple(self.referrers(ref.repository, closure)))
