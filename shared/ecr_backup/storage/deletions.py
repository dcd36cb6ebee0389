"""The index's deletion counts: each image deletion the backup records, once per account and
once per repository, keyed by the ten-minute slot it fell in (catalog/surges.py reads them).

Items (pk / sk):
  DELETIONS#<account>          / <slot>#<repository>#<digest>
  DELETIONS#<account>#<repo>   / <slot>#<digest>

A replayed event writes the same keys: the conditional put of the first item tells a new
deletion from a replay, so a replay counts nothing and writes nothing.
"""

from __future__ import annotations

from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError

from ecr_backup.model import format_time
from ecr_backup.oci.digest import Digest
from ecr_backup.storage.dynamo import DynamoTable, condition_failed, text_attr


class DynamoDeletionLog(DynamoTable):
    def note_deletion(self, account: str, repository: str, digest: Digest, slot: datetime) -> bool:
        """Count one deletion in its slot; False when this one was counted already."""
        when = format_time(slot)
        first = {**self._key(f"DELETIONS#{account}", f"{when}#{repository}#{digest}")}
        try:
            self._db.put_item(
                TableName=self.table, Item=first, ConditionExpression="attribute_not_exists(pk)"
            )
        except (ClientError, BotoCoreError) as e:
            if condition_failed(e):
                return False
            raise self._error(e, f"count the deletion of {repository}@{digest}") from e
        # Written after the account's item: a crash between the two undercounts the
        # repository by one, never double-counts a replay.
        self._put({**self._key(f"DELETIONS#{account}#{repository}", f"{when}#{digest}")})
        return True

    def count_deletions(
        self, account: str, repository: str | None, start: datetime, end: datetime
    ) -> int:
        """Deletions counted in the slots from `start` (included) to `end` (excluded)."""
        pk = f"DELETIONS#{account}" if repository is None else f"DELETIONS#{account}#{repository}"
        # Keys are "<slot>#...": a key of the slot at `end` sorts after format_time(end),
        # so BETWEEN takes the slots from `start` up to, not including, `end`.
        low, high = format_time(start), format_time(end)
        arguments = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
            "ExpressionAttributeValues": {
                ":pk": text_attr(pk),
                ":low": text_attr(low),
                ":high": text_attr(high),
            },
            "Select": "COUNT",
        }
        total = 0
        try:
            for page in self._db.get_paginator("query").paginate(**arguments):  # type: ignore[arg-type]
                total += int(page.get("Count", 0))
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, f"count deletions of {pk}") from e
        return total
