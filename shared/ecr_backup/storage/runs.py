"""The last run of each scheduled job, kept in the index table for `ecr-backup status`.

Nothing else records how the last maintenance pass, prune or reconcile went where a
command can read it: their metrics and logs need the stack's CloudWatch, and a bucket-only
setup has none. Each run overwrites its own small item (a newer run's item is never
replaced by an older one):

  RUN#<job> / <key>    time, summary (a JSON object, the job's own fields)

`key` is "last" for maintain and prune, "<account>/<region>/<repository>" for reconcile,
which runs one repository at a time. `rebuild-index` does not restore these items: the
next runs write them again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ecr_backup.errors import DataError
from ecr_backup.model import format_time, parse_time
from ecr_backup.storage.dynamo import DynamoTable, condition_failed, text_attr

RUN_PREFIX = "RUN#"


@dataclass(frozen=True)
class RunRecord:
    job: str
    key: str
    time: datetime
    summary: dict[str, Any]


class RunLog(DynamoTable):
    def record(self, job: str, key: str, time: datetime, summary: Mapping[str, object]) -> None:
        """Keep this run's summary unless a newer run of the same job and key is recorded.
        An UpdateItem: the maintain role may update items but not put them."""
        try:
            self._db.update_item(
                TableName=self.table,
                Key=self._key(f"{RUN_PREFIX}{job}", key),
                UpdateExpression="SET #t = :t, summary = :s",
                ConditionExpression="attribute_not_exists(#t) OR #t <= :t",
                ExpressionAttributeNames={"#t": "time"},
                ExpressionAttributeValues={
                    ":t": text_attr(format_time(time)),
                    ":s": text_attr(json.dumps(dict(summary), sort_keys=True)),
                },
            )
        except (ClientError, BotoCoreError) as e:
            if not condition_failed(e):
                raise self._error(e, f"record the {job} run") from e

    def runs(self, job: str) -> list[RunRecord]:
        """Every recorded run of `job` (one per key), in key order."""
        return [self._record(job, item) for item in self._query(f"{RUN_PREFIX}{job}")]

    @staticmethod
    def _record(job: str, item: dict[str, Any]) -> RunRecord:
        try:
            summary = json.loads(item["summary"]["S"])
            time = parse_time(item["time"]["S"])
        except (KeyError, ValueError) as e:
            raise DataError(f"unreadable {job} run record {item['sk']['S']!r}: {e}") from e
        if not isinstance(summary, dict):
            raise DataError(f"unreadable {job} run record {item['sk']['S']!r}: not an object")
        return RunRecord(job, item["sk"]["S"], time, summary)
