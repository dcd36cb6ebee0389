"""`ecr-backup status`: the first minute of an incident in one report.

Problems (exit code 1) are what means images are not being backed up or kept: an alarm in
ALARM, a dead-letter queue holding messages, an image missing past the reconcile grace, or
a maintenance pass that found locks short or objects missing. Warnings are worth a look
but do not by themselves mean that: alarms without data, a queue backlog, a job that has
not run (recently). Findings are ordered: problems first, the oldest first.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol

from ecr_backup.model import ImageEvent, ManifestRecord
from ecr_backup.oci.digest import Digest
from ecr_backup.stack.aws import Stack
from ecr_backup.status.runs import (
    MaintainRun,
    MissingImage,
    PruneRun,
    ReconcileRun,
    RunLogPort,
    last_maintain,
    last_prune,
    last_reconciles,
)
from ecr_backup.text import counted

Severity = Literal["problem", "warning"]
READ_THREADS = 8  # repositories whose newest push is read at once


class StatusIndex(Protocol):
    def repositories(self) -> list[str]: ...

    def newest_push(self, repository: str) -> ImageEvent | None: ...

    def manifest(self, digest: Digest) -> ManifestRecord | None: ...

    def complete_manifests(self, digests: Iterable[Digest]) -> set[Digest]: ...


@dataclass(frozen=True)
class Location:
    bucket: str
    prefix: str
    table: str
    region: str


@dataclass(frozen=True)
class Finding:
    severity: Severity
    what: str  # one line
    since: datetime | None = None


@dataclass(frozen=True)
class NewestPush:
    event: ImageEvent
    backed_up_at: datetime | None  # when its manifest was recorded complete


@dataclass(frozen=True)
class StillMissing:
    image: MissingImage
    past_grace: bool


@dataclass(frozen=True)
class ReconcileSummary:
    """The repositories' last reconciles, and the images they found missing that the
    index still lacks now."""

    time: datetime  # the newest repository's run
    repositories: int
    images: int
    missing: list[StillMissing]
    missing_not_listed: int  # beyond what the run summaries keep
    drifted: int
    archived: int
    grace_minutes: int


@dataclass
class Status:
    time: datetime
    location: Location
    stack: Stack | None
    newest_push: NewestPush | None
    reconcile: ReconcileSummary | None
    maintain: MaintainRun | None
    prune: PruneRun | None
    lock_days: int
    findings: list[Finding] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not any(f.severity == "problem" for f in self.findings)

    @property
    def since(self) -> datetime | None:
        """When the oldest problem began, where that is known."""
        times = [f.since for f in self.findings if f.severity == "problem" and f.since]
        return min(times) if times else None


def gather(
    *,
    now: datetime,
    location: Location,
    index: StatusIndex,
    runs: RunLogPort,
    stack: Stack | None,
    lock_days: int,
) -> Status:
    status = Status(
        time=now,
        location=location,
        stack=stack,
        newest_push=newest_push(index),
        reconcile=summarize_reconciles(last_reconciles(runs), index, now),
        maintain=last_maintain(runs),
        prune=last_prune(runs),
        lock_days=lock_days,
    )
    status.findings = sorted(
        findings(status), key=lambda f: (f.severity != "problem", f.since is None, f.since)
    )
    return status


def newest_push(index: StatusIndex) -> NewestPush | None:
    with ThreadPoolExecutor(READ_THREADS) as pool:
        pushes = [p for p in pool.map(index.newest_push, index.repositories()) if p]
    if not pushes:
        return None
    event = max(pushes, key=lambda e: e.time)
    record = index.manifest(event.digest)
    return NewestPush(event, record.completed_at if record else None)


def summarize_reconciles(
    runs: list[ReconcileRun], index: StatusIndex, now: datetime
) -> ReconcileSummary | None:
    if not runs:
        return None
    # A repository no run reconciled for two intervals is no longer listed in ECR (with
    # several source accounts, gone repositories are not reconciled): its last summary
    # speaks for a repository that no longer exists.
    newest = max(run.time for run in runs)
    runs = [r for r in runs if r.time >= newest - timedelta(minutes=2 * r.grace_minutes)]
    listed = [m for run in runs for m in run.missing]
    backed_up = index.complete_manifests({m.digest for m in listed})
    grace = max(run.grace_minutes for run in runs)
    cutoff = now - timedelta(minutes=grace)
    missing = [
        StillMissing(m, past_grace=m.pushed_at < cutoff)
        for m in sorted(listed, key=lambda m: m.pushed_at)
        if m.digest not in backed_up
    ]
    return ReconcileSummary(
        time=newest,
        repositories=len(runs),
        images=sum(run.images for run in runs),
        missing=missing,
        missing_not_listed=sum(run.missing_count - len(run.missing) for run in runs),
        drifted=sum(run.drifted for run in runs),
        archived=sum(run.archived for run in runs),
        grace_minutes=grace,
    )


def findings(status: Status) -> list[Finding]:
    found: list[Finding] = []
    if status.stack is not None:
        found += _stack_findings(status.stack)
    found += _reconcile_findings(status.reconcile)
    found += _job_findings(status)
    return found


def _stack_findings(stack: Stack) -> list[Finding]:
    found = []
    if not stack.status.endswith("_COMPLETE") or "ROLLBACK" in stack.status:
        found.append(Finding("warning", f"stack {stack.name} is {stack.status}"))
    for alarm in stack.alarms:
        name = alarm.logical_id or alarm.name
        if alarm.state == "ALARM":
            found.append(Finding("problem", f"alarm {name} is ALARM: {alarm.reason}", alarm.since))
        elif alarm.state == "INSUFFICIENT_DATA":
            found.append(Finding("warning", f"alarm {name} has insufficient data", alarm.since))
    if not stack.alarms:
        found.append(Finding("warning", f"no alarm of stack {stack.name} found"))
    for queue in stack.queues:
        if queue.dead_letter and queue.visible:
            found.append(
                Finding(
                    "problem",
                    f"dead-letter queue {queue.logical_id} holds "
                    f"{counted(queue.visible, 'message')}",
                )
            )
    return found


def _reconcile_findings(reconcile: ReconcileSummary | None) -> list[Finding]:
    if reconcile is None:
        return [Finding("warning", "no reconcile run recorded in the index")]
    late = [m for m in reconcile.missing if m.past_grace]
    if not late:
        return []
    first = late[0].image
    return [
        Finding(
            "problem",
            f"{counted(len(late), 'image')} missing from the backup for over "
            f"{reconcile.grace_minutes} "
            f"minutes (the oldest {first.repository}@{first.digest})",
            first.pushed_at + timedelta(minutes=reconcile.grace_minutes),  # a problem since
        )
    ]


def _job_findings(status: Status) -> list[Finding]:
    found = []
    maintain = status.maintain
    if maintain is None:
        found.append(Finding("warning", "no maintenance pass recorded in the index"))
    else:
        if maintain.short or maintain.missing:
            found.append(
                Finding(
                    "problem",
                    f"the last maintenance pass found {counted(maintain.short, 'lock')} short and "
                    f"{counted(maintain.missing, 'object')} missing",
                    maintain.time,
                )
            )
        if maintain.not_checked:
            found.append(
                Finding(
                    "warning",
                    "the last maintenance pass could not check "
                    f"{counted(maintain.not_checked, 'lock')}",
                    maintain.time,
                )
            )
        # Locks are extended to a full period once they come within half of it: a pass
        # missed for that long lets kept objects' locks lapse.
        if status.time - maintain.time > timedelta(days=status.lock_days / 2):
            found.append(
                Finding(
                    "warning",
                    f"no maintenance pass for over {status.lock_days / 2:g} days (half the "
                    "lock period): kept objects' locks may lapse",
                    maintain.time,
                )
            )
    if status.prune is None:
        found.append(Finding("warning", "no prune run recorded in the index"))
    return found
