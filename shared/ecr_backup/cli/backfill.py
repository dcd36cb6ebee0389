"""`ecr-backup backfill`: back up what ECR holds and the index lacks, record what moved."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from ecr_backup.cli.common import add_source_options, add_storage_options, emit, services_from
from ecr_backup.cli.options import progress_for
from ecr_backup.composition import AwsServices
from ecr_backup.coverage.backfill import BackfillReport
from ecr_backup.coverage.reconcile import OBSERVED, RepositoryDrift, Source
from ecr_backup.coverage.service import Coverage
from ecr_backup.errors import ExitCode, InvalidInputError
from ecr_backup.model import ImageEvent, rfc3339
from ecr_backup.registry.ecr_listing import EcrImage
from ecr_backup.settings import DEFAULT_IMAGE_CONCURRENCY
from ecr_backup.text import counted

_ACCOUNT = re.compile(r"[0-9]{12}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]")
_ROLE = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/.+")


def register(commands: Any) -> None:
    backfill = commands.add_parser(
        "backfill",
        help="back up every ECR image the backup lacks; record moved tags and deleted images",
        description="Lists the source registry with DescribeRepositories and DescribeImages "
        "and compares it with the index. Images already backed up are not fetched. Exit "
        "status with --dry-run: 0 no drift, 1 drift found.",
    )
    backfill.add_argument(
        "--repository-prefix",
        action="append",
        default=[],
        metavar="PREFIX",
        help="only repositories starting with PREFIX (repeatable)",
    )
    backfill.add_argument(
        "--dry-run", action="store_true", help="report the drift; copy and record nothing"
    )
    backfill.add_argument(
        "--enqueue",
        metavar="QUEUE_URL",
        help="send missing images to this replicate queue as ECR events instead of copying",
    )
    add_source_account_options(backfill)
    backfill.add_argument(
        "--image-concurrency",
        type=int,
        default=DEFAULT_IMAGE_CONCURRENCY,
        help="images copied at once",
    )
    add_storage_options(backfill)
    add_source_options(backfill)
    backfill.set_defaults(run=run_backfill)


def add_source_account_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source-account", help="the account whose ECR to read (default: ours)")
    parser.add_argument("--source-region", help="its region (default: the session's)")
    parser.add_argument(
        "--role-arn",
        help="role to describe the source account's ECR with (default, for another account: "
        "its ecr-backup-source-read role from templates/source-account.yaml)",
    )


def resolve_source(
    services: AwsServices, account: str | None, region: str | None, role_arn: str | None
) -> tuple[Source, str | None]:
    """The source registry and the role to list it with (None: this session's own)."""
    if account is not None and not _ACCOUNT.fullmatch(account):
        raise InvalidInputError(f"--source-account {account!r}: not a 12-digit account id")
    if region is not None and not _REGION.fullmatch(region):
        raise InvalidInputError(f"--source-region {region!r}: not a region name")
    if role_arn is not None and not _ROLE.fullmatch(role_arn):
        raise InvalidInputError(f"--role-arn {role_arn!r}: not an IAM role ARN")
    return Coverage(services).source(account, region, role_arn)


def run_backfill(args: argparse.Namespace) -> int:
    if args.image_concurrency < 1:
        raise InvalidInputError("--image-concurrency must be at least 1")
    services = services_from(args)
    source, role_arn = resolve_source(
        services, args.source_account, args.source_region, args.role_arn
    )
    report = Coverage(services).backfill(
        source,
        role_arn,
        args.repository_prefix,
        dry_run=args.dry_run,
        enqueue_url=args.enqueue,
        image_concurrency=args.image_concurrency,
        progress=progress_for(args),
    )
    document = as_document(report, dry_run=args.dry_run)
    # The drift a dry run finds is the answer; a real run's lines report what it did.
    emit(args, document, describe(report, dry_run=args.dry_run), summary=not args.dry_run)
    for failure in report.failed:
        print(f"ecr-backup: error: {failure.error.one_line()}", file=sys.stderr)
    if report.failed:
        return max(int(f.error.exit_code) for f in report.failed)
    return int(ExitCode.PROBLEMS if args.dry_run and report.has_drift else ExitCode.OK)


# --- output -------------------------------------------------------------------------


def _image(image: EcrImage) -> dict[str, object]:
    return {
        "repository": image.repository,
        "digest": str(image.digest),
        "tags": list(image.tags),
        "time": image.pushed_at,
        "size": image.size,
        "status": str(image.status),
    }


def _event(event: ImageEvent) -> dict[str, object]:
    return {
        "repository": event.repository,
        "digest": str(event.digest),
        "tag": event.tag,
        "action": event.action.word,
        "time": event.time,
        "observed": event.event_id == OBSERVED,
    }


def as_document(report: BackfillReport, *, dry_run: bool) -> dict[str, object]:
    drifts = report.repositories
    return {
        "dry_run": dry_run,
        "drift": report.has_drift,
        "repositories": len(drifts),
        "images": sum(d.images for d in drifts),
        "missing": [_image(m.image) for d in drifts for m in d.missing],
        "archived_not_backed_up": [_image(i) for d in drifts for i in d.archived_missing],
        "archived_already_held": [_image(i) for d in drifts for i in d.archived_held],
        "pruned_not_copied": [_image(i) for d in drifts for i in d.pruned],
        "pushes_recorded_from_ecr": [_event(e) for d in drifts for e in d.pushes],
        "drifted_tags": [_event(e) for d in drifts for e in d.drifted],
        "gone": [_event(e) for d in drifts for e in d.gone],
        "copied": [_image(m.image) for m in report.copied],
        "failed": [{**_image(f.missing.image), "error": f.error.one_line()} for f in report.failed],
        "enqueued": report.enqueued,
        "events_recorded": report.recorded,
    }


def _name(repository: str, tag: str | None, digest: object) -> str:
    return f"{repository}:{tag}@{digest}" if tag else f"{repository}@{digest}"


def _drift_lines(drift: RepositoryDrift) -> list[str]:
    lines = []
    for missing in drift.missing:
        image = missing.image
        tags = f" ({', '.join(image.tags)})" if image.tags else ""
        lines.append(f"missing   {_name(image.repository, None, image.digest)}{tags}")
    for image in drift.archived_missing:
        lines.append(f"archived, not backed up  {_name(image.repository, None, image.digest)}")
    for image in drift.archived_held:
        lines.append(f"archived, already held   {_name(image.repository, None, image.digest)}")
    for image in drift.pruned:
        lines.append(f"pruned by retention      {_name(image.repository, None, image.digest)}")
    for event in drift.pushes:
        lines.append(
            f"unrecorded push  {_name(event.repository, event.tag, event.digest)} "
            f"at {rfc3339(event.time)}"
        )
    for event in drift.drifted:
        verb = "tag moved to" if event.action == "PUSH" else "tag removed from"
        lines.append(f"drift     {event.repository}:{event.tag} {verb} {event.digest}")
    for event in drift.gone:
        lines.append(f"gone      {_name(event.repository, event.tag, event.digest)}")
    return lines


def describe(report: BackfillReport, *, dry_run: bool) -> list[str]:
    drifts = report.repositories
    lines = [line for d in drifts for line in _drift_lines(d)]
    count = {
        "missing": sum(len(d.missing) for d in drifts),
        "archived": sum(len(d.archived_missing) + len(d.archived_held) for d in drifts),
        "pruned": sum(len(d.pruned) for d in drifts),
        "drifted tags": sum(len(d.drifted) for d in drifts),
        "gone": sum(len(d.gone) for d in drifts),
    }
    summary = ", ".join(f"{n} {what}" for what, n in count.items())
    images = sum(d.images for d in drifts)
    lines.append(f"{counted(len(drifts), 'repository')}, {counted(images, 'image')}: {summary}")
    if dry_run:
        lines.append("dry run: nothing copied or recorded" if report.has_drift else "no drift")
    elif report.enqueued:
        lines.append(
            f"enqueued {counted(report.enqueued, 'image')}; "
            f"recorded {counted(report.recorded, 'event')}"
        )
    else:
        lines.append(
            f"copied {counted(len(report.copied), 'image')}, {len(report.failed)} failed; "
            f"recorded {counted(report.recorded, 'event')}"
        )
    return lines
