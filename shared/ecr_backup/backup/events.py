"""ECR's EventBridge "ECR Image Action" events, validated and turned into ImageEvents."""

from __future__ import annotations

import json
import uuid
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from ecr_backup.errors import InvalidInputError
from ecr_backup.model import Action, ImageEvent, format_time
from ecr_backup.oci.digest import Digest

ECR_SOURCE = "aws.ecr"
IMAGE_ACTION = "ECR Image Action"

_MODEL = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class EcrImageActionDetail(BaseModel):
    model_config = _MODEL

    result: str
    action_type: str = Field(alias="action-type")
    repository_name: str = Field(alias="repository-name")
    image_digest: str | None = Field(default=None, alias="image-digest")
    image_tag: str | None = Field(default=None, alias="image-tag")
    manifest_media_type: str | None = Field(default=None, alias="manifest-media-type")


class EcrEvent(BaseModel):
    """The EventBridge envelope; detail is checked only for ECR image actions."""

    model_config = _MODEL

    id: str
    source: str
    detail_type: str = Field(alias="detail-type")
    account: str
    region: str
    time: AwareDatetime
    detail: dict[str, Any]

    def image_event(self) -> ImageEvent | None:
        """The push or deletion this event reports, or None when it is not one to act on."""
        if self.source != ECR_SOURCE or self.detail_type != IMAGE_ACTION:
            return None
        try:
            detail = EcrImageActionDetail.model_validate(self.detail)
        except ValidationError as e:
            problem = first_problem(e, "detail")
            raise InvalidInputError(f"event {self.id}: invalid ECR detail: {problem}") from e
        if detail.result != "SUCCESS" or detail.action_type not in ("PUSH", "DELETE"):
            return None
        if not detail.image_digest:
            raise InvalidInputError(f"event {self.id}: no image-digest in detail")
        return ImageEvent(
            repository=detail.repository_name,
            digest=Digest.parse(detail.image_digest),
            action=Action(detail.action_type),
            time=self.time,
            tag=detail.image_tag or None,
            media_type=detail.manifest_media_type,
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
