"""One DynamoDB table's plumbing: gets, puts, batches and queries, their errors translated.

Throttled batch items come back unprocessed and are sent again after a short backoff;
every other failure becomes one of our errors (IndexMissingError for a missing table).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from ecr_backup.awserrors import error_code, http_status, translate
from ecr_backup.errors import EcrBackupError, IndexMissingError, IndexStoreError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Item = dict[str, Any]


def text_attr(value: str) -> dict[str, str]:
    return {"S": value}


def number_attr(value: int) -> dict[str, str]:
    return {"N": str(value)}


class DynamoTable:
    def __init__(self, table: str, *, client: DynamoDBClient) -> None:
        self.table = table
        self._db = client  # built by the composition root, with its timeouts and retries

    def _error(self, error: ClientError | BotoCoreError, what: str) -> EcrBackupError:
        return index_error(error, what, self.table, str(self._db.meta.region_name))

    @staticmethod
    def _key(pk: str, sk: str) -> Item:
        return {"pk": text_attr(pk), "sk": text_attr(sk)}

    def _get(self, pk: str, sk: str, *, what: str | None = None) -> Item | None:
        try:
            answer = self._db.get_item(
                TableName=self.table, Key=self._key(pk, sk), ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, what or f"read {pk}") from e
        return answer.get("Item")

    def _put(self, item: Item) -> None:
        try:
            self._db.put_item(TableName=self.table, Item=item)
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, f"write {item['pk']['S']}") from e

    def _put_if_absent(self, item: Item) -> None:
        try:
            self._db.put_item(
                TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
        except (ClientError, BotoCoreError) as e:
            if not condition_failed(e):
                raise self._error(e, f"write {item['pk']['S']}") from e

    def _batch_put(self, items: list[Item]) -> int:
        pending: list[Any] = [{"PutRequest": {"Item": item}} for item in items]
        attempt = 0
        while pending:
            try:
                answer = self._db.batch_write_item(RequestItems={self.table: pending})
            except (ClientError, BotoCoreError) as e:
                raise self._error(e, "batch write blobs") from e
            pending = list((answer.get("UnprocessedItems") or {}).get(self.table, []))
            if pending:
                # Throttled writes come back unprocessed: back off before sending them again.
                time.sleep(min(0.05 * 2**attempt, 2.0))
                attempt += 1
        return len(items)

    def _batch_get(self, keys: list[Item]) -> Iterator[Item]:
        pending: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
        attempt = 0
        while pending:
            try:
                answer = self._db.batch_get_item(RequestItems=pending)
            except (ClientError, BotoCoreError) as e:
                raise self._error(e, "batch read blobs") from e
            yield from answer.get("Responses", {}).get(self.table, [])
            pending = dict(answer.get("UnprocessedKeys") or {})
            if pending:
                # Throttled keys come back unprocessed: back off before asking again.
                time.sleep(min(0.05 * 2**attempt, 2.0))
                attempt += 1

    def _query(
        self,
        pk: str,
        *,
        begins_with: str | None = None,
        between: tuple[str, str] | None = None,
        newest_first: bool = False,
        limit: int | None = None,
    ) -> Iterator[Item]:
        condition = "pk = :pk"
        values: Item = {":pk": text_attr(pk)}
        if begins_with is not None:
            condition += " AND begins_with(sk, :prefix)"
            values[":prefix"] = text_attr(begins_with)
        if between is not None:
            condition += " AND sk BETWEEN :low AND :high"
            values[":low"], values[":high"] = text_attr(between[0]), text_attr(between[1])
        arguments: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": not newest_first,
            "ConsistentRead": True,
        }
        if limit is not None:
            arguments["Limit"] = limit
        returned = 0
        try:
            for page in self._db.get_paginator("query").paginate(**arguments):
                for item in page.get("Items", []):
                    yield item
                    returned += 1
                    if limit is not None and returned >= limit:
                        return
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, f"query {pk}") from e


def condition_failed(error: ClientError | BotoCoreError) -> bool:
    return error_code(error) == "ConditionalCheckFailedException"


def index_error(
    error: ClientError | BotoCoreError, what: str, table: str, region: str
) -> EcrBackupError:
    """One of our errors for DynamoDB's, naming the table and its region. The table being
    asked for in this region, the fix for a missing one makes it here (a table in another
    region is caught before: storage.index.DynamoIndex.check_location)."""
    if table not in what:
        what = f"{what} in table {table}"
    if error_code(error) == "ResourceNotFoundException":
        return IndexMissingError(
            f"{what}: index table {table} not found in {region}",
            code="ResourceNotFoundException",
            status=http_status(error),
            hint="create it with `ecr-backup setup` (or deploy template.yaml), then "
            "`ecr-backup rebuild-index` to fill it from the bucket",
        )
    return translate(error, what, IndexStoreError)
