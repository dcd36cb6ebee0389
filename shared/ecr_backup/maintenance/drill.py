"""Restore drills: prove, on a schedule, that kept images read back whole.

A backup nobody has read back is a hope. Each drill:
1. samples `sample` kept images, weighted towards recent ones (a new image is the likeliest
   to be needed, and the one whose copy is the least proven), and reads the whole closure
   of each (manifests, configs, layers, referrers) as a restore would;
2. scrubs one slice of every kept object: the objects whose digest falls in today's slice
   of `scrub_days` slices (the first 8 hex digits modulo `scrub_days`, the day counted from
   the Unix epoch). Daily drills thus read every kept object at least once per
   `scrub_days` days, so rot or tampering is found within a known time; a day whose drill
   did not succeed is alarmed (template.yaml, DrillMissingAlarm).
Every object is streamed from the bucket and checked against its digest and recorded size:
the current version, as S3 serves it, not an older intact one restore would fall back to,
since a rewritten current version is exactly what the drill exists to find.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from ecr_backup.catalog.surges import SurgeBook
from ecr_backup.errors import BlobNotFoundError, EcrBackupError
from ecr_backup.maintenance.graph import ObjectGraph
from ecr_backup.maintenance.retention import HistorySource, ImageVerdict, RetentionRules, judge
from ecr_backup.maintenance.verify import Problem
from ecr_backup.model import RestoreCheck
from ecr_backup.oci.digest import Digest
from ecr_backup.settings import DEFAULT_CONCURRENCY
from ecr_backup.storage.ledger import Hold, ObjectState

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Half of a sampled image's weight is lost every this many days since it was stored.
RECENCY_HALF_LIFE_DAYS = 7.0


# Restores one image somewhere it can be read back (composition: a scratch ECR repository).
RestoreProbe = Callable[[str, Digest], RestoreCheck]


class DrillLedger(Protocol):
    def holds(self) -> list[Hold]: ...

    def objects(self) -> dict[Digest, ObjectState]: ...


class ObjectReader(Protocol):
    def hash_version(self, digest: Digest, version_id: str | None) -> tuple[Digest, int]: ...

    def where(self, digest: Digest) -> str: ...


@dataclass(frozen=True, slots=True)
class SampledImage:
    repository: str
    digest: Digest
    objects: int
    bytes: int


@dataclass(frozen=True, slots=True)
class DrillSummary:
    """What `status` and `stats` show of the last drill (kept in the index's run log)."""

    time: datetime
    ok: bool
    images_sampled: int
    objects_verified: int
    bytes_read: int
    problems: int


@dataclass
class DrillReport:
    time: datetime
    scrub_days: int
    scrub_slice: int
    images_kept: int = 0
    sampled: list[SampledImage] = field(default_factory=list)
    scrubbed_objects: int = 0  # the kept objects in today's slice
    objects_verified: int = 0
    bytes_read: int = 0
    problems: list[Problem] = field(default_factory=list)
    restore: RestoreCheck | None = None  # DrillRestore: one sampled image pushed and read back

    @property
    def ok(self) -> bool:
        return not self.problems and (self.restore is None or self.restore.ok)

    def summary(self) -> DrillSummary:
        return DrillSummary(
            self.time,
            self.ok,
            len(self.sampled),
            self.objects_verified,
            self.bytes_read,
            len(self.problems) + (self.restore is not None and not self.restore.ok),
        )


def scrub_slice(now: datetime, scrub_days: int) -> int:
    """Today's slice: the day since the epoch, modulo the days of a whole pass."""
    return (now.astimezone(UTC) - EPOCH).days % scrub_days


def in_slice(digest: Digest, slice_number: int, scrub_days: int) -> bool:
    return int(digest.hex[:8], 16) % scrub_days == slice_number


def weigh(stored_at: datetime, now: datetime) -> float:
    age_days = max((now - stored_at).total_seconds(), 0.0) / 86400
    return math.pow(0.5, age_days / RECENCY_HALF_LIFE_DAYS)


def choose(
    candidates: list[tuple[ImageVerdict, datetime]],
    sample: int,
    now: datetime,
    rng: random.Random,
) -> list[ImageVerdict]:
    """`sample` distinct images, each draw weighted by recency (weighted, no replacement)."""
    pool = list(candidates)
    chosen: list[ImageVerdict] = []
    while pool and len(chosen) < sample:
        weights = [weigh(stored, now) for _, stored in pool]
        (pick,) = rng.choices(range(len(pool)), weights=weights)
        chosen.append(pool.pop(pick)[0])
    return chosen


@dataclass
class Drill:
    reader: ObjectReader
    graph: ObjectGraph
    concurrency: int = DEFAULT_CONCURRENCY
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(
        self,
        verdicts: list[ImageVerdict],
        objects: dict[Digest, ObjectState],
        *,
        now: datetime,
        sample: int,
        scrub_days: int,
        rng: random.Random | None = None,
    ) -> DrillReport:
        """Read the sampled images' closures and today's scrub slice; report every problem."""
        slice_number = scrub_slice(now, scrub_days)
        report = DrillReport(now, scrub_days, slice_number)
        kept = [v for v in verdicts if v.kept]
        report.images_kept = len(kept)
        candidates = [(v, objects[v.digest].stored_at) for v in kept if v.digest in objects]
        to_read: dict[Digest, int] = {}
        for image in choose(candidates, sample, now, rng or random.Random()):
            # Foreign layers are in a closure but not in the bucket: only held objects count.
            reach = self.graph.reach([image.digest], referrers=True)
            closure = sorted(reach & objects.keys(), key=str)
            size = sum(objects[d].size for d in closure)
            report.sampled.append(SampledImage(image.repository, image.digest, len(closure), size))
            to_read.update((d, objects[d].size) for d in closure)
        reach = self.graph.reach([v.digest for v in kept], referrers=True) & objects.keys()
        scrub = [d for d in reach if in_slice(d, slice_number, scrub_days)]
        report.scrubbed_objects = len(scrub)
        to_read.update((d, objects[d].size) for d in scrub)
        self._read_all(sorted(to_read.items(), key=lambda item: str(item[0])), report)
        report.problems.sort(key=lambda p: (p.subject, p.kind))
        return report

    def _read_all(self, work: list[tuple[Digest, int]], report: DrillReport) -> None:
        def read_one(item: tuple[Digest, int]) -> None:
            digest, size = item
            self._read(digest, size, report)

        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="drill") as pool:
            list(pool.map(read_one, work))

    def _read(self, digest: Digest, size: int, report: DrillReport) -> None:
        where = self.reader.where(digest)
        problem: Problem | None = None
        read = 0
        try:
            actual, read = self.reader.hash_version(digest, None)
        except BlobNotFoundError:
            problem = Problem("missing", str(digest), f"not in the bucket ({where})")
        except EcrBackupError as e:
            problem = Problem("unreadable", str(digest), f"cannot read {where}: {e.one_line()}")
        else:
            if actual != digest:
                problem = Problem("hash", str(digest), f"{where} hashes to {actual}")
            elif read != size:
                detail = f"{where} holds {read} bytes, expected {size}"
                problem = Problem("size", str(digest), detail)
        with self._lock:
            report.bytes_read += read
            if problem is None:
                report.objects_verified += 1
            else:
                report.problems.append(problem)


def drill(
    ledger: DrillLedger,
    index: HistorySource,
    graph: ObjectGraph,
    reader: ObjectReader,
    rules: RetentionRules,
    *,
    surges: SurgeBook,
    now: datetime,
    sample: int,
    scrub_days: int,
    concurrency: int = DEFAULT_CONCURRENCY,
    rng: random.Random | None = None,
    restore: RestoreProbe | None = None,
) -> DrillReport:
    """One drill over the images retention keeps today (the command and the function);
    with `restore`, the first sampled image is also restored and read back."""
    verdicts = judge(index, ledger.holds(), rules, now, surges=surges)
    report = Drill(reader, graph, concurrency).run(
        verdicts, ledger.objects(), now=now, sample=sample, scrub_days=scrub_days, rng=rng
    )
    if restore is not None and report.sampled:
        first = report.sampled[0]
        report.restore = restore(first.repository, first.digest)
    return report
