"""`ecr-backup stats`: what the backup holds, how well it deduplicates, what it costs.

Logical bytes are what the kept images would take stored one by one (each image's
distinct objects: manifests, configs, layers); unique bytes are what the bucket holds once
(every object the index knows, kept or not yet pruned). The dedup ratio compares the
kept images' logical bytes with the unique bytes of their objects.

Prices are public list prices for us-east-1, read from the pages below on 2026-11-28;
other regions differ and prices change: the estimate is a guide, not a bill.
- S3 Standard storage, https://aws.amazon.com/s3/pricing/ : USD 0.023 per GB-month for the
  first 50 TB, 0.022 for the next 450 TB, 0.021 above 500 TB.
- AWS Backup for Amazon S3 (warm storage), https://aws.amazon.com/backup/pricing/ :
  USD 0.05 per GB-month; with the stack's AWS Backup copy the bucket is held twice (the
  local vault and the locked copy vault).
A GB here is 2^30 bytes. Requests, noncurrent versions awaiting expiry, the index table and
data transfer are not counted.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from ecr_backup.catalog.surges import SurgeBook
from ecr_backup.maintenance.drill import DrillSummary
from ecr_backup.maintenance.graph import ObjectGraph
from ecr_backup.maintenance.ports import ObjectLedger
from ecr_backup.maintenance.retention import HistorySource, RetentionRules, judge
from ecr_backup.oci.digest import Digest
from ecr_backup.storage.ledger import ObjectState

GB = 1024**3
TB = 1024 * GB
S3_STANDARD_TIERS = ((50 * TB, 0.023), (450 * TB, 0.022), (None, 0.021))  # USD per GB-month
AWS_BACKUP_S3_WARM = 0.05  # USD per GB-month, per vault holding a copy
AWS_BACKUP_VAULTS = 2  # the local vault and the (locked) copy vault
PRICE_SOURCES = ("https://aws.amazon.com/s3/pricing/", "https://aws.amazon.com/backup/pricing/")
PRICES_READ = "2026-11-28"


@dataclass
class RepositoryStats:
    repository: str
    images_kept: int = 0
    logical_bytes: int = 0
    unique_bytes: int = 0


@dataclass
class Stats:
    time: datetime
    objects: int = 0
    unique_bytes: int = 0
    kept_unique_bytes: int = 0
    logical_bytes: int = 0
    locked_bytes: int = 0
    unlocked_bytes: int = 0
    lock_unknown_bytes: int = 0
    aws_backup: bool = False
    repositories: list[RepositoryStats] = field(default_factory=list)
    surges_recorded: int = 0
    surges_holding: int = 0  # unacknowledged: their deleted images are kept
    last_drill: DrillSummary | None = None

    @property
    def dedup_ratio(self) -> float | None:
        if not self.kept_unique_bytes:
            return None
        return round(self.logical_bytes / self.kept_unique_bytes, 3)

    @property
    def monthly_cost(self) -> dict[str, object]:
        s3 = s3_standard_monthly(self.unique_bytes)
        backup = (
            round(self.unique_bytes / GB * AWS_BACKUP_S3_WARM * AWS_BACKUP_VAULTS, 2)
            if self.aws_backup
            else None
        )
        return {
            "currency": "USD",
            "region": "us-east-1",
            "s3_standard": s3,
            "aws_backup": backup,
            "total": round(s3 + (backup or 0.0), 2),
            "prices_read": PRICES_READ,
            "sources": list(PRICE_SOURCES),
        }


def s3_standard_monthly(size: int) -> float:
    """USD per month for `size` bytes in S3 Standard, tier by tier."""
    cost, left = 0.0, size
    for tier, price in S3_STANDARD_TIERS:
        part = left if tier is None else min(left, tier)
        cost += part / GB * price
        left -= part
    return round(cost, 2)


def stats(
    ledger: ObjectLedger,
    index: HistorySource,
    graph: ObjectGraph,
    rules: RetentionRules,
    now: datetime,
    *,
    surges: SurgeBook,
    last_drill: DrillSummary | None = None,
    aws_backup: bool = False,
) -> Stats:
    objects = ledger.objects()
    answer = Stats(now, objects=len(objects), aws_backup=aws_backup, last_drill=last_drill)
    answer.surges_recorded = len(surges.surges)
    answer.surges_holding = len(surges.unacknowledged()) + len(surges.unreadable)
    for state in objects.values():
        answer.unique_bytes += state.size
        _count_lock(answer, state, now)
    per_repo: dict[str, RepositoryStats] = {}
    held_by_repo: dict[str, set[Digest]] = defaultdict(set)
    for verdict in judge(index, ledger.holds(), rules, now, surges=surges):
        repo = per_repo.setdefault(verdict.repository, RepositoryStats(verdict.repository))
        if not verdict.kept:
            continue
        closure = graph.closure(verdict.digest) & objects.keys()
        repo.images_kept += 1
        repo.logical_bytes += sum(objects[d].size for d in closure)
        held_by_repo[verdict.repository] |= closure
    kept: set[Digest] = set()
    for name, repo in per_repo.items():
        repo.unique_bytes = sum(objects[d].size for d in held_by_repo[name])
        answer.logical_bytes += repo.logical_bytes
        kept |= held_by_repo[name]
    answer.kept_unique_bytes = sum(objects[d].size for d in kept)
    answer.repositories = sorted(per_repo.values(), key=lambda r: r.repository)
    return answer


def _count_lock(answer: Stats, state: ObjectState, now: datetime) -> None:
    if state.lock_until is None:
        answer.lock_unknown_bytes += state.size
    elif state.lock_until > now:
        answer.locked_bytes += state.size
    else:
        answer.unlocked_bytes += state.size
