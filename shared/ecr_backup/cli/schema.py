"""The one JSON schema of `--json` output (docs/json.md shows an example per command).

Every command's document passes through its model before it is printed, so names and
formats cannot drift: `digest` is `sha256:<64 hex>`, `repository` and `tag` are names,
every time is RFC 3339 in UTC with seconds (`2026-01-01T00:01:00Z`), sizes are bytes, and
`action` uses the words the text output prints. Models forbid unknown fields: a field
added to a report without adding it here fails the tests.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    RootModel,
    TypeAdapter,
)

DigestText = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("a time must carry a zone")
    return moment.astimezone(UTC)


Time = Annotated[
    datetime,
    AfterValidator(_utc),
    PlainSerializer(lambda m: m.strftime("%Y-%m-%dT%H:%M:%SZ"), return_type=str),
]
Bytes = Annotated[int, Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- queries ------------------------------------------------------------------------------


class Repository(_Model):
    repository: str


class TagRow(_Model):
    repository: str
    tag: str
    digest: DigestText
    time: Time
    state: Literal["current", "removed"]
    total_size: Bytes | None


class HistoryEvent(_Model):
    repository: str
    time: Time
    action: Literal["pushed", "removed"]
    digest: DigestText
    tag: str | None
    media_type: str | None
    source_account: str | None
    source_region: str | None
    event_id: str | None


class ShowManifest(_Model):
    digest: DigestText
    media_type: str
    size: Bytes
    platform: str | None
    artifact_type: str | None
    parent: DigestText | None


class ShowBlob(_Model):
    digest: DigestText
    media_type: str
    size: Bytes
    foreign: bool


class ShowReferrer(_Model):
    digest: DigestText
    media_type: str
    artifact_type: str | None
    subject: DigestText | None
    size: Bytes
    total_size: Bytes


class Show(_Model):
    repository: str
    tag: str | None
    digest: DigestText
    media_type: str
    at: Time | None
    pushed_at: Time | None
    size: Bytes
    total_size: Bytes
    platforms: list[str]
    manifests: list[ShowManifest]
    blobs: list[ShowBlob]
    referrers: list[ShowReferrer]


# -- restore ------------------------------------------------------------------------------


class PlannedImage(_Model):
    source: str
    digest: DigestText
    tag: str | None
    pushed_at: Time | None


class PlannedObject(_Model):
    digest: DigestText
    media_type: str
    size: Bytes


class SkippedTag(_Model):
    tag: str
    removed_at: Time
    digest: DigestText


class Plan(_Model):
    target: str
    images: list[PlannedImage]
    referrers: list[DigestText]
    manifests: list[PlannedObject]
    blobs: list[PlannedObject]
    foreign_layers_not_in_backup: list[DigestText]
    removed_tags_skipped: list[SkippedTag]
    total_bytes: Bytes


class RestoredImage(_Model):
    digest: DigestText
    tag: str | None


class Report(_Model):
    target: str
    dry_run: bool
    created_repository: bool
    images: list[RestoredImage]
    manifests_pushed: list[DigestText]
    manifests_present: list[DigestText]
    blobs_uploaded: list[DigestText]
    blobs_mounted: list[DigestText]
    blobs_present: list[DigestText]
    bytes_uploaded: Bytes
    bytes_mounted: Bytes
    bytes_present: Bytes
    tags_set: list[str]
    tags_unchanged: list[str]
    tags_moved: dict[str, DigestText]
    recovered_versions: dict[str, str | None]
    seconds: float


class Restore(_Model):
    plan: Plan
    report: Report


class RepositoryRestore(_Model):
    repository: str
    target: str
    action: Literal["restored", "would restore", "skipped", "failed"]
    tags: list[str]
    bytes_uploaded: Bytes
    error: str | None


class RestoreAll(_Model):
    registry: str
    at: Time | None
    dry_run: bool
    repositories: list[RepositoryRestore]
    restored: int
    failed: int
    tags: int
    bytes_uploaded: Bytes
    seconds: float


class Export(_Model):
    format: Literal["oci", "oci-archive", "docker-archive"]
    path: str
    ref_name: str | None
    source: str
    digest: DigestText
    platform: str | None
    manifests: int
    blobs: int
    bytes: Bytes
    skipped_foreign: list[DigestText]
    recovered_versions: dict[str, str | None]


class Problem(_Model):
    kind: str
    subject: str
    detail: str


class Verify(_Model):
    ok: bool
    scope: str
    deep: bool
    source: str
    images: int
    manifests: int
    blobs: int
    bytes: Bytes
    objects_hashed: int
    bytes_hashed: Bytes
    problems: list[Problem]
    notes: list[str]


class RebuildIndex(_Model):
    bucket: str
    prefix: str
    table: str
    created_table: bool
    records: int
    invalid_records: list[str]
    repositories: int
    manifests_complete: int
    manifests_incomplete: list[str]
    blobs: int
    unreferenced_blobs: int
    seconds: float


# -- backup -------------------------------------------------------------------------------


class Setup(_Model):
    bucket: str
    bucket_action: Literal["created", "exists"]
    encryption: Literal["aws:kms", "AES256"] | None
    kms_key_id: str | None
    table: str
    table_action: Literal["created", "exists"]


class CopyReport(_Model):
    root: DigestText | None
    manifests_stored: list[DigestText]
    manifests_skipped: list[DigestText]
    blobs_copied: list[DigestText]
    blobs_skipped: list[DigestText]
    blobs_foreign: list[DigestText]
    bytes_copied: Bytes


class Replicate(_Model):
    repository: str
    tag: str | None
    digest: DigestText
    action: Literal["backed up", "already backed up"]
    report: CopyReport


class EventOutcome(_Model):
    event_id: str
    action: Literal["backed up", "already backed up", "deletion recorded", "ignored"]
    repository: str | None = None
    digest: DigestText | None = None
    tag: str | None = None
    report: CopyReport | None = None


class BatchItemFailure(_Model):
    itemIdentifier: str  # the Lambda partial batch response names it so


class EventBatch(_Model):
    outcomes: list[EventOutcome]
    batchItemFailures: list[BatchItemFailure]


HandleEvent = RootModel[EventOutcome | EventBatch]

# -- retention (maintain, prune, stats, hold, release) -----------------------------------


class LockCheck(_Model):
    digest: DigestText
    found: Time | None  # the lock end read from S3 (null: the recorded one sufficed)
    until: Time | None
    extended: bool
    short: bool


class LockNotChecked(_Model):
    digest: DigestText
    error: str


class Maintain(_Model):
    ok: bool
    time: Time
    images_kept: int
    objects_checked: int
    extended: list[LockCheck]
    short: list[LockCheck]
    missing: list[DigestText]
    failed: list[LockNotChecked]


class PruneObject(_Model):
    digest: DigestText
    size: Bytes
    action: Literal["mark", "delete", "locked", "in-use", "finished"]
    reason: str
    lock_until: Time | None


class PrunedImage(_Model):
    repository: str
    digest: DigestText


class HeldBySurge(PrunedImage):
    surge: str


class Prune(_Model):
    dry_run: bool
    time: Time
    bytes_freed: Bytes
    bytes_marked: Bytes
    objects: list[PruneObject]
    images_pruned: list[PrunedImage]
    held_by_surge: list[HeldBySurge]


class SampledImage(_Model):
    repository: str
    digest: DigestText
    objects: int
    bytes: Bytes


class Drill(_Model):
    ok: bool
    time: Time
    images_kept: int
    sampled: list[SampledImage]
    scrub_slice: int
    scrub_days: int
    scrubbed_objects: int
    objects_verified: int
    bytes_read: Bytes
    problems: list[Problem]


class SurgeAcknowledgement(_Model):
    by: str
    reason: str
    time: Time


class Surge(_Model):
    id: str
    account: str
    repository: str | None  # null: every repository of the account
    start: Time
    end: Time
    deletions: int
    rule: str
    detected_at: Time
    acknowledged: SurgeAcknowledgement | None


class Surges(_Model):
    surges: list[Surge]
    holding: int
    unreadable: list[str]


class Acknowledged(SurgeAcknowledgement):
    id: str


class RepositoryStats(_Model):
    repository: str
    images_kept: int
    logical_bytes: Bytes
    unique_bytes: Bytes


class MonthlyCost(_Model):
    currency: Literal["USD"]
    region: str
    s3_standard: float
    aws_backup: float | None
    total: float
    prices_read: str
    sources: list[str]


class Stats(_Model):
    time: Time
    objects: int
    logical_bytes: Bytes
    unique_bytes: Bytes
    kept_unique_bytes: Bytes
    dedup_ratio: float | None
    locked_bytes: Bytes
    unlocked_bytes: Bytes
    lock_unknown_bytes: Bytes
    repositories: list[RepositoryStats]
    monthly_cost: MonthlyCost


class Hold(_Model):
    repository: str
    digest: DigestText
    held: bool
    objects: int


class BackfillImage(_Model):
    repository: str
    digest: DigestText
    tags: list[str]
    time: Time  # ECR's imagePushedAt
    size: Bytes  # ECR's imageSizeInBytes
    status: Literal["ACTIVE", "ARCHIVED", "ACTIVATING"]


class BackfillFailure(BackfillImage):
    error: str


class BackfillEvent(_Model):
    repository: str
    digest: DigestText
    tag: str | None
    action: Literal["pushed", "removed"]
    time: Time
    observed: bool  # seen by reconcile (timed then), not a push ECR reported


class Backfill(_Model):
    dry_run: bool
    drift: bool
    repositories: int
    images: int
    missing: list[BackfillImage]
    archived_not_backed_up: list[BackfillImage]
    archived_already_held: list[BackfillImage]
    pruned_not_copied: list[BackfillImage]  # retention removed them; ECR still lists them
    pushes_recorded_from_ecr: list[BackfillEvent]
    drifted_tags: list[BackfillEvent]
    gone: list[BackfillEvent]
    copied: list[BackfillImage]
    failed: list[BackfillFailure]
    enqueued: int
    events_recorded: int


# -- status -------------------------------------------------------------------------------


class StatusFinding(_Model):
    severity: Literal["problem", "warning"]
    what: str
    since: Time | None


class StatusAlarm(_Model):
    name: str
    logical_id: str | None
    state: Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
    since: Time | None
    reason: str


class StatusQueue(_Model):
    logical_id: str
    url: str
    dead_letter: bool
    visible: int
    in_flight: int


class StatusStack(_Model):
    name: str
    status: str
    alarms: list[StatusAlarm]
    queues: list[StatusQueue]


class StatusPush(_Model):
    repository: str
    tag: str | None
    digest: DigestText
    pushed_at: Time
    backed_up_at: Time | None


class StatusMissing(_Model):
    repository: str
    digest: DigestText
    pushed_at: Time
    past_grace: bool


class StatusReconcile(_Model):
    time: Time
    repositories: int
    images: int
    missing: list[StatusMissing]
    missing_not_listed: int
    drifted: int
    archived: int
    grace_minutes: int


class StatusMaintain(_Model):
    time: Time
    ok: bool
    images_kept: int
    objects_checked: int
    extended: int
    short: int
    missing: int
    not_checked: int


class StatusPrune(_Model):
    time: Time
    marked: int
    deleted: int
    locked: int
    in_use: int
    bytes_freed: Bytes
    images_pruned: int


class StatusLocation(_Model):
    bucket: str
    prefix: str
    table: str
    region: str


class Status(_Model):
    healthy: bool
    time: Time
    since: Time | None
    findings: list[StatusFinding]
    stack: StatusStack | None
    newest_push: StatusPush | None
    reconcile: StatusReconcile | None
    maintain: StatusMaintain | None
    prune: StatusPrune | None
    location: StatusLocation


# -- coverage -----------------------------------------------------------------------------


class CoverageMissing(_Model):
    repository: str
    digest: DigestText
    pushed_at: Time
    past_grace: bool


class CoverageTotal(_Model):
    repositories: int
    images: int
    backed_up: int
    missing: int
    missing_past_grace: int
    archived_not_backed_up: int
    pruned: int
    oldest_missing_pushed_at: Time | None
    last_reconcile: Time | None
    missing_not_listed: int


class CoverageRegistry(CoverageTotal):
    account: str
    region: str
    missing_images: list[CoverageMissing]
    error: str | None


class Coverage(_Model):
    covered: bool
    time: Time
    grace_seconds: int
    live: bool
    registries: list[CoverageRegistry]
    total: CoverageTotal


# Command name -> the shape of its --json document. tests/unit/cli/test_schema.py checks
# that every command of the parser is here and that docs/json.md shows each one.
SCHEMAS: dict[str, TypeAdapter[Any]] = {
    "setup": TypeAdapter(Setup),
    "replicate": TypeAdapter(Replicate),
    "handle-event": TypeAdapter(HandleEvent),
    "backfill": TypeAdapter(Backfill),
    "repos": TypeAdapter(list[Repository]),
    "tags": TypeAdapter(list[TagRow]),
    "history": TypeAdapter(list[HistoryEvent]),
    "show": TypeAdapter(Show),
    "restore": TypeAdapter(Restore | RestoreAll),
    "export": TypeAdapter(Export),
    "verify": TypeAdapter(Verify),
    "rebuild-index": TypeAdapter(RebuildIndex),
    "maintain": TypeAdapter(Maintain),
    "prune": TypeAdapter(Prune),
    "stats": TypeAdapter(Stats),
    "hold": TypeAdapter(Hold),
    "release": TypeAdapter(Hold),
    "surges": TypeAdapter(Surges | Acknowledged),
    "drill": TypeAdapter(Drill),
    "status": TypeAdapter(Status),
    "coverage": TypeAdapter(Coverage),
}


def render(command: str, document: object) -> Any:
    """The document as its schema writes it (plain JSON values)."""
    schema = SCHEMAS.get(command)
    if schema is None:
        return document  # a command without a schema fails tests/unit/cli/test_schema.py
    return schema.dump_python(schema.validate_python(document), mode="json")
