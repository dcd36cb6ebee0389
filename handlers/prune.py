"""Lambda entry point: the scheduled prune (ecr_backup.maintenance.prune), its own role.

Each run marks what became unreachable and deletes what was marked at least a grace
period before and is still unreachable and unlocked."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ecr_backup.composition import services_for
from ecr_backup.schema import render
from ecr_backup.settings import Settings
from ecr_backup.status.runs import record_prune

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, object]:
    services = services_for(Settings.load(os.environ))
    report = services.pruner().run(dry_run=False)
    record_prune(services.run_log, report)  # for `ecr-backup status`
    counts = {action: len(report.of(action)) for action in ("mark", "delete", "locked", "in-use")}
    metrics.add_metric("ObjectsMarked", MetricUnit.Count, counts["mark"])
    metrics.add_metric("ObjectsDeleted", MetricUnit.Count, counts["delete"])
    metrics.add_metric("ObjectsLocked", MetricUnit.Count, counts["locked"])
    metrics.add_metric("BytesFreed", MetricUnit.Bytes, report.bytes_freed)
    logger.info("prune", extra={**render("prune", report), "counts": counts})
    return {"bytes_freed": report.bytes_freed, "counts": counts}
