"""Planning a restore from the bucket alone: every manifest read and verified, every blob found."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from ecr_backup.catalog.catalog import Catalog, Resolved
from ecr_backup.errors import (
    BlobNotFoundError,
    InvalidInputError,
    NotFoundError,
)
from ecr_backup.model import Action, TagState, rfc3339
from ecr_backup.oci.closure import Closure
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Descriptor, Manifest
from ecr_backup.oci.reference import ImageRef
from ecr_backup.restore.target import Target
from ecr_backup.settings import DEFAULT_CONCURRENCY

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


# -- planning -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreRequest:
    source: ImageRef  # REPOSITORY[:TAG|@DIGEST]; the repository alone with all_tags
    at: datetime | None = None
    all_tags: bool = False
    with_referrers: bool = False


@dataclass(frozen=True)
class RestoreRoot:
    resolved: Resolved
    closure: Closure
    target_tag: str | None


@dataclass
class RestorePlan:
    target: Target
    roots: list[RestoreRoot]
    referrers: list[Closure]
    manifests: list[Manifest]  # push order: children before parents, each once
    blobs: list[Descriptor]  # each once, all in the bucket
    foreign: list[Descriptor]  # foreign layers the bucket does not hold: not pushed
    removed_tags: list[TagState] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(b.size for b in self.blobs)


def _resolve(
    catalog: Catalog, request: RestoreRequest, target: Target
) -> tuple[list[Resolved], list[TagState]]:
    """The digests to restore, and (--all-tags) the tags skipped because they were removed."""
    ref = request.source
    if not request.all_tags:
        return [catalog.resolve(ref, request.at)], []
    if ref.tag or ref.digest:
        raise InvalidInputError("--all-tags takes a REPOSITORY, without a tag or digest")
    if target.tag:
        raise InvalidInputError(
            "--all-tags keeps every tag's name: give --to HOST/REPOSITORY without a tag"
        )
    states = catalog.tags(ref.repository, request.at)
    removed = [s for s in states if s.action is Action.DELETE]
    live = [s for s in states if s.action is Action.PUSH]
    if not live:
        when = f" at {rfc3339(request.at)}" if request.at else ""
        hint = f" ({len(removed)} removed: pass --at a time before that)" if removed else ""
        raise NotFoundError(f"no tags of {ref.repository}{when}{hint}")
    return [Resolved(ref.repository, s.digest, s.tag, s.time, request.at) for s in live], removed


def plan_restore(
    catalog: Catalog,
    request: RestoreRequest,
    target: Target,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> RestorePlan:
    """Everything the restore will push, read and checked from the bucket before any push."""
    resolved, removed = _resolve(catalog, request, target)
    tagged = [
        (item, item.tag if request.all_tags else (target.tag or item.tag)) for item in resolved
    ]
    return plan_images(
        catalog,
        request.source.repository,
        tagged,
        target,
        with_referrers=request.with_referrers,
        concurrency=concurrency,
        removed=removed,
    )


def plan_images(
    catalog: Catalog,
    repository: str,
    images: list[tuple[Resolved, str | None]],
    target: Target,
    *,
    with_referrers: bool,
    concurrency: int = DEFAULT_CONCURRENCY,
    removed: list[TagState] | None = None,
) -> RestorePlan:
    """The plan for images already resolved, each with the tag it gets in the target."""
    reader = catalog.reader
    roots = [RestoreRoot(item, reader.closure(item.digest), tag) for item, tag in images]

    referrers: list[Closure] = []
    if with_referrers:
        seen: set[Digest] = set()
        for root in roots:
            for referrer in catalog.referrers(repository, root.closure):
                if referrer.digest not in seen:
                    seen.add(referrer.digest)
                    referrers.append(referrer)

    manifests: dict[Digest, Manifest] = {}
    blobs: dict[Digest, Descriptor] = {}
    for closure in [r.closure for r in roots] + referrers:
        for manifest in closure.push_order():
            manifests.setdefault(manifest.digest, manifest)
        for blob in closure.blobs:
            blobs.setdefault(blob.digest, blob)

    def present(blob: Descriptor) -> bool:
        try:
            reader.locate(blob.digest, size=blob.size)
        except BlobNotFoundError:
            if blob.is_foreign:
                return False  # foreign layers come from their URLs, not the registry
            raise
        return True

    # Every blob found (and, when written over, its intact version chosen) before any push.
    with ThreadPoolExecutor(concurrency, thread_name_prefix="plan") as pool:
        found = list(pool.map(present, blobs.values()))
    return RestorePlan(
        target=target,
        roots=roots,
        referrers=referrers,
        manifests=list(manifests.values()),
        blobs=[b for b, ok in zip(blobs.values(), found, strict=True) if ok],
        foreign=[b for b, ok in zip(blobs.values(), found, strict=True) if not ok],
        removed_tags=removed or [],
    )
