"""Lambda entry point: the scheduled maintenance pass (ecr_backup.maintenance.maintain).

Extends the Object Lock of every object of every kept image whose lock ends too soon, and
reports locks found short, objects missing and locks it could not check (metrics
LocksShort, ObjectsMissing and LocksNotChecked are alarmed on)."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ecr_backup.composition import services_for
from ecr_backup.maintenance.maintain import maintain
from ecr_backup.schema import render
from ecr_backup.settings import Settings
from ecr_backup.status.runs import record_maintain

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, object]:
    services = services_for(Settings.load(os.environ))
    surges = services.surges()
    report = maintain(
        services.ledger,
        services.index,
        services.graph(),
        services.rules,
        services.keeper,
        surges=surges,
    )
    # Daily, while a surge holds deleted images: a reminder that a person must look.
    holding = len(surges.unacknowledged()) + len(surges.unreadable)
    metrics.add_metric("SurgesHolding", MetricUnit.Count, holding)
    record_maintain(services.run_log, report)  # for `ecr-backup status`
    metrics.add_metric("LocksExtended", MetricUnit.Count, len(report.extended))
    metrics.add_metric("LocksShort", MetricUnit.Count, len(report.short))
    metrics.add_metric("ObjectsMissing", MetricUnit.Count, len(report.missing))
    metrics.add_metric("LocksNotChecked", MetricUnit.Count, len(report.failed))
    summary: dict[str, object] = render("maintain", report)
    summary["extended"] = len(report.extended)  # the digests are many; counts in the log
    logger.info("maintenance pass", extra=summary)
    return summary
