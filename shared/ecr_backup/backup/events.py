"""ECR's EventBridge events, validated and turned into the changes the backup acts on.

The detail-types and their fields are those of the Amazon ECR User Guide, "Amazon ECR events
and EventBridge" (https://docs.aws.amazon.com/AmazonECR/latest/userguide/ecr-eventbridge.html):

- "ECR Image Action": PUSH and DELETE of an image; UPDATE_STORAGE_CLASS when it is archived
  (target-storage-class ARCHIVE) or restored (STANDARD, with last-activated-at);
- "ECR Referrer Action": the same for a referrer (a signature, SBOM or attestation whose
  manifest names its subject); ECR deletes a subject's referrers after the subject;
- "ECR Replication Action": REPLICATE, in the account and region the image was copied to
  (source-account and source-region name where it came from);
- "ECR Pull Through Cache Action": sync-status SUCCESS when a cache rule stored an upstream
  image (no action-type, no result).

Only result / sync-status SUCCESS is acted on; failures and other action types are ignored.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from ecr_backup.errors import InvalidInputError
from ecr_backup.model import Action, ImageEvent, StorageClass, StorageClassChange, format_time
from ecr_backup.oci.digest import Digest

ECR_SOURCE = "aws.ecr"
IMAGE_ACTION = "ECR Image Action"
REFERRER_ACTION = "ECR Referrer Action"
REPLICATION_ACTION = "ECR Replication Action"
PULL_THROUGH_CACHE_ACTION = "ECR Pull Through Cache Action"
SUCCESS = "SUCCESS"
UPDATE_STORAGE_CLASS = "UPDATE_STORAGE_CLASS"
REPLICATE = "REPLICATE"

_D = TypeVar("_D", bound=BaseModel)
_MODEL = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class EventKind(StrEnum):
    """Which of ECR's detail-types an event is; the word logs and --json use."""

    IMAGE = "image"
    REFERRER = "referrer"
    REPLICATION = "replication"
    PULL_THROUGH_CACHE = "pull-through-cache"


DETAIL_TYPES: dict[str, EventKind] = {
    IMAGE_ACTION: EventKind.IMAGE,
    REFERRER_ACTION: EventKind.REFERRER,
    REPLICATION_ACTION: EventKind.REPLICATION,
    PULL_THROUGH_CACHE_ACTION: EventKind.PULL_THROUGH_CACHE,
}


class _ImageActionDetail(BaseModel):
    """What the action events share: the outcome, the action and the image acted on."""

    model_config = _MODEL

    result: str
    action_type: str = Field(alias="action-type")
    repository_name: str = Field(alias="repository-name")
    image_digest: str | None = Field(default=None, alias="image-digest")
    image_tag: str | None = Field(default=None, alias="image-tag")


class EcrActionDetail(_ImageActionDetail):
    """The detail of "ECR Image Action" and "ECR Referrer Action" (one shape for both)."""

    manifest_media_type: str | None = Field(default=None, alias="manifest-media-type")
    artifact_media_type: str | None = Field(default=None, alias="artifact-media-type")
    target_storage_class: str | None = Field(default=None, alias="target-storage-class")


class EcrReplicationDetail(_ImageActionDetail):
    source_account: str | None = Field(default=None, alias="source-account")
    source_region: str | None = Field(default=None, alias="source-region")


class EcrPullThroughCacheDetail(BaseModel):
    model_config = _MODEL

    sync_status: str = Field(alias="sync-status")
    repository_name: str = Field(alias="repository-name")
    image_digest: str | None = Field(default=None, alias="image-digest")
    image_tag: str | None = Field(default=None, alias="image-tag")
    upstream_registry_url: str | None = Field(default=None, alias="upstream-registry-url")


@dataclass(frozen=True)
class EcrChange:
    """What one ECR event asks of the backup: an image pushed or deleted (`image`), or an
    image moved between storage classes (`storage`); exactly one of the two is set."""

    kind: EventKind
    image: ImageEvent | None = None
    storage: StorageClassChange | None = None
    origin: str | None = None  # replication: "account/region"; pull-through: the upstream


class EcrEvent(BaseModel):
    """The EventBridge envelope; detail is checked only for the detail-types acted on."""

    model_config = _MODEL

    id: str
    source: str
    detail_type: str = Field(alias="detail-type")
    account: str
    region: str
    time: AwareDatetime
    detail: dict[str, Any]

    @property
    def kind(self) -> EventKind | None:
        return DETAIL_TYPES.get(self.detail_type) if self.source == ECR_SOURCE else None

    def change(self) -> EcrChange | None:
        """The change this event reports, or None when it is not one to act on."""
        kind = self.kind
        if kind is EventKind.IMAGE or kind is EventKind.REFERRER:
            return self._action(kind, self._detail(EcrActionDetail))
        if kind is EventKind.REPLICATION:
            replicated = self._detail(EcrReplicationDetail)
            if replicated.result != SUCCESS or replicated.action_type != REPLICATE:
                return None
            origin = f"{replicated.source_account or '?'}/{replicated.source_region or '?'}"
            image = self._image(
                Action.PUSH,
                replicated.repository_name,
                replicated.image_digest,
                replicated.image_tag,
            )
            return EcrChange(kind, image=image, origin=origin)
        if kind is EventKind.PULL_THROUGH_CACHE:
            cached = self._detail(EcrPullThroughCacheDetail)
            if cached.sync_status != SUCCESS:
                return None
            image = self._image(
                Action.PUSH, cached.repository_name, cached.image_digest, cached.image_tag
            )
            return EcrChange(kind, image=image, origin=cached.upstream_registry_url)
        return None

    def image_event(self) -> ImageEvent | None:
        """The push or deletion this event reports, or None when it reports none."""
        change = self.change()
        return change.image if change else None

    def _detail(self, model: type[_D]) -> _D:
        try:
            return model.model_validate(self.detail)
        except ValidationError as e:
            problem = first_problem(e, "detail")
            raise InvalidInputError(f"event {self.id}: invalid ECR detail: {problem}") from e

    def _action(self, kind: EventKind, detail: EcrActionDetail) -> EcrChange | None:
        if detail.result != SUCCESS:
            return None
        if detail.action_type == UPDATE_STORAGE_CLASS:
            return EcrChange(kind, storage=self._storage_change(detail))
        if detail.action_type not in (Action.PUSH, Action.DELETE):
            return None
        image = self._image(
            Action(detail.action_type),
            detail.repository_name,
            detail.image_digest,
            detail.image_tag,
            media_type=detail.manifest_media_type,
        )
        return EcrChange(kind, image=image)

    def _storage_change(self, detail: EcrActionDetail) -> StorageClassChange:
        try:
            storage_class = StorageClass(detail.target_storage_class or "")
        except ValueError as e:
            # A class this code does not know: refuse (the record goes to the dead-letter
            # queue and alarms) rather than guess whether the image can still be pulled.
            raise InvalidInputError(
                f"event {self.id}: unknown target-storage-class "
                f"{detail.target_storage_class!r} (expected ARCHIVE or STANDARD)"
            ) from e
        return StorageClassChange(
            repository=detail.repository_name,
            digest=self._digest(detail.image_digest),
            storage_class=storage_class,
            time=self.time,
            media_type=detail.manifest_media_type,
            artifact_media_type=detail.artifact_media_type,
            source_account=self.account,
            source_region=self.region,
            event_id=self.id,
        )

    def _digest(self, digest: str | None) -> Digest:
        if not digest:
            raise InvalidInputError(f"event {self.id}: no image-digest in detail")
        return Digest.parse(digest)

    def _image(
        self,
        action: Action,
        repository: str,
        digest: str | None,
        tag: str | None,
        media_type: str | None = None,
    ) -> ImageEvent:
        return ImageEvent(
            repository=repository,
            digest=self._digest(digest),
            action=action,
            time=self.time,
            tag=tag or None,
            media_type=media_type,
            source_account=self.account,
            source_region=self.region,
            event_id=self.id,
        )


def load_json(data: str | bytes, what: str = "event") -> Any:
    """Parse untrusted JSON; anything the parser refuses becomes one InvalidInputError."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text)
    except UnicodeDecodeError as e:
        raise InvalidInputError(f"{what} is not UTF-8 text (byte {e.start})") from e
    except json.JSONDecodeError as e:
        raise InvalidInputError(f"{what} is not valid JSON: {e}") from e
    except RecursionError as e:
        raise InvalidInputError(f"{what} is nested too deeply to be an event") from e
    except ValueError as e:
        # Python refuses integers of more than sys.get_int_max_str_digits() digits.
        raise InvalidInputError(f"{what} holds a number too long to be an event's") from e


def parse_event(data: str | bytes | dict[str, Any]) -> EcrEvent:
    document = load_json(data) if isinstance(data, str | bytes) else data
    try:
        return EcrEvent.model_validate(document)
    except ValidationError as e:
        raise InvalidInputError(f"invalid EventBridge event: {first_problem(e)}") from e


def first_problem(error: ValidationError, what: str = "event") -> str:
    """The first thing pydantic refused, in one line: where, then why."""
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or what
    return f"{where}: {first['msg']}"


def ecr_event_document(event: ImageEvent) -> dict[str, Any]:
    """The EventBridge "ECR Image Action" event ECR would have sent for `event`: what the
    replicate queue carries, so that a re-sent push takes the events' own code path. The id
    is derived from the push, so that sending it twice names the same event."""
    name = (
        f"{event.source_account}/{event.source_region}/{event.repository}:{event.tag or ''}"
        f"@{event.digest}"
    )
    detail: dict[str, Any] = {
        "result": "SUCCESS",
        "action-type": str(event.action),
        "repository-name": event.repository,
        "image-digest": str(event.digest),
    }
    if event.tag:
        detail["image-tag"] = event.tag
    if event.media_type:
        detail["manifest-media-type"] = event.media_type
    return {
        "version": "0",
        "id": f"{event.event_id or 'ecr-backup'}:{uuid.uuid5(uuid.NAMESPACE_URL, name)}",
        "detail-type": IMAGE_ACTION,
        "source": ECR_SOURCE,
        "account": event.source_account,
        "time": format_time(event.time),
        "region": event.source_region,
        "resources": [],
        "detail": detail,
    }
