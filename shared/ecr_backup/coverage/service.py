"""The coverage service: what the scheduled reconcile (handlers/reconcile.py) and
`ecr-backup backfill` do alike, over the adapters the composition root hands them.

- which source registries there are and which role lists each (another account's
  read-only role from templates/source-account.yaml; this session's own for ours);
- the scheduled start: one reconcile-queue message per repository of every source, where
  a source that cannot be listed does not keep the others from being queued;
- one repository reconciled from its message: held images' events recorded, missing ones
  sent to the replicate queue;
- backfill: every repository of one source reconciled, missing images copied here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ecr_backup.backup.events import first_problem, load_json
from ecr_backup.coverage.backfill import (
    Backfill,
    BackfillReport,
    Copier,
    Sender,
    enqueue_missing,
    settle,
)
from ecr_backup.coverage.reconcile import (
    EcrCatalog,
    ReconcileIndex,
    Reconciler,
    RepositoryDrift,
    Source,
)
from ecr_backup.errors import EcrBackupError, InvalidInputError, RegistryError
from ecr_backup.progress import ProgressFactory, no_progress
from ecr_backup.registry.source_account import source_role_arn
from ecr_backup.settings import DEFAULT_IMAGE_CONCURRENCY


class CoverageAdapters(Protocol):
    """What the service needs of the composition root (AwsServices satisfies it)."""

    @property
    def index(self) -> ReconcileIndex: ...

    def caller_source(self) -> tuple[str, str]: ...

    def listing(self, account: str, region: str, role_arn: str | None = None) -> EcrCatalog: ...

    def replicator(self, account: str, region: str) -> Copier: ...

    def queue(self, url: str) -> Sender: ...


class RepositoryTask(BaseModel):
    """One reconcile-queue message: a repository of one source registry, or (without a
    repository) the registry itself, whose repositories are to be queued."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    account: str = Field(pattern=r"^[0-9]{12}$")
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]$")
    repository: str | None = None

    @classmethod
    def parse(cls, body: str) -> RepositoryTask:
        """One message's body; anything else is one InvalidInputError."""
        try:
            return cls.model_validate(load_json(body, "reconcile task"))
        except ValidationError as e:
            raise InvalidInputError(f"invalid reconcile task: {first_problem(e, 'task')}") from e

    @property
    def source(self) -> Source:
        return Source(self.account, self.region)


@dataclass
class StartReport:
    """The scheduled start: repositories queued, and the sources that could not be listed."""

    sources: int
    queued: int = 0  # repository messages
    registries: int = 0  # registry messages (several sources: each lists its own)
    failed: list[tuple[Source, EcrBackupError]] = field(default_factory=list)

    def check(self) -> None:
        """Fail the run when a source was not listed, so that its alarm fires."""
        if self.failed:
            names = ", ".join(f"{s.account}/{s.region}" for s, _ in self.failed)
            raise RegistryError(
                f"{len(self.failed)} of {self.sources} source registries could not be listed "
                f"({names}); the others' repositories are queued ({self.queued})",
                code="SOURCE_NOT_LISTED",
            ) from self.failed[0][1]


@dataclass(frozen=True)
class RepositoryOutcome:
    drift: RepositoryDrift
    recorded: int  # events of held images recorded
    enqueued: int  # missing images sent to the replicate queue


class Coverage:
    def __init__(self, adapters: CoverageAdapters) -> None:
        self._adapters = adapters

    def sources(self, accounts: Sequence[str] = (), regions: Sequence[str] = ()) -> list[Source]:
        """Every account in every region; none named: this session's own."""
        own_account, own_region = self._adapters.caller_source()
        return [Source(a, r) for a in accounts or (own_account,) for r in regions or (own_region,)]

    def source(
        self, account: str | None, region: str | None, role_arn: str | None = None
    ) -> tuple[Source, str | None]:
        """One source registry (this session's account and region where unnamed) and the
        role to list it with: `role_arn`, else the default role of another account."""
        own_account, own_region = self._adapters.caller_source()
        source = Source(account or own_account, region or own_region)
        return source, role_arn if role_arn is not None else self.role_for(source)

    def role_for(self, source: Source) -> str | None:
        """The source account's read-only role; None for this account's own registry."""
        own_account, _ = self._adapters.caller_source()
        if source.account == own_account:
            return None
        return source_role_arn(source.account, source.region)

    def reconciler(self, source: Source, role_arn: str | None = None) -> Reconciler:
        listing = self._adapters.listing(source.account, source.region, role_arn)
        return Reconciler(listing, self._adapters.index, source)

    def start(
        self, sources: Sequence[Source], prefixes: Sequence[str], queue_url: str
    ) -> StartReport:
        """With several sources, one reconcile-queue message per source registry, which
        lists its own repositories (queue_registry) and fails alone, so that no invocation
        holds an organization. With one, a message per repository; a source that cannot
        be listed (its role missing, its API refusing) is reported, not raised."""
        queue = self._adapters.queue(queue_url)
        report = StartReport(len(sources))
        if len(sources) > 1:
            tasks = [RepositoryTask(account=s.account, region=s.region) for s in sources]
            report.registries = queue.send([task.model_dump() for task in tasks])
            return report
        for source in sources:
            # A repository deleted from ECR is reconciled too (its images are observed
            # gone), but only with one source: the index does not say which account a
            # name was in.
            try:
                names = self.reconciler(source, self.role_for(source)).repositories(
                    prefixes, include_held=len(sources) == 1
                )
                tasks = [
                    RepositoryTask(account=source.account, region=source.region, repository=n)
                    for n in names
                ]
                report.queued += queue.send([task.model_dump() for task in tasks])
            except EcrBackupError as e:
                report.failed.append((source, e))
        return report

    def queue_registry(self, source: Source, prefixes: Sequence[str], queue_url: str) -> int:
        """One registry of several: a reconcile-queue message per repository it lists
        (those only the index holds are left out: the index does not say which account a
        deleted repository's name was in)."""
        names = self.reconciler(source, self.role_for(source)).repositories(
            prefixes, include_held=False
        )
        tasks = [
            RepositoryTask(account=source.account, region=source.region, repository=n)
            for n in names
        ]
        return self._adapters.queue(queue_url).send([task.model_dump() for task in tasks])

    def reconcile(self, task: RepositoryTask, replicate_queue_url: str) -> RepositoryOutcome:
        """One repository: record what held images show, send the missing to be copied."""
        if task.repository is None:
            raise InvalidInputError("a reconcile task of a whole registry names no repository")
        source = task.source
        drift = self.reconciler(source, self.role_for(source)).repository(task.repository)
        recorded = settle(drift, self._adapters.replicator(source.account, source.region))
        enqueued = enqueue_missing(drift, self._adapters.queue(replicate_queue_url))
        return RepositoryOutcome(drift, recorded, enqueued)

    def backfill(
        self,
        source: Source,
        role_arn: str | None,
        prefixes: Sequence[str] = (),
        *,
        dry_run: bool = False,
        enqueue_url: str | None = None,
        image_concurrency: int = DEFAULT_IMAGE_CONCURRENCY,
        progress: ProgressFactory = no_progress,
    ) -> BackfillReport:
        """Every repository of `source` (and those the index holds that ECR lost):
        missing images copied here, or sent to `enqueue_url`'s replicate queue."""
        backfill = Backfill(
            self.reconciler(source, role_arn),
            # A dry run copies and records nothing: the index is not even claimed.
            self._adapters.replicator(source.account, source.region),
            queue=self._adapters.queue(enqueue_url) if enqueue_url else None,
            image_concurrency=image_concurrency,
            progress=progress,
        )
        return backfill.run(prefixes, dry_run=dry_run)
