"""The SQS batch processor of the queue-fed functions (replicate, reconcile).

Each record is judged on its own, and each failed one is logged in one line with its SQS
message id (what to look for in the dead-letter queue), plus what the record handler noted
about that record (its correlation id, `note`'s keys). That per-record context is cleared
after every record, failed or not, so the next one does not inherit it.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    ExceptionInfo,
    FailureResponse,
    SuccessResponse,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from ecr_backup.errors import OutOfTimeError


class LoggedBatchProcessor(BatchProcessor):
    def __init__(self, logger: Logger) -> None:
        # Not raising when the whole batch fails keeps the function's Errors metric for real
        # faults (bad settings, timeouts): poison records show up as batchItemFailures, then
        # in the dead-letter queue and its alarm.
        super().__init__(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        self._logger = logger
        self._record_keys: set[str] = set()

    def note(self, **keys: str) -> None:
        """Keys that every line logged for the current record carries, its failure's too."""
        self._logger.append_keys(**keys)
        self._record_keys.update(keys)

    def success_handler(self, record: dict[str, object], result: object) -> SuccessResponse:
        self._forget_record()
        return super().success_handler(record, result)

    def failure_handler(self, record: SQSRecord, exception: ExceptionInfo) -> FailureResponse:
        error = exception[1]
        where = {"message_id": record.message_id}
        if isinstance(error, OutOfTimeError):
            # Expected near the end of an invocation: no traceback, nothing to investigate.
            self._logger.info(
                "record deferred: too little time left; SQS redelivers it and the copy resumes",
                extra={**where, "reason": str(error)},
            )
        else:
            self._logger.warning(
                "record failed; SQS retries it, then moves it to the dead-letter queue",
                exc_info=error,  # the exception carries its traceback
                extra=where,
            )
        self._forget_record()
        return super().failure_handler(record, exception)

    def _forget_record(self) -> None:
        self._logger.set_correlation_id(None)
        self._logger.remove_keys(list(self._record_keys))
        self._record_keys.clear()
