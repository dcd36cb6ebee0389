"""Lambda entry point: SQS batches of ECR's events (image, referrer, replication, pull-through
cache; ecr_backup.backup.events) -> the backup engine.

Thin on purpose: parse each record, hand it to `ecr_backup.backup.service.handle_ecr_event`
(the same code path as `ecr-backup handle-event`), and report per-record failures so
that SQS retries only those, and moves them to the dead-letter queue after the
queue's maxReceiveCount. Copies that could not finish before the invocation's
timeout are not started (a Deadline from the remaining time): their records fail
alone and resume on redelivery, instead of a timeout failing the whole batch.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from functools import partial
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from ecr_backup.backup.deadline import Deadline
from ecr_backup.backup.events import ECR_SOURCE, EcrEvent, parse_event
from ecr_backup.backup.service import EventOutcome, handle_ecr_event
from ecr_backup.composition import AwsServices, services_for
from ecr_backup.schema import CopyReport, dump, render
from ecr_backup.settings import Settings
from sqs_batch import LoggedBatchProcessor

# Service name, metrics namespace and log level come from the POWERTOOLS_* variables
# that template.yaml sets. No X-Ray SDK (Powertools' Tracer): it is in maintenance, ends
# support on 2027-02-25 and was most of the cold import; Lambda's active tracing still
# records every invocation (docs/deploy.md).
logger = Logger()
metrics = Metrics()

# The library logs through the standard `logging` module; give its loggers the same
# JSON format (and correlation id) instead of the runtime's plain-text root handler.
copy_config_to_registered_loggers(source_logger=logger, include={"ecr_backup"})


processor = LoggedBatchProcessor(logger)


def handle_record(
    services: AwsServices, deadline: Deadline, record: SQSRecord
) -> dict[str, object]:
    # Each record is parsed on its own: a malformed one fails alone, with one log line.
    event = parse_event(record.body)
    # Set before the work, so that the failure warning of this record carries it too.
    logger.set_correlation_id(event.id)
    if event.source == ECR_SOURCE:  # the registries reconcile and coverage may not know yet
        services.source_log.note(event.account, event.region, datetime.now(UTC))
    outcome = handle_ecr_event(
        event,
        lambda account, region: services.replicator(account, region, deadline=deadline),
        pull_through_cache=services.settings.pull_through_cache,
    )
    _report(event, outcome)
    return render("handle-event", outcome)  # type: ignore[no-any-return]


def _report(event: EcrEvent, outcome: EventOutcome) -> None:
    image = outcome.image
    storage = outcome.storage
    if storage is not None:
        logger.info(
            "storage class change recorded",
            extra={
                "repository": storage.repository,
                "digest": str(storage.digest),
                "storage_class": str(storage.storage_class),
                "backed_up": outcome.report is not None,
            },
        )
    if image is None:
        if storage is None:
            logger.info(
                "event ignored: not an ECR change the backup acts on",
                extra={"source": event.source, "detail_type": event.detail_type},
            )
        return
    where = {
        "kind": str(outcome.kind),
        "origin": outcome.origin,
        "repository": image.repository,
        "digest": str(image.digest),
        "tag": image.tag,
        "source_account": image.source_account,
        "source_region": image.source_region,
    }
    report = outcome.report
    if report is None:
        metrics.add_metric("DeletionsRecorded", MetricUnit.Count, 1)
        logger.info("deletion recorded; nothing deleted from the backup", extra=where)
        return
    metrics.add_metric("BlobsCopied", MetricUnit.Count, len(report.blobs_copied))
    metrics.add_metric("BlobsSkipped", MetricUnit.Count, len(report.blobs_skipped))
    metrics.add_metric("BytesCopied", MetricUnit.Bytes, report.bytes_copied)
    # From ECR accepting the push to the image's closure being durable in the bucket.
    latency = (datetime.now(UTC) - event.time).total_seconds()
    metrics.add_metric("PushToDurableLatency", MetricUnit.Seconds, max(latency, 0.0))
    logger.info("image backed up", extra={**where, **dump(CopyReport, report)})


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    # Read per invocation (cheap), never at import: a bad setting fails the invocation
    # with a clear message instead of breaking the module import.
    settings = Settings.load(os.environ)
    services = services_for(settings)
    # One deadline for the whole batch: copies that could not finish before the function's
    # timeout are not started, and their records come back through SQS.
    deadline = Deadline.after(
        context.get_remaining_time_in_millis() / 1000,
        throughput_floor_mibps=settings.throughput_floor_mibps,
    )
    response = process_partial_response(
        event=event,
        record_handler=partial(handle_record, services, deadline),
        processor=processor,
        context=context,
    )
    # Emitted every time (zero included) so that it can be alarmed on and graphed.
    metrics.add_metric("RecordsFailed", MetricUnit.Count, len(response["batchItemFailures"]))
    metrics.add_metric("DeletionSurge", MetricUnit.Count, len(services.take_surges_recorded()))
    return response
