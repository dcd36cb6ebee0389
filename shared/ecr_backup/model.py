"""What the index and the bucket's push records say about images."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from ecr_backup.errors import InvalidInputError
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Manifest
from ecr_backup.oci.reference import validate_repository, validate_tag

# The tag slot of an untagged push (tags never contain "@").
UNTAGGED = "@"


class Action(StrEnum):
    PUSH = "PUSH"
    DELETE = "DELETE"

    @property
    def word(self) -> str:
        """The action as both outputs (text and --json) say it."""
        return "pushed" if self is Action.PUSH else "removed"


def format_time(moment: datetime) -> str:
    """Fixed-width UTC text, so that string order is time order in DynamoDB sort keys and
    push records. A storage key, not for people: they read `rfc3339`."""
    if moment.tzinfo is None:
        raise InvalidInputError("times must carry a timezone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """ISO 8601; a time without an offset is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as e:
        raise InvalidInputError(
            f"invalid time {text!r}: use ISO 8601, e.g. 2026-01-31T12:00:00Z"
        ) from e
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ImageEvent:
    """One push or deletion as ECR reported it; kept forever, in the index and the bucket."""

    repository: str
    digest: Digest
    action: Action
    time: datetime
    tag: str | None = None
    media_type: str | None = None
    source_account: str | None = None
    source_region: str | None = None
    event_id: str | None = None

    def __post_init__(self) -> None:
        validate_repository(self.repository)
        if self.tag is not None:
            validate_tag(self.tag)

    @property
    def record_name(self) -> str:
        """The record's key under refs/: one per (time, action, tag, digest); replays collide."""
        when = format_time(self.time)
        tag = self.tag or "@"
        return f"{self.repository}/_events/{when}_{self.action}_{tag}_{self.digest.hex}.json"

    def to_json(self) -> bytes:
        document = {
            "repository": self.repository,
            "digest": str(self.digest),
            "action": str(self.action),
            "time": format_time(self.time),
            "tag": self.tag,
            "mediaType": self.media_type,
            "sourceAccount": self.source_account,
            "sourceRegion": self.source_region,
            "eventId": self.event_id,
        }
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ImageEvent:
        try:
            doc = json.loads(data)
            return cls(
                repository=doc["repository"],
                digest=Digest.parse(doc["digest"]),
                action=Action(doc["action"]),
                time=parse_time(doc["time"]),
                tag=doc.get("tag"),
                media_type=doc.get("mediaType"),
                source_account=doc.get("sourceAccount"),
                source_region=doc.get("sourceRegion"),
                event_id=doc.get("eventId"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidInputError(f"invalid push record: {e}") from e


class StorageClass(StrEnum):
    """ECR's storage classes (UpdateImageStorageClass' targetStorageClass)."""

    STANDARD = "STANDARD"
    ARCHIVE = "ARCHIVE"


@dataclass(frozen=True)
class StorageClassChange:
    """An image ECR moved into its archive class or restored from it; recorded in the
    bucket under `refs/<repository>/_storage/`, apart from the push records that rebuild
    the index (an archived image is still in ECR: its tags and history do not change)."""

    repository: str
    digest: Digest
    storage_class: StorageClass
    time: datetime
    media_type: str | None = None
    artifact_media_type: str | None = None
    source_account: str | None = None
    source_region: str | None = None
    event_id: str | None = None

    def __post_init__(self) -> None:
        validate_repository(self.repository)

    @property
    def record_name(self) -> str:
        """One record per (time, class, digest): a replayed event names the same record."""
        when = format_time(self.time)
        return f"{self.repository}/_storage/{when}_{self.storage_class}_{self.digest.hex}.json"

    def to_json(self) -> bytes:
        document = {
            "repository": self.repository,
            "digest": str(self.digest),
            "storageClass": str(self.storage_class),
            "time": format_time(self.time),
            "mediaType": self.media_type,
            "artifactMediaType": self.artifact_media_type,
            "sourceAccount": self.source_account,
            "sourceRegion": self.source_region,
            "eventId": self.event_id,
        }
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    digest: Digest
    media_type: str
    size: int
    total_size: int
    completed_at: datetime
    subject: Digest | None = None
    artifact_type: str | None = None

    @classmethod
    def of(cls, manifest: Manifest, total_size: int, completed_at: datetime) -> ManifestRecord:
        return cls(
            digest=manifest.digest,
            media_type=manifest.media_type,
            size=manifest.size,
            total_size=total_size,
            completed_at=completed_at,
            subject=manifest.subject.digest if manifest.subject else None,
            artifact_type=manifest.artifact_type,
        )


@dataclass(frozen=True, slots=True)
class TagState:
    repository: str
    tag: str
    digest: Digest
    time: datetime
    action: Action


@dataclass(frozen=True)
class RepositoryState:
    """What the index holds about one repository's tags and images."""

    tags: dict[str, TagState] = field(default_factory=dict)  # by tag, removed ones included
    images: dict[Digest, bool] = field(default_factory=dict)  # ever pushed -> recorded deleted
    pruned: set[Digest] = field(default_factory=set)  # images prune removed from the backup


def rfc3339(moment: datetime) -> str:
    """The one time format people read, in tables, messages and --json: RFC 3339 in UTC to
    the second (2026-01-31T12:00:00Z)."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class RestoreCheck:
    """A drill's restore of one kept image into a scratch repository, read back by digest."""

    source: str  # repository@digest restored
    scratch: str  # HOST/REPOSITORY it went to (deleted since)
    ok: bool
    detail: str
    seconds: float
