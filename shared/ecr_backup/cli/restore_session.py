"""What every repository of one `restore` run shares (cli/restore.py restores one image,
cli/disaster.py every repository, cli/undelete.py what a window deleted), each through a
RestoreSession: plan from the bucket, read the target's tags, push."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from datetime import datetime

from ecr_backup.catalog.catalog import Catalog
from ecr_backup.cli.common import at_from, emit, services_from
from ecr_backup.cli.options import progress_for
from ecr_backup.composition import AwsServices
from ecr_backup.errors import ExitCode
from ecr_backup.oci.reference import ImageRef
from ecr_backup.progress import ProgressFactory
from ecr_backup.restore.plan import RestorePlan, RestoreRequest, plan_restore
from ecr_backup.restore.push import Restorer, RestoreReport, TagMove, TagPlan, refuse_moves
from ecr_backup.restore.target import Target, ensure_ecr_repository
from ecr_backup.settings import ENV_PREFIX, MiB
from ecr_backup.text import counted

PASSWORD_ENV = f"{ENV_PREFIX}TARGET_PASSWORD"
USERNAME_ENV = f"{ENV_PREFIX}TARGET_USERNAME"


@dataclass
class Prepared:
    """One repository's restore, planned and checked against the target, nothing pushed."""

    plan: RestorePlan
    restorer: Restorer
    report: RestoreReport
    tags: TagPlan
    create_repository: bool


@dataclass
class RestoreSession:
    """What every repository of one `restore` run shares: services, catalog, password."""

    args: argparse.Namespace
    services: AwsServices
    catalog: Catalog
    password: str | None

    @classmethod
    def start(cls, args: argparse.Namespace) -> RestoreSession:
        services = services_from(args)
        catalog = services.catalog(from_bucket=args.from_bucket)
        password = sys.stdin.readline().rstrip("\n") if args.to_password_stdin else None
        if password is None:
            password = os.environ.get(PASSWORD_ENV)
        return cls(args, services, catalog, password)

    @property
    def at(self) -> datetime | None:
        return at_from(self.args)

    def prepare(self, ref: ImageRef, target: Target, *, all_tags: bool) -> Prepared:
        """Plan from the bucket (checked before the target is touched), then read the
        target's tags. Changes nothing: a missing ECR repository is created by `push`."""
        concurrency = self.services.settings.concurrency
        request = RestoreRequest(ref, at_from(self.args), all_tags, self.args.with_referrers)
        plan = plan_restore(self.catalog, request, target, concurrency=concurrency)
        return self.prepare_plan(plan, ref.repository)

    def prepare_plan(self, plan: RestorePlan, source_repository: str) -> Prepared:
        """The target's side of a plan: its registry, credentials and current tags."""
        args, services = self.args, self.services
        target = plan.target
        concurrency = services.settings.concurrency
        mount_from = [] if args.no_mount else list(args.mount_from)
        # The source repository's name in the target registry (restoring into the original
        # registry) may still hold most layers: mounting them costs no upload.
        if source_repository != target.repository and not args.no_mount:
            mount_from.append(source_repository)
        registry, create = services.target_registry(
            target,
            auth=args.to_auth,
            username=args.to_username or os.environ.get(USERNAME_ENV),
            password=self.password,
            mount_from=mount_from,
            create_repository=args.create_repository,
            dry_run=True,
        )
        restorer = Restorer(
            self.catalog.reader,
            registry,
            chunk_size=args.chunk_size_mib * MiB if args.chunk_size_mib else None,
            concurrency=concurrency,
            mount_from=mount_from,
            progress=_naming(progress_for(args), source_repository),
            allow_tag_moves=args.allow_tag_moves,
        )
        report = RestoreReport(str(target), created_repository=create)
        return Prepared(plan, restorer, report, restorer.tag_plan(plan), create)

    def refuse_moves(self, moves: list[TagMove], notes: tuple[str, ...] = ()) -> None:
        """Stop before any push when tags would move and the person did not allow it."""
        if not moves or self.args.allow_tag_moves or self.args.dry_run:
            return
        refusal = refuse_moves(moves, notes)
        if self.args.json:
            document = {"refused": str(refusal), "tags_moved": [m.as_dict() for m in moves]}
            emit(self.args, document, [])
        raise refusal

    def push(self, prepared: Prepared) -> RestoreReport:
        plan, restorer, report = prepared.plan, prepared.restorer, prepared.report
        if self.args.dry_run:
            return restorer.preview(plan, report)
        if prepared.create_repository:
            ensure_ecr_repository(plan.target, self.services.target_session, create=True)
        return restorer.run(plan, report)

    def dry_run_verdict(self, moves: list[TagMove]) -> int:
        """A dry run whose real run would be refused exits 1, saying why."""
        if not (self.args.dry_run and moves and not self.args.allow_tag_moves):
            return ExitCode.OK
        print(
            f"{counted(len(moves), 'tag')} would move: the restore would refuse without "
            "--allow-tag-moves",
            file=sys.stderr,
        )
        return ExitCode.PROBLEMS


def _naming(progress: ProgressFactory, repository: str) -> ProgressFactory:
    """Bars that say which repository they are for (--all-repositories draws one each)."""
    return lambda total, label: progress(total, f"{label} {repository}")
