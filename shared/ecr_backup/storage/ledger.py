"""The index's bookkeeping for locks and prune, on the same BLOB# items the backup writes.

Attributes of `BLOB#<digest> / BLOB` used here (docs/deploy.md, "Retention"):
  lock_until    the object's retain-until as last read (HeadObject) or set by us
  claimed_at    when a backup last relied on the object (set with the tombstone removed)
  tombstone_at  prune found the object unreachable then (phase one)
  sweeping      prune decided to delete it (phase two); claims fail while it is set

Holds are items `HOLDS / <repository>@<digest>`; a pruned image keeps its push history and
gets `pruned_at` on its `REPO#<repo> / IMAGE#<digest>` item.

Every transition is one conditional write, so that a backup and a prune racing on the
same object always agree on who won (see ecr_backup.maintenance.prune for the argument).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from ecr_backup.awserrors import error_code
from ecr_backup.errors import EcrBackupError, ObjectBeingPrunedError
from ecr_backup.model import format_time, parse_time
from ecr_backup.oci.digest import Digest
from ecr_backup.storage.dynamo import Item, index_error, text_attr

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_FAILED = "ConditionalCheckFailedException"


@dataclass(frozen=True, slots=True)
class ObjectState:
    """What the index holds about one object under blobs/."""

    digest: Digest
    size: int
    media_type: str
    stored_at: datetime
    complete: bool = False  # a manifest whose closure the index holds as complete
    lock_until: datetime | None = None
    claimed_at: datetime | None = None
    tombstone_at: datetime | None = None
    sweeping: str | None = None


@dataclass(frozen=True, slots=True)
class Hold:
    repository: str
    digest: Digest
    time: datetime
    reason: str | None = None
    objects: int | None = None  # objects put on legal hold (None: held before this was kept)


def _key(digest: Digest, sk: str = "BLOB") -> Item:
    return {"pk": text_attr(f"BLOB#{digest}"), "sk": text_attr(sk)}


def _time(item: Item, name: str) -> datetime | None:
    value = item.get(name)
    return parse_time(value["S"]) if value else None


class Ledger:
    def __init__(
        self,
        table: str,
        *,
        client: DynamoDBClient | None = None,
        before_write: Callable[[], None] = lambda: None,
    ) -> None:
        self.table = table
        # The index's location check (storage.index): no write reaches a misplaced table.
        self._before_write = before_write
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self._db = client

    def _error(self, error: ClientError | BotoCoreError, what: str) -> EcrBackupError:
        return index_error(error, what, self.table, str(self._db.meta.region_name))

    # -- backup side ---------------------------------------------------------------

    def claim(self, digest: Digest, now: datetime) -> ObjectState | None:
        """A backup relies on this object: clear any tombstone and note the time.

        None when the index no longer holds the object (prune deleted it: copy it again);
        ObjectBeingPrunedError (retryable) while a prune is deleting it.
        """
        answer = self._conditional(
            f"claim {digest}",
            self._db.update_item,
            TableName=self.table,
            Key=_key(digest),
            UpdateExpression="SET claimed_at = :now REMOVE tombstone_at",
            ConditionExpression="attribute_exists(pk) AND attribute_not_exists(sweeping)",
            ExpressionAttributeValues={":now": text_attr(format_time(now))},
            ReturnValues="ALL_NEW",
        )
        if answer is not None:
            return object_state(answer["Attributes"])
        if self._get(digest) is None:
            return None
        raise ObjectBeingPrunedError(digest)

    def record_lock(self, digest: Digest, until: datetime) -> None:
        """Remember a lock's end; only ever moves it later (concurrent writers agree)."""
        self._update(
            digest,
            "SET lock_until = :until",
            "attribute_exists(pk) AND (attribute_not_exists(lock_until) OR lock_until < :until)",
            {":until": text_attr(format_time(until))},
            what=f"record the lock of {digest}",
        )

    # -- prune side ----------------------------------------------------------------

    def objects(self) -> dict[Digest, ObjectState]:
        """Every object the index holds, with its lock and prune state (a table Scan)."""
        blobs: dict[Digest, Item] = {}
        complete: set[Digest] = set()
        for item in self._scan("BLOB#"):
            digest = Digest.parse(item["pk"]["S"].removeprefix("BLOB#"))
            if item["sk"]["S"] == "BLOB":
                blobs[digest] = item
            elif item["sk"]["S"] == "MANIFEST":
                complete.add(digest)
        return {d: object_state(item, complete=d in complete) for d, item in blobs.items()}

    def complete_manifests(self) -> set[Digest]:
        return {
            Digest.parse(item["pk"]["S"].removeprefix("BLOB#"))
            for item in self._scan("BLOB#")
            if item["sk"]["S"] == "MANIFEST"
        }

    def tombstone(self, digest: Digest, now: datetime, claimed_before: datetime) -> bool:
        """Phase one: mark an unreachable object, unless a backup relied on it recently."""
        return self._update(
            digest,
            "SET tombstone_at = :now",
            "attribute_exists(pk) AND attribute_not_exists(tombstone_at) "
            "AND attribute_not_exists(sweeping) "
            "AND (attribute_not_exists(claimed_at) OR claimed_at < :cutoff)",
            {
                ":now": text_attr(format_time(now)),
                ":cutoff": text_attr(format_time(claimed_before)),
            },
            what=f"tombstone {digest}",
        )

    def start_sweep(self, digest: Digest, tombstone_at: datetime, token: str) -> bool:
        """Phase two: claim the object for deletion, if the tombstone we saw is still there
        (a backup that relied on it since removed it, and then this fails)."""
        return self._update(
            digest,
            "SET sweeping = :token",
            "tombstone_at = :seen AND attribute_not_exists(sweeping)",
            {":token": text_attr(token), ":seen": text_attr(format_time(tombstone_at))},
            what=f"start deleting {digest}",
        )

    def abandon_sweep(self, digest: Digest, token: str) -> None:
        """The object turned out to be needed: give it back as if never marked."""
        self._update(
            digest,
            "REMOVE sweeping, tombstone_at",
            "sweeping = :token",
            {":token": text_attr(token)},
            what=f"keep {digest}",
        )

    def uncomplete(self, digest: Digest) -> None:
        """Forget that a manifest is complete: done before anything under it is deleted."""
        try:
            self._before_write()
            self._db.delete_item(TableName=self.table, Key=_key(digest, "MANIFEST"))
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, f"forget manifest {digest}") from e

    def finish_sweep(self, digest: Digest, token: str) -> None:
        """The object is delete-marked: the index stops holding it."""
        self._conditional(
            f"forget {digest}",
            self._db.delete_item,
            TableName=self.table,
            Key=_key(digest),
            ConditionExpression="sweeping = :token",
            ExpressionAttributeValues={":token": text_attr(token)},
        )

    def mark_pruned(self, repository: str, digest: Digest, now: datetime) -> None:
        """The image's manifest is gone; its push history stays (audit, rebuild-index)."""
        self._conditional(
            f"mark {repository}@{digest} pruned",
            self._db.update_item,
            TableName=self.table,
            Key={"pk": text_attr(f"REPO#{repository}"), "sk": text_attr(f"IMAGE#{digest}")},
            UpdateExpression="SET pruned_at = :now",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":now": text_attr(format_time(now))},
        )

    def take_prune_lease(self, owner: str, now: datetime, until: datetime) -> bool:
        """One prune at a time: False while another run's lease has not expired."""
        taken = self._conditional(
            "take the prune lease",
            self._db.put_item,
            TableName=self.table,
            Item={
                "pk": text_attr("PRUNE"),
                "sk": text_attr("LEASE"),
                "owner": text_attr(owner),
                "until": text_attr(format_time(until)),
            },
            ConditionExpression="attribute_not_exists(pk) OR #until < :now",
            ExpressionAttributeNames={"#until": "until"},
            ExpressionAttributeValues={":now": text_attr(format_time(now))},
        )
        return taken is not None

    def drop_prune_lease(self, owner: str) -> None:
        self._conditional(
            "drop the prune lease",
            self._db.delete_item,
            TableName=self.table,
            Key={"pk": text_attr("PRUNE"), "sk": text_attr("LEASE")},
            ConditionExpression="#owner = :owner",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={":owner": text_attr(owner)},
        )

    # -- holds -----------------------------------------------------------------------

    def add_hold(self, hold: Hold) -> None:
        item: Item = {
            "pk": text_attr("HOLDS"),
            "sk": text_attr(f"{hold.repository}@{hold.digest}"),
            "time": text_attr(format_time(hold.time)),
        }
        if hold.reason:
            item["reason"] = text_attr(hold.reason)
        if hold.objects is not None:
            item["objects"] = {"N": str(hold.objects)}
        self._put(item)

    def remove_hold(self, repository: str, digest: Digest) -> bool:
        """Forget a hold; False when there was none."""
        self._before_write()
        try:
            answer = self._db.delete_item(
                TableName=self.table,
                Key={"pk": text_attr("HOLDS"), "sk": text_attr(f"{repository}@{digest}")},
                ReturnValues="ALL_OLD",
            )
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, f"release {repository}@{digest}") from e
        return "Attributes" in answer

    def holds(self) -> list[Hold]:
        answer = []
        try:
            pages = self._db.get_paginator("query").paginate(
                TableName=self.table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": text_attr("HOLDS")},
                ConsistentRead=True,
            )
            for page in pages:
                for item in page.get("Items", []):
                    repository, digest = item["sk"]["S"].rsplit("@", 1)
                    reason, objects = item.get("reason"), item.get("objects")
                    answer.append(
                        Hold(
                            repository,
                            Digest.parse(digest),
                            parse_time(item["time"]["S"]),
                            reason["S"] if reason else None,
                            int(objects["N"]) if objects else None,
                        )
                    )
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, "list holds") from e
        return answer

    # -- plumbing ----------------------------------------------------------------------

    def _get(self, digest: Digest) -> Item | None:
        try:
            answer = self._db.get_item(TableName=self.table, Key=_key(digest), ConsistentRead=True)
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, f"read {digest}") from e
        return answer.get("Item")

    def _put(self, item: Item) -> None:
        self._before_write()
        try:
            self._db.put_item(TableName=self.table, Item=item)
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, f"write {item['pk']['S']}") from e

    def _update(
        self, digest: Digest, update: str, condition: str, values: Item, *, what: str
    ) -> bool:
        """One conditional update; False when the condition did not hold."""
        answer = self._conditional(
            what,
            self._db.update_item,
            TableName=self.table,
            Key=_key(digest),
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
        )
        return answer is not None

    def _conditional(self, what: str, call: Callable[..., Any], **arguments: Any) -> Any:
        """A conditional write: its answer, or None when its condition did not hold."""
        self._before_write()
        try:
            return call(**arguments)
        except ClientError as e:
            if error_code(e) == _FAILED:
                return None
            raise self._error(e, what) from e
        except BotoCoreError as e:
            raise self._error(e, what) from e

    def _scan(self, prefix: str) -> Iterator[Item]:
        try:
            pages = self._db.get_paginator("scan").paginate(
                TableName=self.table,
                FilterExpression="begins_with(pk, :prefix)",
                ExpressionAttributeValues={":prefix": text_attr(prefix)},
                ConsistentRead=True,
            )
            for page in pages:
                yield from page.get("Items", [])
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, f"scan {self.table}") from e


def object_state(item: Item, *, complete: bool = False) -> ObjectState:
    """An ObjectState from a `BLOB#<digest> / BLOB` item."""
    sweeping = item.get("sweeping")
    stored_at = _time(item, "stored_at")
    return ObjectState(
        digest=Digest.parse(item["pk"]["S"].removeprefix("BLOB#")),
        size=int(item["size"]["N"]) if "size" in item else 0,
        media_type=item["media_type"]["S"] if "media_type" in item else "",
        stored_at=stored_at or parse_time("1970-01-01T00:00:00Z"),
        complete=complete,
        lock_until=_time(item, "lock_until"),
        claimed_at=_time(item, "claimed_at"),
        tombstone_at=_time(item, "tombstone_at"),
        sweeping=sweeping["S"] if sweeping else None,
    )
