"""`ecr-backup coverage`: is every image of every source registry in the backup, and for
how long has the oldest missing one waited? One row per account and region."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta
from typing import Any

from ecr_backup.cli.common import add_storage_options, emit, services_from, short, table
from ecr_backup.composition import AwsServices
from ecr_backup.coverage.reconcile import Reconciler, Source
from ecr_backup.errors import EcrBackupError, ExitCode
from ecr_backup.model import rfc3339
from ecr_backup.registry.source_account import source_role_arn
from ecr_backup.status.coverage import Coverage, RegistryCoverage, RepositoryCount, current, gather
from ecr_backup.status.runs import last_reconciles

DEFAULT_GRACE = "1h"
_DURATION = re.compile(r"^([0-9]+)([smhd])$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def duration(text: str) -> timedelta:
    """'90s', '30m', '1h', '2d'."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: a number and s, m, h or d (e.g. 30m, 1h, 2d)"
        )
    return timedelta(**{_UNIT[match[2]]: int(match[1])})


def register(commands: Any) -> None:
    coverage = commands.add_parser(
        "coverage",
        help="per source account and region: images in ECR, backed up, missing, since when",
        description="What the backup holds of each source registry (account and region), "
        "from the scheduled reconcile's last runs and the index, or from ECR now (--live). "
        "Exit code 0: no image has been missing longer than --grace; 1: one has (or, with "
        "--live, a registry could not be listed); 3: the backup cannot be read.",
    )
    coverage.add_argument(
        "--grace",
        type=duration,
        default=duration(DEFAULT_GRACE),
        metavar="DURATION",
        help=f"how long an image may be missing before it counts (default {DEFAULT_GRACE}; "
        "30m, 1h, 2d)",
    )
    coverage.add_argument(
        "--live",
        action="store_true",
        help="list ECR now (DescribeRepositories, DescribeImages; through each source "
        "account's ecr-backup-source-read role) instead of reading the last reconciles",
    )
    coverage.add_argument(
        "--source-account",
        action="append",
        default=[],
        metavar="ACCOUNT",
        help="only this account (repeatable); default: every account known",
    )
    coverage.add_argument(
        "--source-region",
        action="append",
        default=[],
        metavar="REGION",
        help="only this region (repeatable); default: every region known",
    )
    add_storage_options(coverage)
    coverage.set_defaults(run=run_coverage)


def run_coverage(args: argparse.Namespace) -> int:
    services = services_from(args)
    index = services.index
    now = services.clock()
    runs = current(last_reconciles(services.run_log))
    seen = [Source(s.account, s.region) for s in services.source_log.seen()]
    known = sorted({Source(r.account, r.region) for r in runs} | set(seen), key=_order)
    only = _selected(args, known, services)
    failed: dict[Source, str] = {}
    if args.live:
        counts = []
        only = only or known or [Source(*services.caller_source())]
        for source in only:
            try:
                counts += _live(services, source, now)
            except EcrBackupError as e:
                failed[source] = e.one_line()
    else:
        counts = [RepositoryCount.from_run(r) for r in runs]
    report = gather(
        now=now, grace=args.grace, counts=counts, index=index, seen=seen, only=only, live=args.live
    )
    emit(args, document(report, failed), lines(args, report, failed))
    return ExitCode.OK if report.covered and not failed else ExitCode.PROBLEMS


def _order(source: Source) -> tuple[str, str]:
    return source.account, source.region


def _selected(args: argparse.Namespace, known: list[Source], services: AwsServices) -> list[Source]:
    """The registries the flags name: both given, each account in each region; one given,
    the known registries it matches (the caller's own when none is known)."""
    accounts, regions = args.source_account, args.source_region
    if accounts and regions:
        return [Source(a, r) for a in accounts for r in regions]
    if not accounts and not regions:
        return []
    matching = [
        s
        for s in known
        if (not accounts or s.account in accounts) and (not regions or s.region in regions)
    ]
    if matching:
        return matching
    own_account, own_region = services.caller_source()
    return [Source(a, own_region) for a in accounts] or [Source(own_account, r) for r in regions]


def _live(services: AwsServices, source: Source, now: Any) -> list[RepositoryCount]:
    own_account, _ = services.caller_source()
    role = None if source.account == own_account else source_role_arn(source.account, source.region)
    reconciler = Reconciler(
        services.listing(source.account, source.region, role), services.index, source
    )
    names = reconciler.repositories(include_held=False)
    return [RepositoryCount.from_drift(source, drift, now) for drift in reconciler.many(names)]


def _registry(r: RegistryCoverage, error: str | None) -> dict[str, object]:
    return {
        "account": r.source.account,
        "region": r.source.region,
        "repositories": r.repositories,
        "images": r.images,
        "backed_up": r.backed_up,
        "missing": r.missing,
        "missing_past_grace": r.past_grace,
        "archived_not_backed_up": r.archived_missing,
        "pruned": r.pruned,
        "oldest_missing_pushed_at": r.oldest_missing,
        "last_reconcile": r.last_reconcile,
        "missing_images": [
            {
                "repository": m.image.repository,
                "digest": str(m.image.digest),
                "pushed_at": m.image.pushed_at,
                "past_grace": m.past_grace,
            }
            for m in r.missing_images
        ],
        "missing_not_listed": r.missing_not_listed,
        "error": error,
    }


def document(report: Coverage, failed: dict[Source, str]) -> dict[str, object]:
    total = _registry(report.total(), None)
    for key in ("account", "region", "missing_images", "error"):
        del total[key]
    return {
        "covered": report.covered and not failed,
        "time": report.time,
        "grace_seconds": int(report.grace.total_seconds()),
        "live": report.live,
        "registries": [_registry(r, failed.get(r.source)) for r in report.registries],
        "total": total,
    }


def lines(args: argparse.Namespace, report: Coverage, failed: dict[Source, str]) -> list[str]:
    grace = _span(report.grace)
    total = report.total()
    if report.covered and not failed:
        out = [f"COVERED: no image missing from the backup for over {grace}"]
    else:
        out = [f"NOT COVERED: {total.past_grace} image(s) missing for over {grace}"]
        if failed:
            out[0] += f", {len(failed)} registry(ies) not listed"
    source = "ECR now (--live)" if report.live else "the last reconcile of each repository"
    out.append(f"from {source}, at {rfc3339(report.time)}")
    out.append("")
    rows = [
        [
            r.source.account,
            r.source.region,
            str(r.repositories),
            str(r.images),
            str(r.backed_up),
            str(r.missing),
            str(r.archived_missing),
            rfc3339(r.oldest_missing) if r.oldest_missing else "-",
            rfc3339(r.last_reconcile) if r.last_reconcile else "never",
        ]
        for r in report.registries
    ]
    headers = [
        "ACCOUNT", "REGION", "REPOS", "IMAGES", "BACKED UP", "MISSING", "ARCHIVED",
        "OLDEST MISSING PUSH", "LAST RECONCILE",
    ]  # fmt: skip
    if rows:
        out += table(rows, headers)
    else:
        out.append("no reconcile run and no source registry recorded in the index")
    for r in report.registries:
        if r.source in failed:
            out.append(f"  not listed: {r.source.account}/{r.source.region}: {failed[r.source]}")
        out += [
            f"  missing: {r.source.account}/{r.source.region} {m.image.repository}@"
            f"{short(args, m.image.digest)} pushed {rfc3339(m.image.pushed_at)}"
            f"{'  PAST GRACE' if m.past_grace else ''}"
            for m in r.missing_images
        ]
        if r.missing_not_listed:
            out.append(
                f"  and {r.missing_not_listed} more missing in {r.source.account}/"
                f"{r.source.region} (newer; the summaries keep the oldest)"
            )
    return out


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
