"""The one JSON schema of `--json` output (docs/json.md shows an example per command).

Every command's document passes through its model before it is printed, so names and
formats cannot drift: `digest` is `sha256:<64 hex>`, `repository` and `tag` are names,
every time is RFC 3339 in UTC with seconds (`2026-01-01T00:01:00Z`), sizes are bytes, and
`action` uses the words the text output prints. Models forbid unknown fields: a field
added to a report without adding it here fails the tests.

The models read the report objects themselves (pydantic's `from_attributes`): a field
takes the attribute of its name, or the one its `validation_alias` names where the report
calls it otherwise, so no report keeps a hand-written copy of its document. Documents
given as plain data (docs/json.md's examples) validate by field name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    AliasPath,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    RootModel,
    TypeAdapter,
)

from ecr_backup.model import rfc3339

_JSON_VALUES = (str, int, float, bool, list, tuple, dict, type(None))


def _as_text(value: object) -> object:
    """Digests, platforms, targets and references are written as their canonical text."""
    return value if isinstance(value, _JSON_VALUES) else str(value)


def _digests_of(value: object) -> object:
    """A list of what carries a digest (descriptors, closures) as the list of digests."""
    if isinstance(value, list | tuple):
        return [getattr(each, "digest", each) for each in value]
    return value


def _rows(*names: str) -> Callable[[object], object]:
    """Pairs (a list of tuples, or a mapping's items) as objects with these field names."""

    def convert(value: object) -> object:
        rows = list(value.items()) if isinstance(value, Mapping) else value
        if not isinstance(rows, list):
            return value
        return [dict(zip(names, r, strict=True)) if isinstance(r, tuple) else r for r in rows]

    return convert


Text = Annotated[str, BeforeValidator(_as_text)]
DigestText = Annotated[str, BeforeValidator(_as_text), Field(pattern=r"^sha256:[0-9a-f]{64}$")]
Digests = Annotated[list[DigestText], BeforeValidator(_digests_of)]
Seconds = Annotated[float, AfterValidator(lambda s: round(s, 3))]


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("a time must carry a zone")
    return moment.astimezone(UTC)


Time = Annotated[
    datetime,
    AfterValidator(_utc),
    PlainSerializer(rfc3339, return_type=str),
]
Bytes = Annotated[int, Field(ge=0)]


class _Model(BaseModel):
    # A command renders one report: each model is built when first used, not all of them on
    # every start (building them all took about 50 ms of each command's start-up).
    model_config = ConfigDict(
        extra="forbid",
        from_attributes=True,
        validate_by_name=True,
        validate_by_alias=True,
        defer_build=True,
    )


def _problem_rows(value: object) -> object:
    """(kind, digest, detail) triples as Problem objects; anything else as it is."""
    if not isinstance(value, list):
        return value
    return [
        {"kind": r[0], "subject": str(r[1]), "detail": r[2]} if isinstance(r, tuple) else r
        for r in value
    ]


def _at(first: str, *rest: str | int) -> Any:
    """The field reads this attribute path of the report object (by name from plain data)."""
    return Field(validation_alias=AliasPath(first, *rest))


def _at_or_none(first: str, *rest: str | int) -> Any:
    """As `_at`, for a path through an attribute that may be None (the field is then null)."""
    return Field(None, validation_alias=AliasPath(first, *rest))


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
    action: Literal["pushed", "removed"] = _at("action", "word")
    digest: DigestText
    tag: str | None
    media_type: str | None
    source_account: str | None
    source_region: str | None
    event_id: str | None


class ShowManifest(_Model):  # read from a closure's node
    digest: DigestText = _at("manifest", "digest")
    media_type: str = _at("manifest", "media_type")
    size: Bytes = _at("manifest", "size")
    platform: Text | None
    artifact_type: str | None = _at("manifest", "artifact_type")
    parent: DigestText | None


class ShowBlob(_Model):
    digest: DigestText
    media_type: str
    size: Bytes
    foreign: bool = _at("is_foreign")


class ShowReferrer(_Model):  # read from the referrer's closure
    digest: DigestText = _at("root", "digest")
    media_type: str = _at("root", "media_type")
    artifact_type: str | None = _at("root", "artifact_type")
    subject: DigestText | None = _at_or_none("root", "subject", "digest")
    size: Bytes = _at("root", "size")
    total_size: Bytes


class Show(_Model):  # read from the catalog's ImageView
    repository: str = _at("resolved", "repository")
    tag: str | None = _at("resolved", "tag")
    digest: DigestText = _at("closure", "root", "digest")
    media_type: str = _at("closure", "root", "media_type")
    at: Time | None = _at("resolved", "at")
    pushed_at: Time | None = _at("resolved", "pushed_at")
    size: Bytes = _at("closure", "root", "size")
    total_size: Bytes = _at("closure", "total_size")
    platforms: list[Text] = _at("closure", "platforms")
    manifests: list[ShowManifest] = _at("closure", "nodes")
    blobs: list[ShowBlob] = _at("closure", "blobs")
    referrers: list[ShowReferrer]


# -- restore ------------------------------------------------------------------------------


class PlannedImage(_Model):  # read from a RestoreRoot
    source: Text = _at("resolved")
    digest: DigestText = _at("closure", "digest")
    tag: str | None = _at("target_tag")
    pushed_at: Time | None = _at("resolved", "pushed_at")


class PlannedObject(_Model):
    digest: DigestText
    media_type: str
    size: Bytes


class SkippedTag(_Model):
    tag: str
    removed_at: Time = _at("time")
    digest: DigestText


class Plan(_Model):
    target: Text
    images: list[PlannedImage] = _at("roots")
    referrers: Digests
    manifests: list[PlannedObject]
    blobs: list[PlannedObject]
    foreign_layers_not_in_backup: Digests = _at("foreign")
    removed_tags_skipped: list[SkippedTag] = _at("removed_tags")
    total_bytes: Bytes


class TagMove(_Model):
    repository: str
    tag: str
    # The report's TagMove says `current` and `restored`; the document, `from` and `to`.
    from_: DigestText = Field(
        validation_alias=AliasChoices("from", "from_", "current"), serialization_alias="from"
    )
    to: DigestText = Field(validation_alias=AliasChoices("to", "restored"))

    model_config = ConfigDict(extra="forbid", serialize_by_alias=True, defer_build=True)


class TagCounts(_Model):
    created: int
    unchanged: int
    moved: int


class RestoredImage(_Model):
    digest: DigestText
    tag: str | None


class Report(_Model):
    target: str
    dry_run: bool
    created_repository: bool
    images: Annotated[list[RestoredImage], BeforeValidator(_rows("digest", "tag"))]
    manifests_pushed: list[DigestText]
    manifests_present: list[DigestText]
    blobs_uploaded: list[DigestText]
    blobs_mounted: list[DigestText]
    blobs_present: list[DigestText]
    bytes_uploaded: Bytes
    bytes_mounted: Bytes
    bytes_present: Bytes
    tags_set: list[str]  # created or moved
    tags_created: list[str]
    tags_unchanged: list[str]
    tags_moved: list[TagMove]
    tag_counts: TagCounts
    recovered_versions: dict[str, str | None]
    # by the target's referrers API, checked after the push
    referrers_listed: list[DigestText] = _at("referrers", "listed")
    # pushed, yet the referrers API does not list them
    referrers_unlisted: list[DigestText] = _at("referrers", "unlisted")
    # the referrers tag schema (no referrers API): sha256-<subject hex>
    referrers_tags_updated: list[str] = _at("referrers", "tags_updated")
    referrer_problems: list[str] = _at("referrers", "problems")
    seconds: Seconds


class Restore(_Model):
    plan: Plan
    report: Report


class RepositoryRestore(_Model):
    repository: str
    target: str
    action: Literal["restored", "would restore", "skipped", "failed"]
    tags: list[str]
    tags_moved: list[TagMove]
    tag_counts: TagCounts
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
    tags_moved: list[TagMove]
    tag_counts: TagCounts
    bytes_uploaded: Bytes
    seconds: Seconds


class RestoreRefused(_Model):
    refused: str  # the reason, as the error line says it
    tags_moved: list[TagMove]


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
    replaced: list[DigestText]  # files an OCI layout held that did not hash to their name
    warnings: list[str]


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
    # kind "rewritten" (recorded from its intact version), "tampered"
    problems: Annotated[list[Problem], BeforeValidator(_problem_rows)]
    holds: int  # holds in force per the bucket's hold records
    locks: int  # objects whose lock end was read from S3
    seconds: Seconds


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
    action: Literal[
        "backed up", "already backed up", "deletion recorded", "storage class recorded", "ignored"
    ] = _at("status")
    # The ECR detail-type, absent when the event is not ECR's.
    kind: Literal["image", "referrer", "replication", "pull-through-cache"] | None = None
    repository: str | None = None
    digest: DigestText | None = None
    tag: str | None = None
    storage_class: Literal["ARCHIVE", "STANDARD"] | None = None
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
    failed: Annotated[list[LockNotChecked], BeforeValidator(_rows("digest", "error"))]


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
    objects: list[PruneObject] = _at("entries")
    images_pruned: Annotated[list[PrunedImage], BeforeValidator(_rows("repository", "digest"))]
    held_by_surge: Annotated[
        list[HeldBySurge], BeforeValidator(_rows("repository", "digest", "surge"))
    ]


class SampledImage(_Model):
    repository: str
    digest: DigestText
    objects: int
    bytes: Bytes


class DrillRestore(_Model):
    source: str  # repository@digest
    scratch: str  # HOST/REPOSITORY, deleted since
    ok: bool
    detail: str
    seconds: Seconds


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
    restore: DrillRestore | None


class UndeletedImage(_Model):
    repository: str
    digest: DigestText
    deleted_at: Time
    image_deleted: bool  # false: only tags were removed in the window
    target: str
    tags: list[str]


class UndeleteSkippedTag(_Model):
    repository: str
    tag: str
    digest: DigestText  # where it pointed before its deletion
    current: DigestText  # where it points now
    reason: str


class UndeleteFailure(_Model):
    repository: str
    error: str


class Undelete(_Model):
    since: Time
    until: Time
    dry_run: bool
    images: list[UndeletedImage]
    skipped: list[UndeleteSkippedTag]
    failed: list[UndeleteFailure]


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


class LastDrill(_Model):
    time: Time
    ok: bool
    images_sampled: int
    objects_verified: int
    bytes_read: Bytes
    problems: int


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
    surges_recorded: int
    surges_holding: int
    last_drill: LastDrill | None


class Hold(_Model):
    repository: str
    digest: DigestText
    held: bool
    reason: str | None
    objects: int  # objects whose legal hold was set (hold) or turned off (release)
    object_digests: list[DigestText] = _at("changed")


class HoldRow(_Model):
    repository: str
    digest: DigestText
    objects: int | None  # null: placed by a version that did not count them
    placed_at: Time
    reason: str | None


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


class Serve(_Model):
    url: str
    blobs: Literal["redirect", "stream"]
    at: Time | None
    repository_prefix: str
    authentication: Literal["basic", "none"]
    tls: bool
    source: Literal["index", "bucket"]


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
    "restore": TypeAdapter(Restore | RestoreAll | RestoreRefused),
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
    "undelete": TypeAdapter(Undelete),
    "serve": TypeAdapter(Serve),
    "status": TypeAdapter(Status),
    "holds": TypeAdapter(list[HoldRow]),
    "coverage": TypeAdapter(Coverage),
}


def render(command: str, document: object) -> Any:
    """The command's document (its report object, or plain data) as its schema writes it:
    plain JSON values."""
    schema = SCHEMAS.get(command)
    if schema is None:
        return document  # a command without a schema fails tests/unit/cli/test_schema.py
    return schema.dump_python(schema.validate_python(document, from_attributes=True), mode="json")


def dump(model: type[BaseModel], report: object) -> dict[str, Any]:
    """One report as `model` writes it, for documents that are part of no command (logs)."""
    return model.model_validate(report, from_attributes=True).model_dump(mode="json")
