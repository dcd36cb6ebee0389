"""What each scheduled job's run leaves in the index (storage.runs) for `status` to read.

The maintenance pass, prune and reconcile (their Lambda handlers and their commands) call
`record_*` after a run; `status` reads the summaries back with `last_*`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from ecr_backup.coverage.reconcile import RepositoryDrift, Source
from ecr_backup.errors import DataError
from ecr_backup.maintenance.drill import DrillReport, DrillSummary
from ecr_backup.maintenance.maintain import MaintainReport
from ecr_backup.maintenance.prune import PruneReport
from ecr_backup.model import parse_time, rfc3339
from ecr_backup.oci.digest import Digest
from ecr_backup.storage.runs import RunRecord

MAINTAIN, PRUNE, RECONCILE, DRILL = "maintain", "prune", "reconcile", "drill"
LAST = "last"
# Missing images kept per repository in a reconcile summary: enough to name them in an
# incident, and well inside DynamoDB's 400 KB item limit (about 100 bytes each).
MISSING_KEPT = 100

T = TypeVar("T")


class RunLogPort(Protocol):
    def record(self, job: str, key: str, time: datetime, summary: Mapping[str, object]) -> None: ...

    def runs(self, job: str) -> list[RunRecord]: ...


@dataclass(frozen=True)
class MaintainRun:
    time: datetime
    ok: bool
    images_kept: int
    objects_checked: int
    extended: int
    short: int
    missing: int
    not_checked: int


@dataclass(frozen=True)
class PruneRun:
    time: datetime
    marked: int
    deleted: int
    locked: int
    in_use: int
    bytes_freed: int
    images_pruned: int


@dataclass(frozen=True)
class MissingImage:
    repository: str
    digest: Digest
    pushed_at: datetime


@dataclass(frozen=True)
class ReconcileRun:
    """One repository's last reconcile. `grace_minutes` is the interval between runs: an
    image pushed longer ago than that and still missing was missed by the previous run too
    (the ImagesStillMissing metric counts the same)."""

    time: datetime
    account: str
    region: str
    repository: str
    images: int
    missing: tuple[MissingImage, ...]
    missing_count: int  # all of them, `missing` holds the MISSING_KEPT oldest
    drifted: int
    archived: int
    grace_minutes: int
    # For `ecr-backup coverage`; None in summaries written before they were recorded.
    backed_up: int | None = None  # images the index held complete
    archived_missing: int | None = None  # archived in ECR, not backed up (cannot be)
    pruned: int = 0  # removed by retention, still in ECR


def record_maintain(log: RunLogPort, report: MaintainReport) -> None:
    log.record(
        MAINTAIN,
        LAST,
        report.time,
        {
            "ok": report.ok,
            "images_kept": report.images_kept,
            "objects_checked": report.objects_checked,
            "extended": len(report.extended),
            "short": len(report.short),
            "missing": len(report.missing),
            "not_checked": len(report.failed),
        },
    )


def record_prune(log: RunLogPort, report: PruneReport) -> None:
    """A real run only: a dry run changed nothing and is not the last prune."""
    if report.dry_run:
        return
    log.record(
        PRUNE,
        LAST,
        report.time,
        {
            "marked": len(report.of("mark")),
            "deleted": len(report.of("delete")) + len(report.of("finished")),
            "locked": len(report.of("locked")),
            "in_use": len(report.of("in-use")),
            "bytes_freed": report.bytes_freed,
            "images_pruned": len(report.images_pruned),
        },
    )


def record_reconcile(
    log: RunLogPort, drift: RepositoryDrift, source: Source, time: datetime, grace_minutes: int
) -> None:
    # The oldest first: the ones kept are the ones a grace period is about.
    oldest = sorted(drift.missing, key=lambda m: m.image.pushed_at)
    missing = [
        {"digest": str(m.image.digest), "pushed_at": rfc3339(m.image.pushed_at)}
        for m in oldest[:MISSING_KEPT]
    ]
    not_held = len(drift.missing) + len(drift.archived_missing) + len(drift.pruned)
    log.record(
        RECONCILE,
        f"{source.account}/{source.region}/{drift.repository}",
        time,
        {
            "images": drift.images,
            "missing": missing,
            "missing_count": len(drift.missing),
            "drifted": len(drift.drifted),
            "archived": len(drift.archived_missing) + len(drift.archived_held),
            "grace_minutes": grace_minutes,
            "backed_up": drift.images - not_held,
            "archived_missing": len(drift.archived_missing),
            "pruned": len(drift.pruned),
        },
    )


def record_drill(log: RunLogPort, report: DrillReport) -> None:
    summary = asdict(report.summary())
    log.record(DRILL, LAST, summary.pop("time"), summary)


def last_drill(log: RunLogPort) -> DrillSummary | None:
    record = _last(log, DRILL)
    return None if record is None else _build(DrillSummary, record, record.summary)


def last_maintain(log: RunLogPort) -> MaintainRun | None:
    record = _last(log, MAINTAIN)
    return None if record is None else _build(MaintainRun, record, record.summary)


def last_prune(log: RunLogPort) -> PruneRun | None:
    record = _last(log, PRUNE)
    return None if record is None else _build(PruneRun, record, record.summary)


def last_reconciles(log: RunLogPort) -> list[ReconcileRun]:
    """Each repository's last reconcile."""
    runs = []
    for record in log.runs(RECONCILE):
        account, region, repository = record.key.split("/", 2)
        summary = dict(record.summary)
        try:
            missing = tuple(
                MissingImage(repository, Digest.parse(m["digest"]), parse_time(m["pushed_at"]))
                for m in summary.pop("missing")
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"unreadable reconcile run record {record.key!r}: {e}") from e
        fields = {**summary, "account": account, "region": region, "repository": repository}
        runs.append(_build(ReconcileRun, record, {**fields, "missing": missing}))
    return runs


def _last(log: RunLogPort, job: str) -> RunRecord | None:
    records = log.runs(job)
    return records[0] if records else None


def _build(kind: Callable[..., T], record: RunRecord, fields: Mapping[str, Any]) -> T:
    try:
        return kind(time=record.time, **fields)
    except TypeError as e:  # a field missing or unknown: written by another version
        raise DataError(f"unreadable {record.job} run record {record.key!r}: {e}") from e


def as_dict(run: MaintainRun | PruneRun) -> dict[str, object]:
    return {**asdict(run), "time": rfc3339(run.time)}
