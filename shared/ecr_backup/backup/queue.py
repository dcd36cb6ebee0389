"""SQS as backfill and reconcile use it: JSON messages sent in batches of ten."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from ecr_backup.awserrors import translate
from ecr_backup.errors import QueueError
from ecr_backup.settings import SQS_BATCH_SIZE, SQS_SEND_ATTEMPTS

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


class MessageQueue:
    def __init__(self, client: SQSClient, url: str) -> None:
        self._sqs = client
        self.url = url

    def send(self, bodies: Sequence[dict[str, Any]]) -> int:
        """Send each document as one message, SendMessageBatch by ten; returns how many.
        Entries SQS reports failed are sent again (throttling), then raise QueueError."""
        for start in range(0, len(bodies), SQS_BATCH_SIZE):
            batch = bodies[start : start + SQS_BATCH_SIZE]
            self._send_batch(
                {str(n): json.dumps(body, sort_keys=True) for n, body in enumerate(batch)}
            )
        return len(bodies)

    def _send_batch(self, pending: dict[str, str]) -> None:
        for attempt in range(SQS_SEND_ATTEMPTS):
            try:
                answer = self._sqs.send_message_batch(
                    QueueUrl=self.url,
                    Entries=[{"Id": key, "MessageBody": body} for key, body in pending.items()],
                )
            except (ClientError, BotoCoreError) as e:
                raise translate(e, f"SQS SendMessageBatch {self.url}", QueueError) from e
            failed = answer.get("Failed", [])
            fatal = [f for f in failed if f.get("SenderFault")]
            if fatal:
                raise QueueError(
                    f"SQS SendMessageBatch {self.url}: {fatal[0].get('Code', 'refused')}",
                    code=fatal[0].get("Code"),
                )
            pending = {f["Id"]: pending[f["Id"]] for f in failed}
            if not pending:
                return
            time.sleep(min(0.1 * 2**attempt, 2.0))
        raise QueueError(
            f"SQS SendMessageBatch {self.url}: {len(pending)} messages not accepted",
            retryable=True,
        )
