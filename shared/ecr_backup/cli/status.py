"""`ecr-backup status`: is the backup healthy, and since when not, in one screen.

Read in the order an on-call engineer needs it: the verdict and what is wrong, the stack's
alarms and queues, the newest backup, the images missing, the last maintenance pass and
prune, and the bucket, table and region every other command would use.
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime
from typing import Any

from ecr_backup.awssession import open_session
from ecr_backup.cli.common import add_storage_options, emit, human_size, short, table
from ecr_backup.composition import AwsServices, stack_reader
from ecr_backup.errors import ConfigurationError, ExitCode
from ecr_backup.model import rfc3339
from ecr_backup.settings import ENV_PREFIX, Settings
from ecr_backup.stack.aws import Stack
from ecr_backup.status.runs import as_dict
from ecr_backup.status.service import Location, Status, gather
from ecr_backup.text import counted

STACK_ENV = f"{ENV_PREFIX}STACK"


def register(commands: Any) -> None:
    status = commands.add_parser(
        "status",
        help="is the backup healthy, and since when not: alarms, queues, last runs",
        description="One screen for the first minute of an incident. Exit code 0: healthy; "
        "1: an alarm in ALARM, a dead-letter queue not empty, an image missing past the "
        "reconcile grace, or locks found short; 3: the stack or backup cannot be read.",
    )
    status.add_argument(
        "--stack",
        help=f"the deployed stack ({STACK_ENV}); without it only the bucket and index are read",
    )
    add_storage_options(status)
    status.set_defaults(run=run_status)


def run_status(args: argparse.Namespace) -> int:
    session = open_session(args.profile, args.region)
    name = args.stack or os.environ.get(STACK_ENV) or None
    stack = stack_reader(session).read(name) if name else None
    settings = _settings(args, stack)
    services = AwsServices(settings, session)
    index = services.index
    location = Location(settings.bucket, settings.prefix, index.table, str(session.region_name))
    status = gather(
        now=services.clock(),
        location=location,
        index=index,
        runs=services.run_log,
        stack=stack,
        lock_days=settings.lock_days,
    )
    emit(args, document(status), lines(args, status))
    return ExitCode.OK if status.healthy else ExitCode.PROBLEMS


def _settings(args: argparse.Namespace, stack: Stack | None) -> Settings:
    """Flags, then the stack's outputs and parameters, then ECR_BACKUP_* variables."""
    outputs = stack.outputs if stack else {}
    parameters = stack.parameters if stack else {}
    lock_days = parameters.get("ObjectLockDays")
    return Settings.load(
        os.environ,
        bucket=args.bucket or outputs.get("BucketName") or _required("bucket"),
        table=args.table or outputs.get("TableName") or _required("table"),
        prefix=args.prefix if args.prefix is not None else parameters.get("BucketPrefix"),
        lock_days=int(lock_days) if lock_days else None,
    )


def _required(name: str) -> str:
    value = os.environ.get(f"{ENV_PREFIX}{name.upper()}")
    if not value:
        raise ConfigurationError(
            f"status needs the {name}: name the stack (--stack or {STACK_ENV}) or the "
            f"{name} (--{name} or {ENV_PREFIX}{name.upper()})",
            code="NoBackupNamed",
        )
    return value


def document(status: Status) -> dict[str, object]:
    stack = status.stack
    push = status.newest_push
    reconcile = status.reconcile
    return {
        "healthy": status.healthy,
        "time": rfc3339(status.time),
        "since": rfc3339(status.since) if status.since else None,
        "findings": [
            {
                "severity": f.severity,
                "what": f.what,
                "since": rfc3339(f.since) if f.since else None,
            }
            for f in status.findings
        ],
        "stack": None
        if stack is None
        else {
            "name": stack.name,
            "status": stack.status,
            "alarms": [
                {
                    "name": a.name,
                    "logical_id": a.logical_id,
                    "state": a.state,
                    "since": rfc3339(a.since) if a.since else None,
                    "reason": a.reason,
                }
                for a in stack.alarms
            ],
            "queues": [
                {
                    "logical_id": q.logical_id,
                    "url": q.url,
                    "dead_letter": q.dead_letter,
                    "visible": q.visible,
                    "in_flight": q.in_flight,
                }
                for q in stack.queues
            ],
        },
        "newest_push": None
        if push is None
        else {
            "repository": push.event.repository,
            "tag": push.event.tag,
            "digest": str(push.event.digest),
            "pushed_at": rfc3339(push.event.time),
            "backed_up_at": rfc3339(push.backed_up_at) if push.backed_up_at else None,
        },
        "reconcile": None
        if reconcile is None
        else {
            "time": rfc3339(reconcile.time),
            "repositories": reconcile.repositories,
            "images": reconcile.images,
            "missing": [
                {
                    "repository": m.image.repository,
                    "digest": str(m.image.digest),
                    "pushed_at": rfc3339(m.image.pushed_at),
                    "past_grace": m.past_grace,
                }
                for m in reconcile.missing
            ],
            "missing_not_listed": reconcile.missing_not_listed,
            "drifted": reconcile.drifted,
            "archived": reconcile.archived,
            "grace_minutes": reconcile.grace_minutes,
        },
        "maintain": as_dict(status.maintain) if status.maintain else None,
        "prune": as_dict(status.prune) if status.prune else None,
        "location": {
            "bucket": status.location.bucket,
            "prefix": status.location.prefix,
            "table": status.location.table,
            "region": status.location.region,
        },
    }


_UNITS = ((86400, "d"), (3600, "h"), (60, "m"), (1, "s"))
_STATE_ORDER = {"ALARM": 0, "INSUFFICIENT_DATA": 1, "OK": 2}


def _ago(now: datetime, then: datetime) -> str:
    """'2d 3h ago': the two largest units, enough to read at a glance."""
    seconds = int((now - then).total_seconds())
    if seconds <= 0:
        return "just now"
    parts: list[str] = []
    for size, unit in _UNITS:
        if seconds >= size and len(parts) < 2:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
        elif parts:
            break
    return " ".join(parts) + " ago"


def _n(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


def _at(now: datetime, then: datetime | None) -> str:
    return f"{rfc3339(then)} ({_ago(now, then)})" if then else "-"


def lines(args: argparse.Namespace, status: Status) -> list[str]:
    now = status.time
    problems = [f for f in status.findings if f.severity == "problem"]
    if problems:
        since = f" since {_at(now, status.since)}" if status.since else ""
        out = [f"UNHEALTHY{since}: {counted(len(problems), 'problem')}"]
    else:
        out = ["HEALTHY"]
    out += [f"  {f.severity}: {f.what}" for f in status.findings]
    out.append("")
    stack = status.stack
    if stack is None:
        out.append(f"no stack read (--stack or {STACK_ENV}): alarms and queues not checked")
    else:
        out.append(f"stack {stack.name} ({stack.region}): {stack.status}")
        alarms = sorted(stack.alarms, key=lambda a: (_STATE_ORDER[a.state], a.logical_id or a.name))
        rows = [[a.state, _at(now, a.since), a.logical_id or a.name] for a in alarms]
        out += [f"  {line}" for line in table(rows, ["ALARM STATE", "SINCE", "ALARM"])]
        rows = [
            [q.logical_id, "yes" if q.dead_letter else "", str(q.visible), str(q.in_flight)]
            for q in stack.queues
        ]
        out += [f"  {line}" for line in table(rows, ["QUEUE", "DLQ", "WAITING", "IN FLIGHT"])]
    out.append("")
    push = status.newest_push
    if push is None:
        out.append("newest push backed up: none recorded")
    else:
        event = push.event
        name = f"{event.repository}:{event.tag}" if event.tag else event.repository
        out.append(
            f"newest push backed up: {name}@{short(args, event.digest)} pushed "
            f"{_at(now, event.time)}, durable {_at(now, push.backed_up_at)}"
        )
    reconcile = status.reconcile
    if reconcile is None:
        out.append("last reconcile: none recorded")
    else:
        hidden = reconcile.missing_not_listed
        more = f" (+{hidden} not listed)" if hidden else ""
        out.append(
            f"last reconcile: {_at(now, reconcile.time)}, "
            f"{_n(reconcile.repositories, 'repository', 'repositories')}, "
            f"{_n(reconcile.images, 'image')}: {len(reconcile.missing)} still missing{more}, "
            f"{_n(reconcile.drifted, 'tag')} drifted, {reconcile.archived} archived"
        )
        out += [
            f"  missing: {m.image.repository}@{short(args, m.image.digest)} pushed "
            f"{_at(now, m.image.pushed_at)}{'  PAST GRACE' if m.past_grace else ''}"
            for m in reconcile.missing
        ]
    maintain = status.maintain
    if maintain is None:
        out.append("last maintain: none recorded")
    else:
        out.append(
            f"last maintain: {_at(now, maintain.time)}, {'ok' if maintain.ok else 'NOT OK'}: "
            f"{_n(maintain.images_kept, 'image')} kept, "
            f"{_n(maintain.objects_checked, 'object')} checked"
        )
        out.append(
            f"  locks: {maintain.extended} extended, {maintain.short} short, "
            f"{maintain.missing} objects missing, {maintain.not_checked} not checked "
            f"(lock period {status.lock_days} days)"
        )
    prune = status.prune
    if prune is None:
        out.append("last prune: none recorded")
    else:
        out.append(
            f"last prune: {_at(now, prune.time)}: {prune.marked} marked, {prune.deleted} "
            f"deleted, {prune.locked} locked, {human_size(prune.bytes_freed)} freed"
        )
    where = status.location
    out.append("")
    out.append(
        f"backup: s3://{where.bucket}/{where.prefix}, table {where.table}, region {where.region}"
    )
    return out
