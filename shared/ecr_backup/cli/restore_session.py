"""What every repository of one `restore` run shares (cli/restore.py restores one image,
cli/disaster.py every repository, both through a RestoreSession)."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from datetime import datetime

from ecr_backup.catalog.catalog import Catalog
from ecr_backup.cli.common import at_from, services_from
from ecr_backup.cli.options import progress_for
from ecr_backup.composition import AwsServices
from ecr_backup.oci.reference import ImageRef
from ecr_backup.progress import ProgressFactory
from ecr_backup.restore.plan import RestorePlan, RestoreRequest, plan_restore
from ecr_backup.restore.push import Restorer, RestoreReport
from ecr_backup.restore.target import Target
from ecr_backup.settings import ENV_PREFIX, MiB

PASSWORD_ENV = f"{ENV_PREFIX}TARGET_PASSWORD"
USERNAME_ENV = f"{ENV_PREFIX}TARGET_USERNAME"


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

    def restore(
        self, ref: ImageRef, target: Target, *, all_tags: bool
    ) -> tuple[RestorePlan, RestoreReport]:
        """Plan from the bucket (checked before the target is touched), then push."""
        args, services = self.args, self.services
        concurrency = services.settings.concurrency
        request = RestoreRequest(ref, at_from(args), all_tags, args.with_referrers)
        plan = plan_restore(self.catalog, request, target, concurrency=concurrency)
        mount_from = [] if args.no_mount else list(args.mount_from)
        # The source repository's name in the target registry (restoring into the original
        # registry) may still hold most layers: mounting them costs no upload.
        if ref.repository != target.repository and not args.no_mount:
            mount_from.append(ref.repository)
        registry, created = services.target_registry(
            target,
            auth=args.to_auth,
            username=args.to_username or os.environ.get(USERNAME_ENV),
            password=self.password,
            mount_from=mount_from,
            create_repository=args.create_repository,
            dry_run=args.dry_run,
        )
        restorer = Restorer(
            self.catalog.reader,
            registry,
            chunk_size=args.chunk_size_mib * MiB if args.chunk_size_mib else None,
            concurrency=concurrency,
            mount_from=mount_from,
            progress=_naming(progress_for(args), ref.repository),
        )
        report = RestoreReport(str(target), created_repository=created)
        report = restorer.preview(plan, report) if args.dry_run else restorer.run(plan, report)
        return plan, report


def _naming(progress: ProgressFactory, repository: str) -> ProgressFactory:
    """Bars that say which repository they are for (--all-repositories draws one each)."""
    return lambda total, label: progress(total, f"{label} {repository}")
