"""The DynamoDB index: which blobs the bucket holds, which manifests are complete, and
every repository's pushes and tags over time. Every lookup is a Get, BatchGet or Query.

Items (pk / sk):
  BLOB#<digest>   / BLOB              a blob (or manifest bytes) durable in the bucket
  BLOB#<digest>   / MANIFEST          a manifest whose whole closure is durable
  SUBJECT#<digest>/ <digest>          a referrer (signature, SBOM) of the subject
  REPOS           / <repository>      the repositories we hold
  REPO#<repo>     / TAG#<tag>         a tag's latest state (newest event wins)
  REPO#<repo>     / HIST#<tag>#<time>#<digest>#<action>   every event of a tag ('@': untagged)
  REPO#<repo>     / IMAGE#<digest>    an image ever pushed to the repository
  INDEX           / LOCATION          the bucket, prefix, region and account this table indexes
  RUN#<job>       / <key>             a scheduled job's last run (storage.runs)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from ecr_backup.awserrors import error_code
from ecr_backup.errors import (
    ConfigurationError,
    IndexMissingError,
    ObjectBeingPrunedError,
)
from ecr_backup.model import (
    UNTAGGED,
    Action,
    ImageEvent,
    ManifestRecord,
    RepositoryState,
    TagState,
    format_time,
    parse_time,
)
from ecr_backup.oci.digest import Digest
from ecr_backup.settings import DYNAMO_BATCH_GET_LIMIT, DYNAMO_BATCH_WRITE_LIMIT
from ecr_backup.storage.dynamo import (
    DynamoTable,
    Item,
    condition_failed,
    number_attr,
    text_attr,
)
from ecr_backup.storage.ledger import Ledger, ObjectState, object_state
from ecr_backup.storage.schema import create_table_arguments

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class Location(NamedTuple):
    """Where the backup an index describes lives: bucket, prefix, the region of the bucket
    and its index, and the index's account. Region and account are None in records written
    before they were recorded (and in an expected location whose bucket was not found)."""

    bucket: str
    prefix: str
    region: str | None = None
    account: str | None = None

    @property
    def place(self) -> tuple[str, str]:
        """What makes two locations the same backup: bucket and prefix."""
        return self.bucket, self.prefix

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


# record_blob's update: a durable object, claimed (its tombstone cleared) as it is recorded.
_RECORD_BLOB = (
    "SET #size = :size, media_type = :type, claimed_at = :now, "
    "stored_at = if_not_exists(stored_at, :now) REMOVE tombstone_at"
)
TRANSACT_LIMIT = 100  # actions per TransactWriteItems
_TRANSACT_ATTEMPTS = 4


class StoredObject(NamedTuple):
    """An object a backup has just made durable, to record (DynamoIndex.complete)."""

    digest: Digest
    size: int
    media_type: str
    stored_at: datetime
    # Set for an object the backup created: the lock end its default retention gave it.
    lock_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class EventChanges:
    """Which index items recording a push would change (DynamoIndex.event_changes)."""

    history: bool  # the event's HIST# item is missing (and maybe its bucket record)
    repository: bool  # the REPOS item is missing
    image: bool  # the IMAGE# item needs the push's update
    tag: bool  # the TAG# item would move to this event

    @property
    def any(self) -> bool:
        return self.history or self.repository or self.image or self.tag


class DynamoIndex(DynamoTable):
    """`location`: where this process's backup lives. Given, every write first records it
    in a table that records none (once per process), and a table that indexes another
    place, or sits in another region than the one recorded, is refused before any write."""

    def __init__(
        self,
        table: str,
        *,
        client: DynamoDBClient,
        location: Location | None = None,
        account: Callable[[], str | None] = lambda: None,
    ) -> None:
        super().__init__(table, client=client)
        self.here = location
        self._account = account  # asked only when a location is first recorded
        self._claimed = False
        self._claiming = threading.Lock()
        self._complete_record: Location | None = None

    @property
    def region(self) -> str:
        return str(self._db.meta.region_name)

    @cached_property
    def ledger(self) -> Ledger:
        """The objects' lifecycle records in the same table, with the same client, and the
        same first-write check of the location."""
        return Ledger(self.table, client=self._db, before_write=self._before_write)

    # -- setup -----------------------------------------------------------------

    def create_if_missing(self) -> bool:
        """Create the table (with point-in-time recovery) and record its location."""
        created = self._create()
        if self.here is not None:
            self.claim_location()
        return created

    def _create(self) -> bool:
        try:
            self._db.create_table(**create_table_arguments(self.table))
        except (ClientError, BotoCoreError) as e:
            if error_code(e) == "ResourceInUseException":
                return False
            raise self._error(e, f"create table {self.table}") from e
        try:
            self._db.get_waiter("table_exists").wait(TableName=self.table)
            self._db.update_continuous_backups(
                TableName=self.table,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, f"enable point-in-time recovery on {self.table}") from e
        return True

    # -- what the table indexes ----------------------------------------------------

    def location(self) -> Location | None:
        """The location recorded in the table; None in a table not used yet (or made before
        locations were recorded). A complete record (region included) is read once per
        process: it never changes after that, and every command asks for it early."""
        if self._complete_record is not None:
            return self._complete_record
        item = self._get("INDEX", "LOCATION", what=f"read what table {self.table} indexes")
        if not item:
            return None

        def text(name: str) -> str | None:
            return item[name]["S"] if name in item else None

        found = Location(item["bucket"]["S"], item["prefix"]["S"], text("region"), text("account"))
        if found.region is not None:
            self._complete_record = found
        return found

    def check_location(self, here: Location | None = None) -> None:
        """Refuse to answer for `here` from a table that indexes another bucket or prefix,
        that sits in another region than the one it records, or that is missing from (or
        unrecorded in) the region `here` names while it is in another. IndexMissingError
        for a table missing where it belongs."""
        here = here or self.here
        if here is not None:
            self._check(here, self._recorded(here))

    def _recorded(self, here: Location) -> Location | None:
        try:
            return self.location()
        except IndexMissingError as e:
            if here.region and here.region != self.region:
                raise self._misplaced(here, found=False) from e
            raise

    def _check(self, here: Location, recorded: Location | None) -> None:
        if recorded is not None and recorded.place != here.place:
            raise ConfigurationError(
                f"index table {self.table} indexes {recorded}, not {here}",
                code="IndexLocationMismatch",
                hint="use that bucket and prefix, or another index table (ECR_BACKUP_TABLE)",
            )
        if recorded is not None and recorded.region:
            if recorded.region != self.region:
                raise self._misplaced(recorded, found=True)
        elif here.region and here.region != self.region:
            raise self._misplaced(here, found=True)

    def _misplaced(self, there: Location, *, found: bool) -> ConfigurationError:
        """The table asked for is not in the region of the backup it should index: name
        both places and send the person to the right region, never to a second index."""
        state = "is" if found else "not found"
        return ConfigurationError(
            f"index table {self.table} {state} in {self.region}; the backup {there} and "
            f"its index are in {there.region}",
            code="IndexRegionMismatch",
            hint=f"run with --region {there.region} (or AWS_REGION={there.region})",
        )

    def claim_location(self, here: Location | None = None) -> None:
        """Record `here` (by default `self.here`), with this table's region and account, in
        a table that records no location yet, or add them to an older record; then check
        it. Conditional writes: of two first backups to different places, one wins and one
        is refused. For `self.here`, once per process."""
        here = here or self.here
        if here is None:
            return
        with self._claiming:
            if here is self.here and self._claimed:
                return
            recorded = self._recorded(here)
            self._check(here, recorded)
            if recorded is None or recorded.region is None:
                self._record_location(here, upgrade=recorded is not None)
                self.check_location(here)
            self._claimed = self._claimed or here is self.here

    def _record_location(self, here: Location, *, upgrade: bool) -> None:
        account = self._account()
        fields = {"region": text_attr(self.region)}
        if account:
            fields["account"] = text_attr(account)
        if not upgrade:
            self._put_if_absent(
                {
                    **self._key("INDEX", "LOCATION"),
                    "bucket": text_attr(here.bucket),
                    "prefix": text_attr(here.prefix),
                    **fields,
                }
            )
            return
        # A record from before regions were recorded: add them, unless a racer already did.
        names = {f"#{name}": name for name in fields}
        values = {f":{name}": value for name, value in fields.items()}
        try:
            self._db.update_item(
                TableName=self.table,
                Key=self._key("INDEX", "LOCATION"),
                UpdateExpression="SET " + ", ".join(f"#{n} = :{n}" for n in fields),
                ConditionExpression="attribute_not_exists(#region)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except (ClientError, BotoCoreError) as e:
            if not condition_failed(e):
                raise self._error(e, f"record the region of table {self.table}") from e

    def _before_write(self) -> None:
        if self.here is not None and not self._claimed:
            self.claim_location()

    # -- blobs -----------------------------------------------------------------

    def stored_blobs(self, digests: Iterable[Digest]) -> set[Digest]:
        """Which of these blobs the index knows as stored: ceil(n/100) BatchGetItem calls."""
        return self._blob_items(digests, "BLOB")

    def _blob_items(self, digests: Iterable[Digest], sort_key: str) -> set[Digest]:
        wanted = sorted(set(digests))
        found: set[Digest] = set()
        for start in range(0, len(wanted), DYNAMO_BATCH_GET_LIMIT):
            batch = wanted[start : start + DYNAMO_BATCH_GET_LIMIT]
            keys = [self._key(f"BLOB#{d}", sort_key) for d in batch]
            for item in self._batch_get(keys):
                found.add(Digest.parse(item["pk"]["S"].removeprefix("BLOB#")))
        return found

    def object_states(self, digests: Iterable[Digest]) -> dict[Digest, ObjectState]:
        """What the index holds of these objects (size, lock end, tombstone, sweeping, and
        whether each is a complete manifest), in ceil(2n/100) BatchGetItem calls; an object
        the index does not hold is left out. Read, not claimed: a backup claims (writes)
        only what this shows tombstoned (backup.replicator)."""
        wanted = sorted(set(digests))
        keys = [self._key(f"BLOB#{d}", sk) for d in wanted for sk in ("BLOB", "MANIFEST")]
        blobs: dict[Digest, Item] = {}
        complete: set[Digest] = set()
        for start in range(0, len(keys), DYNAMO_BATCH_GET_LIMIT):
            for item in self._batch_get(keys[start : start + DYNAMO_BATCH_GET_LIMIT]):
                digest = Digest.parse(item["pk"]["S"].removeprefix("BLOB#"))
                if item["sk"]["S"] == "BLOB":
                    blobs[digest] = item
                else:
                    complete.add(digest)
        return {d: object_state(item, complete=d in complete) for d, item in blobs.items()}

    def record_blob(self, digest: Digest, size: int, media_type: str, stored_at: datetime) -> None:
        """Record a durable object, which claims it (storage.ledger): clears a prune
        tombstone; fails (retryable) while a prune deletes it."""
        self._before_write()
        try:
            self._db.update_item(
                TableName=self.table,
                Key=self._key(f"BLOB#{digest}", "BLOB"),
                UpdateExpression=_RECORD_BLOB,
                ConditionExpression="attribute_not_exists(sweeping)",
                ExpressionAttributeNames={"#size": "size"},  # SIZE is a reserved word
                ExpressionAttributeValues={
                    ":size": number_attr(size),
                    ":type": text_attr(media_type),
                    ":now": text_attr(format_time(stored_at)),
                },
            )
        except (ClientError, BotoCoreError) as e:
            if condition_failed(e):
                raise ObjectBeingPrunedError(digest) from e
            raise self._error(e, f"write BLOB#{digest}") from e

    def record_blobs(self, blobs: Iterable[tuple[Digest, int, str, datetime]]) -> int:
        """record_blob for many blobs (digest, size, media type, stored at) in BatchWriteItem
        calls of 25: rebuild-index writes every blob of the bucket. Returns how many."""
        self._before_write()
        written = 0
        batch: list[Item] = []
        for digest, size, media_type, stored_at in blobs:
            batch.append(
                {
                    **self._key(f"BLOB#{digest}", "BLOB"),
                    "size": number_attr(size),
                    "media_type": text_attr(media_type),
                    "stored_at": text_attr(format_time(stored_at)),
                }
            )
            if len(batch) == DYNAMO_BATCH_WRITE_LIMIT:
                written += self._batch_put(batch)
                batch = []
        if batch:
            written += self._batch_put(batch)
        return written

    def claim(self, digest: Digest, now: datetime) -> ObjectState | None:
        """A backup relies on an object (storage.ledger.Ledger.claim)."""
        return self.ledger.claim(digest, now)

    def blob_size(self, digest: Digest) -> int | None:
        item = self._get(f"BLOB#{digest}", "BLOB")
        return int(item["size"]["N"]) if item else None

    # -- manifests -------------------------------------------------------------

    def manifest(self, digest: Digest) -> ManifestRecord | None:
        """The record of a complete manifest, or None if it is not (yet) complete."""
        item = self._get(f"BLOB#{digest}", "MANIFEST")
        return _manifest_record(item) if item else None

    def complete_manifests(self, digests: Iterable[Digest]) -> set[Digest]:
        """Which of these manifests are complete: ceil(n/100) BatchGetItem calls."""
        return self._blob_items(digests, "MANIFEST")

    def mark_complete(self, record: ManifestRecord) -> None:
        self._before_write()
        referrer = self._referrer_item(record)
        if referrer is not None:
            self._put(referrer)
        self._put(self._manifest_item(record))

    def _manifest_item(self, record: ManifestRecord) -> Item:
        item: Item = {
            **self._key(f"BLOB#{record.digest}", "MANIFEST"),
            "media_type": text_attr(record.media_type),
            "size": number_attr(record.size),
            "total_size": number_attr(record.total_size),
            "completed_at": text_attr(format_time(record.completed_at)),
        }
        if record.artifact_type:
            item["artifact_type"] = text_attr(record.artifact_type)
        if record.subject:
            item["subject"] = text_attr(str(record.subject))
        return item

    def _referrer_item(self, record: ManifestRecord) -> Item | None:
        if record.subject is None:
            return None
        referrer: Item = {
            **self._key(f"SUBJECT#{record.subject}", str(record.digest)),
            "media_type": text_attr(record.media_type),
            "size": number_attr(record.size),
        }
        if record.artifact_type:
            referrer["artifact_type"] = text_attr(record.artifact_type)
        return referrer

    def complete(self, stored: Sequence[StoredObject], record: ManifestRecord) -> None:
        """record_blob for every object stored (the manifest's new blobs and its own bytes),
        then mark_complete, in TransactWriteItems: the last one marks the manifest complete
        with the final records, so the whole is one request for up to 97 new objects.
        Each record keeps record_blob's condition; ObjectBeingPrunedError (retryable), and
        none of that transaction's items written, while a prune deletes one of them. IAM
        checks each action as its PutItem or UpdateItem, which the role grants already
        (docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html)."""
        self._before_write()
        actions = [self._record_action(o) for o in stored]
        completion = [{"Put": {"TableName": self.table, "Item": self._manifest_item(record)}}]
        referrer = self._referrer_item(record)
        if referrer is not None:
            completion.append({"Put": {"TableName": self.table, "Item": referrer}})
        # Up to 100 actions per transaction: the completion goes with the last records.
        head = max(0, len(actions) - (TRANSACT_LIMIT - len(completion)))
        for start in range(0, head, TRANSACT_LIMIT):
            chunk = actions[start : min(start + TRANSACT_LIMIT, head)]
            self._transact(chunk, stored[start : start + len(chunk)])
        self._transact(actions[head:] + completion, stored[head:])

    def record_stored(self, stored: Sequence[StoredObject]) -> None:
        """record_blob for objects a backup stored before it failed, in transactions of 100:
        the event's next delivery does not copy them again."""
        self._before_write()
        for start in range(0, len(stored), TRANSACT_LIMIT):
            chunk = stored[start : start + TRANSACT_LIMIT]
            self._transact([self._record_action(o) for o in chunk], chunk)

    def _record_action(self, stored: StoredObject) -> dict[str, Any]:
        update, values = (
            _RECORD_BLOB,
            {
                ":size": number_attr(stored.size),
                ":type": text_attr(stored.media_type),
                ":now": text_attr(format_time(stored.stored_at)),
            },
        )
        if stored.lock_until is not None:
            # Never moves a recorded end (that only an extension does, storage.ledger).
            update = update.replace(
                " REMOVE", ", lock_until = if_not_exists(lock_until, :until) REMOVE"
            )
            values[":until"] = text_attr(format_time(stored.lock_until))
        return {
            "Update": {
                "TableName": self.table,
                "Key": self._key(f"BLOB#{stored.digest}", "BLOB"),
                "UpdateExpression": update,
                "ConditionExpression": "attribute_not_exists(sweeping)",
                "ExpressionAttributeNames": {"#size": "size"},
                "ExpressionAttributeValues": values,
            }
        }

    def _transact(self, actions: list[dict[str, Any]], stored: Sequence[StoredObject]) -> None:
        """One TransactWriteItems; a conflict with a concurrent transaction on the same
        items (another backup recording a shared blob) is tried again after a short pause."""
        for attempt in range(_TRANSACT_ATTEMPTS):
            try:
                self._db.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
                return
            except (ClientError, BotoCoreError) as e:
                reasons = _cancellation_reasons(e)
                for reason, item in zip(reasons, stored, strict=False):
                    if reason == "ConditionalCheckFailed":
                        raise ObjectBeingPrunedError(item.digest) from e
                if "TransactionConflict" in reasons and attempt + 1 < _TRANSACT_ATTEMPTS:
                    time.sleep(0.05 * 2**attempt)
                    continue
                error = self._error(e, f"record {len(actions)} objects and complete a manifest")
                if "TransactionConflict" in reasons:
                    error.retryable = True
                raise error from e

    def referrers(self, subject: Digest) -> list[ManifestRecord]:
        records = []
        for item in self._query(f"SUBJECT#{subject}"):
            found = self.manifest(Digest.parse(item["sk"]["S"]))
            if found:
                records.append(found)
        return records

    # -- repositories, tags, history ---------------------------------------------

    def event_changes(self, event: ImageEvent) -> EventChanges:
        """Which of the items a push's record_event writes would change (one BatchGetItem).
        A history item already there means the event was recorded, its bucket record too
        (the bucket's record is written first)."""
        repo_pk, when = f"REPO#{event.repository}", format_time(event.time)
        keys = {
            "history": self._key(repo_pk, _history_key(event, when)),
            "repository": self._key("REPOS", event.repository),
            "image": self._key(repo_pk, f"IMAGE#{event.digest}"),
        }
        if event.tag:
            keys["tag"] = self._key(repo_pk, f"TAG#{event.tag}")
        found = {(i["pk"]["S"], i["sk"]["S"]): i for i in self._batch_get(list(keys.values()))}
        items = {name: found.get((k["pk"]["S"], k["sk"]["S"])) for name, k in keys.items()}
        image, tag = items["image"], items.get("tag")
        return EventChanges(
            history=items["history"] is None,
            repository=items["repository"] is None,
            # What _image_pushed would change: a first push, a pruned image held again, a
            # deletion older than this push undone.
            image=image is None
            or "pruned_at" in image
            or ("gone" in image and image["gone"]["S"] < when),
            # What _advance_tag's put would change: it moves only to a newer event.
            tag=event.tag is not None
            and (
                tag is None
                or tag["time"]["S"] < when
                or (
                    tag["time"]["S"] == when
                    and (tag["digest"]["S"], tag["action"]["S"])
                    != (str(event.digest), str(event.action))
                )
            ),
        )

    def record_event(self, event: ImageEvent, changes: EventChanges | None = None) -> None:
        """Record a push or deletion; safe to replay and to apply out of order. Given what
        event_changes read, a push writes only the items that would change."""
        if changes is not None and event.action is not Action.PUSH:
            raise ValueError("event_changes describes pushes only")
        self._before_write()
        repo_pk = f"REPO#{event.repository}"
        when = format_time(event.time)
        history: Item = {
            **self._key(repo_pk, _history_key(event, when)),
            "digest": text_attr(str(event.digest)),
            "action": text_attr(str(event.action)),
            "time": text_attr(when),
        }
        for name, value in (
            ("media_type", event.media_type),
            ("source_account", event.source_account),
            ("source_region", event.source_region),
            ("event_id", event.event_id),
        ):
            if value:
                history[name] = text_attr(value)
        if changes is None:
            self._put(history)
            if event.action is Action.PUSH:
                self._put({**self._key("REPOS", event.repository)})
                self._image_pushed(repo_pk, event.digest, when)
            elif event.tag is None:
                self._image_gone(repo_pk, event.digest, when)
            if event.tag:
                self._advance_tag(repo_pk, event, when)
            return
        # Each item stands alone: a replay after a partial write reads which are missing
        # and writes those. (REPOS is written once per repository: no BatchWriteItem, which
        # the functions' roles are not granted, for that one request.)
        if changes.history:
            self._put(history)
        if changes.repository:
            self._put({**self._key("REPOS", event.repository)})
        if changes.image:
            self._image_pushed(repo_pk, event.digest, when)
        if changes.tag:
            self._advance_tag(repo_pk, event, when)

    def _image_pushed(self, repo_pk: str, digest: Digest, when: str) -> None:
        """IMAGE# keeps the first push time; a push newer than a recorded deletion brings
        the image back (reconcile then stops reporting it gone). A push is recorded only
        once its image is complete (manifest last), so it also ends a prune's `pruned_at`:
        the image is held again, and retention must judge it again."""
        key = self._key(repo_pk, f"IMAGE#{digest}")
        try:
            answer = self._db.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="SET #t = if_not_exists(#t, :t) REMOVE pruned_at",
                ExpressionAttributeNames={"#t": "time"},
                ExpressionAttributeValues={":t": text_attr(when)},
                ReturnValues="ALL_NEW",
            )
            gone = answer.get("Attributes", {}).get("gone")
            if gone and gone["S"] < when:
                self._db.update_item(
                    TableName=self.table,
                    Key=key,
                    UpdateExpression="REMOVE gone",
                    ConditionExpression="gone < :t",
                    ExpressionAttributeValues={":t": text_attr(when)},
                )
        except (ClientError, BotoCoreError) as e:
            if not condition_failed(e):
                raise self._error(e, f"record image {digest}") from e

    def _image_gone(self, repo_pk: str, digest: Digest, when: str) -> None:
        """Mark an image the index holds as deleted from the source (newest deletion wins)."""
        try:
            self._db.update_item(
                TableName=self.table,
                Key=self._key(repo_pk, f"IMAGE#{digest}"),
                UpdateExpression="SET gone = :t",
                ConditionExpression="attribute_exists(pk) AND "
                "(attribute_not_exists(gone) OR gone < :t)",
                ExpressionAttributeValues={":t": text_attr(when)},
            )
        except (ClientError, BotoCoreError) as e:
            if not condition_failed(e):
                raise self._error(e, f"record deletion of {digest}") from e

    def _advance_tag(self, repo_pk: str, event: ImageEvent, when: str) -> None:
        # Events arrive out of order: the tag moves only to a newer event.
        try:
            self._db.put_item(
                TableName=self.table,
                Item={
                    **self._key(repo_pk, f"TAG#{event.tag}"),
                    "digest": text_attr(str(event.digest)),
                    "action": text_attr(str(event.action)),
                    "time": text_attr(when),
                },
                ConditionExpression="attribute_not_exists(pk) OR #t <= :t",
                ExpressionAttributeNames={"#t": "time"},
                ExpressionAttributeValues={":t": text_attr(when)},
            )
        except (ClientError, BotoCoreError) as e:
            if not condition_failed(e):
                raise self._error(e, f"update tag {event.repository}:{event.tag}") from e

    def repositories(self) -> list[str]:
        return [item["sk"]["S"] for item in self._query("REPOS")]

    def tags(self, repository: str) -> list[TagState]:
        """Each tag's current state; removed tags are included with action DELETE."""
        return [
            _tag_state(repository, item)
            for item in self._query(f"REPO#{repository}", begins_with="TAG#")
        ]

    def repository_state(self, repository: str) -> RepositoryState:
        """tags(), image_states() and the images prune removed, in one Query: IMAGE# and
        TAG# items sort after every HIST# one, and '~' after every tag character."""
        state = RepositoryState()
        for item in self._query(f"REPO#{repository}", between=("IMAGE#", "TAG#~")):
            sort_key = item["sk"]["S"]
            if sort_key.startswith("TAG#"):
                tag = _tag_state(repository, item)
                state.tags[tag.tag] = tag
            elif sort_key.startswith("IMAGE#"):
                digest = Digest.parse(sort_key.removeprefix("IMAGE#"))
                state.images[digest] = "gone" in item
                if "pruned_at" in item:
                    state.pruned.add(digest)
        return state

    def tag(self, repository: str, tag: str) -> TagState | None:
        """One tag's latest state (a GetItem), or None when the tag was never seen."""
        item = self._get(f"REPO#{repository}", f"TAG#{tag}")
        return _tag_state(repository, item) if item is not None else None

    def history(self, repository: str, tag: str | None) -> list[ImageEvent]:
        """Every event of a tag (None: untagged pushes), oldest first."""
        prefix = f"HIST#{tag or UNTAGGED}#"
        return [
            _event(repository, tag, item)
            for item in self._query(f"REPO#{repository}", begins_with=prefix)
        ]

    def tag_at(self, repository: str, tag: str, at: datetime) -> ImageEvent | None:
        """The tag's last event at or before `at` (a DELETE means it was removed then)."""
        low = f"HIST#{tag}#"
        high = f"HIST#{tag}#{format_time(at)}#~"  # '~' sorts after every digest character
        items = list(
            self._query(f"REPO#{repository}", between=(low, high), newest_first=True, limit=1)
        )
        return _event(repository, tag, items[0]) if items else None

    def images(self, repository: str) -> list[Digest]:
        """Images ever pushed to the repository and still held (prune sets pruned_at)."""
        return [
            Digest.parse(item["sk"]["S"].removeprefix("IMAGE#"))
            for item in self._query(f"REPO#{repository}", begins_with="IMAGE#")
            if "pruned_at" not in item
        ]

    def image_states(self, repository: str) -> dict[Digest, bool]:
        """Every image ever pushed to the repository -> whether it is recorded as deleted."""
        return {
            Digest.parse(item["sk"]["S"].removeprefix("IMAGE#")): "gone" in item
            for item in self._query(f"REPO#{repository}", begins_with="IMAGE#")
        }

    def newest_push(self, repository: str) -> ImageEvent | None:
        """The repository's newest push the index records (one Query): the newer of the
        newest first push of an image (IMAGE#) and the newest push of a tag (TAG#).
        A push is recorded only once its image is complete, so it is backed up."""
        newest: ImageEvent | None = None
        for item in self._query(f"REPO#{repository}", between=("IMAGE#", "TAG#~")):
            sort_key = item["sk"]["S"]
            if sort_key.startswith("TAG#"):
                if item["action"]["S"] != Action.PUSH:
                    continue
                digest, tag = Digest.parse(item["digest"]["S"]), sort_key.removeprefix("TAG#")
            else:
                digest, tag = Digest.parse(sort_key.removeprefix("IMAGE#")), None
            time = parse_time(item["time"]["S"])
            # At the same time, the tagged push names the image better.
            if newest is None or (time, tag is not None) > (newest.time, newest.tag is not None):
                newest = ImageEvent(repository, digest, Action.PUSH, time, tag)
        return newest


def _cancellation_reasons(error: ClientError | BotoCoreError) -> list[str]:
    """The per-action codes of a cancelled transaction, in the order of its actions."""
    if not isinstance(error, ClientError):
        return []
    reasons = error.response.get("CancellationReasons") or []
    return [str(r.get("Code", "None")) for r in reasons]


def _history_key(event: ImageEvent, when: str) -> str:
    return f"HIST#{event.tag or UNTAGGED}#{when}#{event.digest}#{event.action}"


def _tag_state(repository: str, item: Item) -> TagState:
    return TagState(
        repository=repository,
        tag=item["sk"]["S"].removeprefix("TAG#"),
        digest=Digest.parse(item["digest"]["S"]),
        time=parse_time(item["time"]["S"]),
        action=Action(item["action"]["S"]),
    )


def _event(repository: str, tag: str | None, item: Item) -> ImageEvent:
    def text(name: str) -> str | None:
        value = item.get(name)
        return value["S"] if value else None

    return ImageEvent(
        repository=repository,
        digest=Digest.parse(item["digest"]["S"]),
        action=Action(item["action"]["S"]),
        time=parse_time(item["time"]["S"]),
        tag=tag,
        media_type=text("media_type"),
        source_account=text("source_account"),
        source_region=text("source_region"),
        event_id=text("event_id"),
    )


def _manifest_record(item: Item) -> ManifestRecord:
    subject = item.get("subject")
    artifact_type = item.get("artifact_type")
    return ManifestRecord(
        digest=Digest.parse(item["pk"]["S"].removeprefix("BLOB#")),
        media_type=item["media_type"]["S"],
        size=int(item["size"]["N"]),
        total_size=int(item["total_size"]["N"]),
        completed_at=parse_time(item["completed_at"]["S"]),
        subject=Digest.parse(subject["S"]) if subject else None,
        artifact_type=artifact_type["S"] if artifact_type else None,
    )


def _refuse_other(table: str, recorded: Location | None, here: Location) -> None:
    """Refuse to answer for `here` from a table that indexes another bucket or prefix."""
    if recorded is not None and recorded != here:
        raise ConfigurationError(
            f"index table {table} indexes {recorded}, not {here}",
            code="IndexLocationMismatch",
            hint="use that bucket and prefix, or another index table (ECR_BACKUP_TABLE)",
        )
