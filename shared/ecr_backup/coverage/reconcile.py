"""Compare what ECR holds with what the index records, one repository at a time.

Reading only: ECR's control plane (DescribeImages) and the index (one BatchGetItem per 100
images, one Query per repository). What to do about the differences is decided here,
as events; `ecr_backup.coverage.backfill` copies, enqueues and records them.

- an image ECR lists whose manifest the index lacks is *missing* (archived ones cannot be
  pulled: they are reported, not copied), unless retention pruned it from the backup and
  nothing about it changed since (no new tag): that one is reported as *pruned*, not copied
  again only to be pruned once more;
- a tag with no recorded push, or whose recorded state is older than ECR's push time, gets
  the push ECR reports, at ECR's `imagePushedAt` (a replay writes the same history row);
- a tag ECR shows elsewhere than the index, when ECR's push time cannot explain it, and a
  tag or image ECR no longer has, are recorded as *observed* now: ECR does not say when a
  tag moved or an image went. Nothing is ever deleted from the backup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from ecr_backup.model import Action, ImageEvent, RepositoryState
from ecr_backup.oci.digest import Digest
from ecr_backup.registry.ecr_listing import EcrImage
from ecr_backup.settings import DYNAMO_BATCH_GET_LIMIT

# event_id of what reconcile records: a push read from DescribeImages, or a change it saw.
PUSH_FROM_ECR = "reconcile:ecr-describe-images"
OBSERVED = "reconcile:observed"


class EcrCatalog(Protocol):
    def repositories(self, prefixes: Sequence[str] = ()) -> Iterator[str]: ...

    def images(self, repository: str) -> list[EcrImage] | None: ...


class ReconcileIndex(Protocol):
    def repositories(self) -> list[str]: ...

    def complete_manifests(self, digests: Iterable[Digest]) -> set[Digest]: ...

    def repository_state(self, repository: str) -> RepositoryState: ...


@dataclass(frozen=True)
class MissingImage:
    """An image to copy; `events` are recorded once it is complete (manifest last).
    `message` is the one event that names it on the replicate queue (--enqueue): the
    replicate function records that one; the next run records any other tag."""

    image: EcrImage
    events: tuple[ImageEvent, ...]
    message: ImageEvent


@dataclass
class RepositoryDrift:
    repository: str
    images: int = 0  # images ECR lists
    missing: list[MissingImage] = field(default_factory=list)
    archived_missing: list[EcrImage] = field(default_factory=list)
    archived_held: list[EcrImage] = field(default_factory=list)
    # Removed by retention (prune) while ECR still lists them, with nothing new about them:
    # copying them again would only feed the next prune.
    pruned: list[EcrImage] = field(default_factory=list)
    pushes: list[ImageEvent] = field(default_factory=list)  # unrecorded, at imagePushedAt
    drifted: list[ImageEvent] = field(default_factory=list)  # tags moved or removed
    gone: list[ImageEvent] = field(default_factory=list)  # images (and their tags) deleted

    @property
    def has_drift(self) -> bool:
        return bool(
            self.missing or self.archived_missing or self.pushes or self.drifted or self.gone
        )

    @property
    def to_record(self) -> list[ImageEvent]:
        """Events to record now: those of images the backup holds. A missing image's
        events wait for its copy (manifest last)."""
        waiting = {m.image.digest for m in self.missing}
        events = [*self.pushes, *self.drifted, *self.gone]
        return [e for e in events if e.action is Action.DELETE or e.digest not in waiting]


@dataclass(frozen=True)
class Source:
    """Whose registry is being reconciled: stamped on every recorded event."""

    account: str
    region: str


class Reconciler:
    def __init__(
        self,
        ecr: EcrCatalog,
        index: ReconcileIndex,
        source: Source,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._ecr = ecr
        self._index = index
        self._source = source
        self._clock = clock

    def repositories(self, prefixes: Sequence[str] = (), *, include_held: bool) -> list[str]:
        """ECR's repositories; with `include_held`, also those the index holds that ECR no
        longer has (their images are then observed gone). Only for a single source: the
        index does not say which account a repository name came from."""
        names = set(self._ecr.repositories(prefixes))
        if include_held:
            names |= {r for r in self._index.repositories() if r.startswith(tuple(prefixes) or "")}
        return sorted(names)

    def repository(self, repository: str) -> RepositoryDrift:
        images = self._ecr.images(repository) or []
        complete = self._index.complete_manifests(i.digest for i in images) if images else set()
        return self._drift(repository, images, complete)

    def many(self, repositories: Iterable[str]) -> Iterator[RepositoryDrift]:
        """repository() for each, with the completeness lookups of small repositories
        shared: BatchGetItem calls carry 100 digests whatever the repositories' sizes."""
        waiting: list[tuple[str, list[EcrImage]]] = []
        unasked: list[Digest] = []
        complete: set[Digest] = set()
        for name in repositories:
            images = self._ecr.images(name) or []
            waiting.append((name, images))
            unasked.extend(i.digest for i in images)
            if len(unasked) >= DYNAMO_BATCH_GET_LIMIT:
                asked = len(unasked) // DYNAMO_BATCH_GET_LIMIT * DYNAMO_BATCH_GET_LIMIT
                complete |= self._index.complete_manifests(unasked[:asked])
                unasked = unasked[asked:]
                # The digests not asked yet are the last repositories' (in order): keep
                # those repositories waiting, settle the others.
                kept: list[tuple[str, list[EcrImage]]] = []
                left = len(unasked)
                while left > 0:
                    kept.insert(0, waiting.pop())
                    left -= len(kept[0][1])
                yield from (self._drift(n, i, complete) for n, i in waiting)
                waiting = kept
        complete |= self._index.complete_manifests(unasked) if unasked else set()
        yield from (self._drift(n, i, complete) for n, i in waiting)

    def _drift(
        self, repository: str, images: list[EcrImage], complete: set[Digest]
    ) -> RepositoryDrift:
        state = self._index.repository_state(repository)
        return _compare(repository, images, complete, state, _Events(self._source, self._clock()))


@dataclass(frozen=True)
class _Events:
    source: Source
    now: datetime

    def push(self, image: EcrImage, tag: str | None, *, observed: bool = False) -> ImageEvent:
        return ImageEvent(
            repository=image.repository,
            digest=image.digest,
            action=Action.PUSH,
            time=self.now if observed else image.pushed_at,
            tag=tag,
            media_type=image.media_type,
            source_account=self.source.account,
            source_region=self.source.region,
            event_id=OBSERVED if observed else PUSH_FROM_ECR,
        )

    def deletion(self, repository: str, digest: Digest, tag: str | None) -> ImageEvent:
        return ImageEvent(
            repository=repository,
            digest=digest,
            action=Action.DELETE,
            time=self.now,
            tag=tag,
            source_account=self.source.account,
            source_region=self.source.region,
            event_id=OBSERVED,
        )


def _compare(
    repository: str,
    images: list[EcrImage],
    complete: set[Digest],
    index: RepositoryState,
    events: _Events,
) -> RepositoryDrift:
    """`complete`: digests whose manifest the index holds complete (others' may be there)."""
    drift = RepositoryDrift(repository, images=len(images))
    for image in images:
        held = image.digest in complete
        if not image.pullable:
            (drift.archived_held if held else drift.archived_missing).append(image)
            if not held:
                continue
        pushes, observed = _image_events(image, index, events)
        if not held and image.digest in index.pruned and not (pushes or observed):
            drift.pruned.append(image)  # a new tag on it would be a new reason to copy
            continue
        drift.pushes.extend(pushes)
        drift.drifted.extend(observed)
        if not held:
            found = (*pushes, *observed)
            message = found[0] if found else events.push(image, None)
            drift.missing.append(MissingImage(image, found, message))
    _find_gone(drift, images, index, events)
    return drift


def _image_events(
    image: EcrImage, index: RepositoryState, events: _Events
) -> tuple[list[ImageEvent], list[ImageEvent]]:
    """(pushes at ECR's push time, changes observed now) that bring the index up to ECR."""
    pushes: list[ImageEvent] = []
    observed: list[ImageEvent] = []
    for tag in image.tags:
        current = index.tags.get(tag)
        if current and current.action is Action.PUSH and current.digest == image.digest:
            continue
        if current is None or current.time <= image.pushed_at:
            pushes.append(events.push(image, tag))  # a push whose event never arrived
        else:
            observed.append(events.push(image, tag, observed=True))  # moved since
    if not image.tags:
        if image.digest not in index.images:
            pushes.append(events.push(image, None))
        elif index.images[image.digest]:  # recorded deleted, yet ECR has it again
            observed.append(events.push(image, None, observed=True))
    return pushes, observed


def _find_gone(
    drift: RepositoryDrift, images: list[EcrImage], index: RepositoryState, events: _Events
) -> None:
    in_ecr = {i.digest for i in images}
    tagged_in_ecr = {t for i in images for t in i.tags}
    for digest, gone in sorted(index.images.items()):
        if not gone and digest not in in_ecr:
            drift.gone.append(events.deletion(drift.repository, digest, None))
    for tag, state in sorted(index.tags.items()):
        if state.action is Action.PUSH and tag not in tagged_in_ecr:
            removal = events.deletion(drift.repository, state.digest, tag)
            (drift.drifted if state.digest in in_ecr else drift.gone).append(removal)
