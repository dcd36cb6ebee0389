"""SQS records as Lambda receives them from the queue the EventBridge rule feeds."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any


def sqs_record(
    body: str | dict[str, Any],
    message_id: str | None = None,
    *,
    region: str = "us-east-1",
    account: str = "123456789012",
) -> dict[str, Any]:
    text = body if isinstance(body, str) else json.dumps(body)
    message_id = message_id or str(uuid.uuid4())
    return {
        "messageId": message_id,
        "receiptHandle": f"handle-{message_id}",
        "body": text,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1714557600000",
            "SenderId": "AIDAEVENTBRIDGE",
            "ApproximateFirstReceiveTimestamp": "1714557600001",
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(text.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{region}:{account}:ecr-backup-EventQueue",
        "awsRegion": region,
    }
