"""Retention subcommands: maintain, prune, stats, hold, release, holds."""

from __future__ import annotations

import argparse
from typing import Any

from ecr_backup.cli.common import (
    add_storage_options,
    emit,
    human_size,
    services_from,
    short,
    table,
)
from ecr_backup.maintenance.drill import DrillSummary
from ecr_backup.maintenance.holds import hold_row
from ecr_backup.maintenance.maintain import maintain
from ecr_backup.maintenance.stats import Stats, stats
from ecr_backup.model import rfc3339
from ecr_backup.oci.reference import ImageRef
from ecr_backup.status.runs import last_drill, record_maintain, record_prune
from ecr_backup.text import counted


def add_retention_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("retention rules (flags win over environment)")
    group.add_argument(
        "--keep-deleted-days",
        type=int,
        help="days an image is kept after its deletion or last tag (ECR_BACKUP_KEEP_DELETED_DAYS)",
    )
    group.add_argument(
        "--keep-per-tag", type=int, help="last digests kept per tag (ECR_BACKUP_KEEP_PER_TAG)"
    )
    group.add_argument(
        "--lock-days", type=int, help="the bucket's Object Lock period (ECR_BACKUP_LOCK_DAYS)"
    )


def register(commands: Any) -> None:
    keep = commands.add_parser(
        "maintain", help="extend the locks of every kept image; report locks found short"
    )
    add_storage_options(keep)
    add_retention_options(keep)
    keep.set_defaults(run=run_maintain)

    prune = commands.add_parser(
        "prune", help="mark, then delete, the objects no kept image needs (two runs)"
    )
    prune.add_argument("--dry-run", action="store_true", help="say what would go, change nothing")
    prune.add_argument(
        "--grace-hours",
        dest="prune_grace_hours",
        type=int,
        help="hours between marking and deleting (ECR_BACKUP_PRUNE_GRACE_HOURS, default 24)",
    )
    add_storage_options(prune)
    add_retention_options(prune)
    prune.set_defaults(run=run_prune)

    summary = commands.add_parser(
        "stats", help="logical and unique bytes, dedup ratio, locks, monthly cost estimate"
    )
    summary.add_argument(
        "--aws-backup", action="store_true", help="add the AWS Backup copy (both vaults) to cost"
    )
    add_storage_options(summary)
    add_retention_options(summary)
    summary.set_defaults(run=run_stats)

    for name, text, run in (
        ("hold", "put an image (and its referrers) on S3 legal hold", run_hold),
        ("release", "lift a hold placed with `hold`", run_release),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("image", metavar="REPOSITORY[:TAG|@DIGEST]")
        if name == "hold":
            command.add_argument("--reason", metavar="TEXT", help="why (shown by `holds`)")
        add_storage_options(command)
        command.set_defaults(run=run)

    listing = commands.add_parser(
        "holds", help="list the holds in force: image, objects, placed at, reason"
    )
    listing.add_argument("repository", nargs="?", metavar="REPOSITORY", help="only this one")
    add_storage_options(listing)
    listing.set_defaults(run=run_holds)


def run_maintain(args: argparse.Namespace) -> int:
    services = services_from(args)
    report = maintain(
        services.ledger,
        services.index,
        services.graph(),
        services.rules,
        services.keeper,
        surges=services.surges(),
    )
    record_maintain(services.run_log, report)
    summary = [
        f"{counted(report.images_kept, 'image')} kept, "
        f"{counted(report.objects_checked, 'object')} checked, "
        f"{counted(len(report.extended), 'lock')} extended",
    ]
    problems = [
        *(f"  short lock: {c.digest} ended {c.found or 'never (no lock)'}" for c in report.short),
        *(f"  missing from the bucket: {d}" for d in report.missing),
        *(f"  lock not checked: {d}: {why}" for d, why in report.failed.items()),
    ]
    emit(args, report, summary, summary=True, problems=problems)
    return 0 if report.ok else 1


def run_prune(args: argparse.Namespace) -> int:
    services = services_from(args)
    report = services.pruner().run(dry_run=args.dry_run)
    record_prune(services.run_log, report)
    rows = [
        [e.action, str(e.digest), human_size(e.size), e.reason]
        + ([f"locked until {rfc3339(e.lock_until)}"] if e.lock_until else [""])
        for e in report.entries
    ]
    verb = "would free" if args.dry_run else "freed"
    lines = table(rows, ["ACTION", "DIGEST", "SIZE", "WHY", "LOCK"]) if rows else []
    lines.append(f"{verb} {human_size(report.bytes_freed)} ({report.bytes_freed} bytes)")
    # Deleted images nothing else keeps: a surge nobody acknowledged holds them.
    lines += [f"held by surge {s}: {r}@{d}" for r, d, s in report.held_by_surge]
    emit(args, report, lines, summary=not args.dry_run)  # a dry run's plan is the answer
    return 0


def run_stats(args: argparse.Namespace) -> int:
    services = services_from(args)
    answer = stats(
        services.ledger,
        services.index,
        services.graph(),
        services.rules,
        services.clock(),
        surges=services.surges(),
        last_drill=last_drill(services.run_log),
        aws_backup=args.aws_backup,
    )
    cost = answer.monthly_cost
    rows = [
        [r.repository, str(r.images_kept), human_size(r.logical_bytes), human_size(r.unique_bytes)]
        for r in answer.repositories
    ]
    lines = [
        *table(rows, ["REPOSITORY", "KEPT", "LOGICAL", "UNIQUE"]),
        f"logical {human_size(answer.logical_bytes)}, unique {human_size(answer.unique_bytes)} "
        f"in {counted(answer.objects, 'object')}, dedup ratio {answer.dedup_ratio or '-'}",
        f"locked {human_size(answer.locked_bytes)}, unlocked {human_size(answer.unlocked_bytes)}"
        f", lock not recorded {human_size(answer.lock_unknown_bytes)}",
        f"estimated USD {cost['total']}/month (us-east-1 list prices read {cost['prices_read']})",
        _surges_line(answer),
        _drill_line(answer.last_drill),
    ]
    emit(args, answer, lines)
    return 0


def run_hold(args: argparse.Namespace) -> int:
    services = services_from(args)
    resolved = services.catalog().resolve(ImageRef.parse(args.image))
    result = services.holds().hold(
        resolved.repository, resolved.digest, services.clock(), args.reason
    )
    emit(args, result, [f"held {resolved}: {counted(result.objects, 'object')}"], summary=True)
    return 0


def run_release(args: argparse.Namespace) -> int:
    services = services_from(args)
    resolved = services.catalog().resolve(ImageRef.parse(args.image))
    result = services.holds().release(resolved.repository, resolved.digest, services.clock())
    lines = [
        f"released {resolved}: legal hold turned off on {counted(result.objects, 'object')}",
        *(f"  {d}" for d in result.changed),
    ]
    emit(args, result, lines, summary=True)
    return 0


def run_holds(args: argparse.Namespace) -> int:
    services = services_from(args)
    held = services.holds().in_force(args.repository)
    rows = [
        [
            f"{h.repository}@{short(args, h.digest)}",
            "?" if h.objects is None else str(h.objects),
            rfc3339(h.time),
            h.reason or "",
        ]
        for h in held
    ]
    lines = table(rows, ["IMAGE", "OBJECTS", "PLACED AT", "REASON"]) if rows else ["no holds"]
    emit(args, [hold_row(h) for h in held], lines)
    return 0


def _surges_line(answer: Stats) -> str:
    if answer.surges_holding:
        return (
            f"deletion surges: {answer.surges_holding} holding deleted images from prune "
            "(`ecr-backup surges`)"
        )
    return f"deletion surges: {answer.surges_recorded} recorded, none holding"


def _drill_line(drill: DrillSummary | None) -> str:
    if drill is None:
        return "last restore drill: none recorded (`ecr-backup drill`)"
    verdict = "ok" if drill.ok else counted(drill.problems, "PROBLEM")
    return (
        f"last restore drill: {rfc3339(drill.time)}, {verdict}: "
        f"{counted(drill.objects_verified, 'object')} verified, "
        f"{human_size(drill.bytes_read)} read"
    )
