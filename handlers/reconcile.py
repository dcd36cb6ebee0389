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
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ecr_backup.composition import AwsServices, services_for
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


def start(coverage: Coverage, config: ReconcileConfig) -> dict[str, object]:
    """The scheduled run: one message per repository of every source registry. A source
    that cannot be listed is logged, and the run fails at the end, so that
    ReconcileErrorsAlarm fires."""
    sources = coverage.sources(config.source_accounts, config.source_regions)
    report = coverage.start(sources, config.prefixes, config.reconcile_queue_url)
    for source, error in report.failed:
        logger.warning(
            "source registry not listed; its repositories are not reconciled this run",
            exc_info=error,
            extra={"source_account": source.account, "source_region": source.region},
        )
    metrics.add_metric("RepositoriesQueued", MetricUnit.Count, report.queued)
    logger.info("reconcile started", extra={"repositories": report.queued, "sources": len(sources)})
    report.check()
    return {"repositories": report.queued}


def reconcile_record(
    services: AwsServices, config: ReconcileConfig, record: SQSRecord
) -> dict[str, object]:
    task = RepositoryTask.parse(record.body)
    # Every line logged for this record, its failure's included, names the repository.
    processor.note(
        repository=task.repository, source_account=task.account, source_region=task.region
    )
    outcome = Coverage(services).reconcile(task, config.replicate_queue_url)
    _report(outcome.drift, outcome.enqueued, config)
    record_reconcile(  # for `ecr-backup status`
        services.run_log,
        outcome.drift,
        Source(task.account, task.region),
        datetime.now(UTC),
        config.interval_minutes,
    )
    return {
        "repository": task.repository,
        "enqueued": outcome.enqueued,
        "recorded": outcome.recorded,
    }


def _report(drift: RepositoryDrift, enqueued: int, config: ReconcileConfig) -> None:
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
    for name, value in counts.items():
        metrics.add_metric(name, MetricUnit.Count, value)
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
        return start(Coverage(services), config)
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
