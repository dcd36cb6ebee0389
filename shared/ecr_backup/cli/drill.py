"""`ecr-backup drill`: read back a sample of kept images and today's scrub slice, now."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from ecr_backup.cli.common import add_storage_options, emit, human_size, services_from
from ecr_backup.cli.maintenance import add_retention_options
from ecr_backup.maintenance.drill import DrillReport
from ecr_backup.settings import DEFAULT_DRILL_SAMPLE, DEFAULT_SCRUB_DAYS
from ecr_backup.status.runs import record_drill
from ecr_backup.text import counted


def register(commands: Any) -> None:
    command = commands.add_parser(
        "drill",
        help="prove kept images read back whole: a sample, plus today's scrub slice",
        description="Read the whole closure of a sample of kept images (weighted towards "
        "recent ones) and today's slice of every kept object from the bucket, checking each "
        "object's sha256 and size. Run daily (the stack's drill function does), every kept "
        "object is read once per --scrub-days. Exit 1 when an object is missing, rewritten "
        "or unreadable.",
    )
    command.add_argument(
        "--sample",
        dest="drill_sample",
        type=int,
        metavar="N",
        help=f"kept images read whole (ECR_BACKUP_DRILL_SAMPLE, default {DEFAULT_DRILL_SAMPLE})",
    )
    command.add_argument(
        "--restore",
        dest="drill_restore",
        action="store_true",
        default=None,
        help="also restore one sampled image into a scratch ECR repository, read it back "
        "by digest, and delete the repository (ECR_BACKUP_DRILL_RESTORE)",
    )
    command.add_argument(
        "--restore-registry",
        dest="drill_registry",
        metavar="URL",
        help="the registry of the scratch repository (ECR_BACKUP_DRILL_REGISTRY; default: "
        "this account's ECR in its region)",
    )
    command.add_argument(
        "--scrub-days",
        type=int,
        metavar="DAYS",
        help="days in which daily drills read every kept object "
        f"(ECR_BACKUP_SCRUB_DAYS, default {DEFAULT_SCRUB_DAYS})",
    )
    add_storage_options(command)
    add_retention_options(command)
    command.set_defaults(run=run_drill)


def document(report: DrillReport) -> dict[str, object]:
    return {
        "ok": report.ok,
        "time": report.time,
        "images_kept": report.images_kept,
        "sampled": [
            {
                "repository": s.repository,
                "digest": str(s.digest),
                "objects": s.objects,
                "bytes": s.bytes,
            }
            for s in report.sampled
        ],
        "scrub_slice": report.scrub_slice,
        "scrub_days": report.scrub_days,
        "scrubbed_objects": report.scrubbed_objects,
        "objects_verified": report.objects_verified,
        "bytes_read": report.bytes_read,
        "problems": [
            {"kind": p.kind, "subject": p.subject, "detail": p.detail} for p in report.problems
        ],
        "restore": None if report.restore is None else asdict(report.restore),
    }


def run_drill(args: argparse.Namespace) -> int:
    services = services_from(args)
    report = services.run_drill()
    record_drill(services.run_log, report)
    lines = [
        f"{len(report.sampled)} of {counted(report.images_kept, 'kept image')} read whole; "
        f"scrub slice {report.scrub_slice} of {report.scrub_days}: "
        f"{counted(report.scrubbed_objects, 'object')}",
        *(
            f"  {s.repository}@{s.digest}: {counted(s.objects, 'object')}, {human_size(s.bytes)}"
            for s in report.sampled
        ),
        f"{counted(report.objects_verified, 'object')} verified, "
        f"{human_size(report.bytes_read)} read",
        *(f"  {p.kind}: {p}" for p in report.problems),
    ]
    if report.restore is not None:
        check = report.restore
        verdict = "ok" if check.ok else "FAILED"
        lines.append(
            f"restore into {check.scratch} (deleted since): {verdict}, {check.detail}, "
            f"{check.seconds:.1f} s"
        )
    if report.problems:
        lines.append(f"{counted(len(report.problems), 'problem')}: run `ecr-backup verify --deep`")
    emit(args, document(report), lines)
    return 0 if report.ok else 1
