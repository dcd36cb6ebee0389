"""`ecr-backup coverage`: per source registry (account and region), how much of what ECR
holds the backup holds, and how long the oldest missing image has waited.

Built from what the reconcile already leaves in the index (each repository's last run
summary, status.runs) and from the index itself: an image a run found missing that has
been backed up since counts as backed up. With `live`, ECR is listed now instead of
read from the summaries (the same comparison the reconcile makes, reading only). A
registry whose events arrived (storage.sources) but that no reconcile has covered is
listed too, with nothing known about it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from ecr_backup.coverage.reconcile import RepositoryDrift, Source
from ecr_backup.oci.digest import Digest
from ecr_backup.status.runs import MISSING_KEPT, MissingImage, ReconcileRun


class CoverageIndex(Protocol):
    def complete_manifests(self, digests: Iterable[Digest]) -> set[Digest]: ...


@dataclass(frozen=True)
class RepositoryCount:
    """One repository as a reconcile (stored or live) saw it."""

    source: Source
    repository: str
    time: datetime
    images: int
    backed_up: int
    missing: tuple[MissingImage, ...]  # the oldest, at most MISSING_KEPT
    missing_count: int
    archived_missing: int
    pruned: int

    @classmethod
    def from_run(cls, run: ReconcileRun) -> RepositoryCount:
        # Summaries written before `backed_up` was recorded: everything not missing,
        # archived or pruned was held.
        archived = run.archived if run.archived_missing is None else run.archived_missing
        backed_up = run.backed_up
        if backed_up is None:
            backed_up = max(run.images - run.missing_count - archived - run.pruned, 0)
        return cls(
            Source(run.account, run.region),
            run.repository,
            run.time,
            run.images,
            backed_up,
            run.missing,
            run.missing_count,
            archived,
            run.pruned,
        )

    @classmethod
    def from_drift(cls, source: Source, drift: RepositoryDrift, time: datetime) -> RepositoryCount:
        oldest = sorted(drift.missing, key=lambda m: m.image.pushed_at)[:MISSING_KEPT]
        not_held = len(drift.missing) + len(drift.archived_missing) + len(drift.pruned)
        return cls(
            source,
            drift.repository,
            time,
            drift.images,
            drift.images - not_held,
            tuple(
                MissingImage(drift.repository, m.image.digest, m.image.pushed_at) for m in oldest
            ),
            len(drift.missing),
            len(drift.archived_missing),
            len(drift.pruned),
        )


@dataclass(frozen=True)
class Missing:
    image: MissingImage
    past_grace: bool


@dataclass
class RegistryCoverage:
    source: Source
    repositories: int = 0
    images: int = 0
    backed_up: int = 0
    missing: int = 0
    archived_missing: int = 0
    pruned: int = 0
    missing_images: list[Missing] = field(default_factory=list)  # the oldest, known ones
    missing_not_listed: int = 0
    last_reconcile: datetime | None = None  # None: never reconciled

    @property
    def oldest_missing(self) -> datetime | None:
        return self.missing_images[0].image.pushed_at if self.missing_images else None

    @property
    def past_grace(self) -> int:
        return sum(1 for m in self.missing_images if m.past_grace)


@dataclass
class Coverage:
    time: datetime
    grace: timedelta
    live: bool
    registries: list[RegistryCoverage]

    @property
    def past_grace(self) -> int:
        return sum(r.past_grace for r in self.registries)

    @property
    def covered(self) -> bool:
        """No image has been missing from the backup for longer than the grace period."""
        return self.past_grace == 0

    def total(self) -> RegistryCoverage:
        every = RegistryCoverage(Source("*", "*"))
        for r in self.registries:
            every.repositories += r.repositories
            every.images += r.images
            every.backed_up += r.backed_up
            every.missing += r.missing
            every.archived_missing += r.archived_missing
            every.pruned += r.pruned
            every.missing_images += r.missing_images
            every.missing_not_listed += r.missing_not_listed
        every.missing_images.sort(key=lambda m: m.image.pushed_at)
        times = [r.last_reconcile for r in self.registries if r.last_reconcile]
        every.last_reconcile = max(times) if times else None
        return every


def current(runs: Sequence[ReconcileRun]) -> list[ReconcileRun]:
    """Each registry's runs, without repositories gone from ECR: a repository no run
    reconciled for two intervals after its registry's newest run is no longer listed."""
    newest: dict[tuple[str, str], datetime] = {}
    for run in runs:
        key = (run.account, run.region)
        newest[key] = max(newest.get(key, run.time), run.time)
    return [
        r
        for r in runs
        if r.time >= newest[(r.account, r.region)] - timedelta(minutes=2 * r.grace_minutes)
    ]


def gather(
    *,
    now: datetime,
    grace: timedelta,
    counts: Iterable[RepositoryCount],
    index: CoverageIndex,
    seen: Iterable[Source] = (),
    only: Sequence[Source] = (),
    live: bool = False,
) -> Coverage:
    """`only`: these registries (all known ones when empty)."""
    by_source: dict[Source, list[RepositoryCount]] = defaultdict(list)
    for count in counts:
        by_source[count.source].append(count)
    for source in seen:
        by_source.setdefault(source, [])
    if only:
        by_source = defaultdict(list, {s: by_source.get(s, []) for s in only})
    listed = [m for repositories in by_source.values() for c in repositories for m in c.missing]
    held_now = index.complete_manifests({m.digest for m in listed}) if listed else set()
    cutoff = now - grace
    registries = []
    for source in sorted(by_source, key=lambda s: (s.account, s.region)):
        registry = RegistryCoverage(source)
        for count in by_source[source]:
            since = [m for m in count.missing if m.digest in held_now]
            registry.repositories += 1
            registry.images += count.images
            registry.backed_up += count.backed_up + len(since)
            registry.missing += count.missing_count - len(since)
            registry.archived_missing += count.archived_missing
            registry.pruned += count.pruned
            registry.missing_not_listed += count.missing_count - len(count.missing)
            registry.missing_images += [
                Missing(m, past_grace=m.pushed_at < cutoff)
                for m in count.missing
                if m.digest not in held_now
            ]
            if registry.last_reconcile is None or count.time > registry.last_reconcile:
                registry.last_reconcile = count.time
        registry.missing_images.sort(key=lambda m: m.image.pushed_at)
        registries.append(registry)
    return Coverage(now, grace, live, registries)
