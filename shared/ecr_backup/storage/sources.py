"""The source registries (account, region) whose ECR events reached the backup, for a
reconcile that finds its accounts from events (ReconcileAccounts=events) and for
`ecr-backup coverage`, which names a registry no reconcile has covered yet.

  SOURCE / <account>/<region>    first_seen, last_noted

One UpdateItem per registry per process: a warm function notes each registry once, so
the write costs nothing per event, and it is idempotent (first_seen is set only once).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from ecr_backup.errors import DataError
from ecr_backup.model import format_time, parse_time
from ecr_backup.storage.dynamo import DynamoTable, text_attr

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

SOURCE_PK = "SOURCE"


@dataclass(frozen=True, order=True)
class SeenSource:
    account: str
    region: str
    first_seen: datetime


class SourceLog(DynamoTable):
    def __init__(self, table: str, *, client: DynamoDBClient) -> None:
        super().__init__(table, client=client)
        self._noted: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def note(self, account: str, region: str, time: datetime) -> bool:
        """Record that the registry sent an event; False when this process already did."""
        with self._lock:
            if (account, region) in self._noted:
                return False
        try:
            self._db.update_item(
                TableName=self.table,
                Key=self._key(SOURCE_PK, f"{account}/{region}"),
                UpdateExpression="SET first_seen = if_not_exists(first_seen, :t), last_noted = :t",
                ExpressionAttributeValues={":t": text_attr(format_time(time))},
            )
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, f"note source registry {account}/{region}") from e
        with self._lock:
            self._noted.add((account, region))
        return True

    def seen(self) -> list[SeenSource]:
        found = []
        for item in self._query(SOURCE_PK):
            key = item["sk"]["S"]
            account, _, region = key.partition("/")
            try:
                found.append(SeenSource(account, region, parse_time(item["first_seen"]["S"])))
            except (KeyError, ValueError) as e:
                raise DataError(f"unreadable source record {key!r}: {e}") from e
        return sorted(found)
