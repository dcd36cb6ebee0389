"""Lambda entry point of the scheduled reconcile: what ECR's events missed goes to the
replicate queue; moved tags and deleted images are recorded as observed.

Two kinds of invocation, so that no invocation holds a whole registry:
- the schedule (an EventBridge "Scheduled Event"): list the repositories of every
  configured source account and region (DescribeRepositories) and send one message per
  repository to the reconcile queue;
- that queue (SQS batches): reconcile each repository (DescribeImages, the index), record
  what is observed, and send each missing image to the replicate queue as ECR's event.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ecr_backup.composition import AwsServices, services_for
from ecr_backup.coverage.accounts import AccountsFrom, plan_sources
from ecr_backup.coverage.reconcile import RepositoryDrift, Source
from ecr_backup.coverage.service import Coverage, RepositoryTask
from ecr_backup.settings import Settings, load_from_env
from ecr_backup.status.runs import record_reconcile
from sqs_batch import LoggedBatchProcessor

# No X-Ray SDK (Powertools' Tracer), as in replicate.py: Lambda's active tracing records
# every invocation without it.
logger = Logger()
metrics = Metrics()
copy_config_to_registered_loggers(source_logger=logger, include={"ecr_backup"})


class ReconcileConfig(BaseModel):
    """The ECR_BACKUP_* variables template.yaml sets for this function only."""

    model_config = ConfigDict(frozen=True)

    reconcile_queue_url: str
    replicate_queue_url: str
    repository_prefix: str = ""
    source_accounts: tuple[str, ...] = ()  # empty: this account
    source_regions: tuple[str, ...] = ()  # empty: this region
    # Where the source accounts come from (ecr_backup.coverage.accounts).
    accounts_from: AccountsFrom = "list"
    organization_role_arn: str = ""
    interval_minutes: int = Field(default=1440, ge=1)

    @field_validator("source_accounts", "source_regions", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @classmethod
    def load(cls, environ: Mapping[str, str]) -> ReconcileConfig:
        return load_from_env(cls, environ)

    @property
    def prefixes(self) -> tuple[str, ...]:
        return (self.repository_prefix,) if self.repository_prefix else ()


processor = LoggedBatchProcessor(logger)


def sources(services: AwsServices, config: ReconcileConfig) -> list[Source]:
    """The source registries: from the parameter's list, the Organization's accounts or
    the accounts whose events the backup has seen (coverage/accounts.py)."""
    role = config.organization_role_arn
    reads_organization = config.accounts_from == "organization" and bool(role)
    plan = plan_sources(
        config.accounts_from,
        listed=config.source_accounts,
        regions=config.source_regions,
        own=Source(*services.caller_source()),
        organization=services.organization(role) if reads_organization else None,
        seen=services.source_log,
    )
    return list(plan.sources)


def start(services: AwsServices, config: ReconcileConfig) -> dict[str, object]:
    """The scheduled run: with several source registries, one message per registry (each
    lists its own repositories, and fails alone); with one, one message per repository,
    and a registry that cannot be listed fails the run at the end, so that
    ReconcileErrorsAlarm fires."""
    every = sources(services, config)
    report = Coverage(services).start(every, config.prefixes, config.reconcile_queue_url)
    for source, error in report.failed:
        logger.warning(
            "source registry not listed; its repositories are not reconciled this run",
            exc_info=error,
            extra={"source_account": source.account, "source_region": source.region},
        )
    if report.registries:
        logger.info("reconcile started", extra={"sources": report.registries})
        return {"sources": report.registries}
    metrics.add_metric("RepositoriesQueued", MetricUnit.Count, report.queued)
    logger.info("reconcile started", extra={"repositories": report.queued, "sources": len(every)})
    report.check()
    return {"repositories": report.queued}


def reconcile_record(
    services: AwsServices, config: ReconcileConfig, record: SQSRecord
) -> dict[str, object]:
    task = RepositoryTask.parse(record.body)
    # Every line logged for this record, its failure's included, names the registry (and
    # the repository).
    processor.note(source_account=task.account, source_region=task.region)
    coverage = Coverage(services)
    if task.repository is None:  # one registry of several: queue its repositories
        queued = coverage.queue_registry(task.source, config.prefixes, config.reconcile_queue_url)
        metrics.add_metric("RepositoriesQueued", MetricUnit.Count, queued)
        return {"source": f"{task.account}/{task.region}", "repositories": queued}
    processor.note(repository=task.repository)
    outcome = coverage.reconcile(task, config.replicate_queue_url)
    _report(outcome.drift, outcome.enqueued, config, task.source)
    record_reconcile(  # for `ecr-backup status`
        services.run_log, outcome.drift, task.source, datetime.now(UTC), config.interval_minutes
    )
    return {
        "repository": task.repository,
        "enqueued": outcome.enqueued,
        "recorded": outcome.recorded,
    }


def _report(drift: RepositoryDrift, enqueued: int, config: ReconcileConfig, source: Source) -> None:
    # A missing image pushed before the previous run was missing then too: its copy failed.
    previous_run = datetime.now(UTC) - timedelta(minutes=config.interval_minutes)
    still_missing = sum(1 for m in drift.missing if m.image.pushed_at < previous_run)
    counts = {
        "ImagesMissing": len(drift.missing),
        "ImagesEnqueued": enqueued,
        "TagsDrifted": len(drift.drifted),
        "ImagesGone": sum(1 for e in drift.gone if e.tag is None),
        "ImagesArchived": len(drift.archived_missing) + len(drift.archived_held),
        "ImagesPrunedInEcr": len(drift.pruned),
        "ImagesStillMissing": still_missing,
    }
    # The stack's totals (its alarms watch them), and each source registry's non-zero
    # counts with `account` and `region`: a registry's series exists only while it has
    # something to show, so thousands of registries do not become thousands of billed,
    # flat metrics (docs/organization.md).
    registry = EphemeralMetrics()
    registry.add_dimension("account", source.account)
    registry.add_dimension("region", source.region)
    for name, value in counts.items():
        metrics.add_metric(name, MetricUnit.Count, value)
        if value:
            registry.add_metric(name, MetricUnit.Count, value)
    if any(counts.values()):
        registry.flush_metrics()
    logger.info(
        "repository reconciled",
        extra={
            "images": drift.images,
            **counts,
            "missing": [str(m.image.digest) for m in drift.missing],
            "archived_not_backed_up": [str(i.digest) for i in drift.archived_missing],
        },
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> Any:
    services = services_for(Settings.load(os.environ))
    config = ReconcileConfig.load(os.environ)
    if "Records" not in event:
        logger.debug("scheduled event", extra={"event": json.dumps(event, default=str)})
        return start(services, config)
    response: PartialItemFailureResponse = process_partial_response(
        event=event,
        record_handler=partial(reconcile_record, services, config),
        processor=processor,
        context=context,
    )
    metrics.add_metric("RepositoriesFailed", MetricUnit.Count, len(response["batchItemFailures"]))
    # Reconcile records the images it finds gone: a mass deletion whose events were missed.
    metrics.add_metric("DeletionSurge", MetricUnit.Count, len(services.take_surges_recorded()))
    return response
