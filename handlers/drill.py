"""Lambda entry point: the daily restore drill (ecr_backup.maintenance.drill), its own role.

Reads a sample of kept images whole and today's slice of every kept object, checking
each one's sha256 and size. DrillProblems is alarmed on, and so is a day without a
completed drill (DrillCompleted), since the scrub's promise holds only while drills run."""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ecr_backup.composition import services_for
from ecr_backup.settings import Settings
from ecr_backup.status.runs import record_drill

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, object]:
    services = services_for(Settings.load(os.environ))
    report = services.run_drill()
    record_drill(services.run_log, report)  # for `ecr-backup status` and `stats`
    metrics.add_metric("DrillObjectsVerified", MetricUnit.Count, report.objects_verified)
    metrics.add_metric("DrillBytesRead", MetricUnit.Bytes, report.bytes_read)
    metrics.add_metric("DrillProblems", MetricUnit.Count, report.summary().problems)
    metrics.add_metric("DrillCompleted", MetricUnit.Count, 1)
    summary: dict[str, object] = {
        "ok": report.ok,
        "images_kept": report.images_kept,
        "sampled": [f"{s.repository}@{s.digest}" for s in report.sampled],
        "scrub_slice": report.scrub_slice,
        "scrub_days": report.scrub_days,
        "objects_verified": report.objects_verified,
        "bytes_read": report.bytes_read,
        "problems": [str(p) for p in report.problems],
        "restore": None if report.restore is None else asdict(report.restore),
    }
    if not report.ok:
        logger.warning(
            "restore drill found problems: run `ecr-backup verify --deep`", extra=summary
        )
    else:
        logger.info("restore drill", extra=summary)
    return summary
