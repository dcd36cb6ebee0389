"""Settings: one validated model, read from flags or ECR_BACKUP_* variables when asked."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ecr_backup.errors import InvalidInputError

ENV_PREFIX = "ECR_BACKUP_"

# Every default and limit, in one place.
MiB = 1024 * 1024
DEFAULT_CONCURRENCY = 4  # blobs copied (backup), pushed (restore) or hashed (verify) at once
DEFAULT_PART_SIZE_MIB = 16  # S3 multipart part size on backup
# S3's minimum multipart part, and ECR's minimum layer part, are both 5 MiB.
MIN_PART_SIZE = 5 * MiB
# Restore uploads each blob in one streamed request. Only with --chunk-size-mib (for
# registries that need chunks) does it send several PATCHes; ECR refuses parts under 5 MiB
# but the last, and has been reported to mishandle a second PATCH (see registry/client.py).
# The stream is read from the bucket in pieces of this size, one piece ahead.
UPLOAD_BUFFER_SIZE = 8 * MiB
# A chain of image indexes deeper than this is refused as input (no registry needs more
# than an index of indexes; a hostile chain of ~1,100 once overflowed the recursion).
MAX_INDEX_DEPTH = 16
# Backoff (ecr_backup/retry.py). Registry requests: attempts count the first try.
REGISTRY_ATTEMPTS = 6
RETRY_BASE_DELAY_S = 0.2
RETRY_MAX_DELAY_S = 20.0
RETRY_MAX_RETRY_AFTER_S = 60.0
# Registries refuse manifests over 4 MiB; a bigger object named as a manifest is a layer.
MAX_MANIFEST_SIZE = 4 * MiB
# A backup reads, hashes and checksums each part in pieces of this size, each while it is
# still in the CPU's cache (a core's L2 here is 2 MiB). Backups of a 1 GiB layer, CPU seconds:
# 2.84 with 64 KiB pieces, 2.57 with 128 KiB, 2.59 with 256 KiB, 2.68 with 1 MiB, 2.85 with 4 MiB.
HASH_PIECE_SIZE = 256 * 1024
# Part buffers are a backup's memory: capped in bytes whatever the concurrency and part size.
PART_BUFFER_BUDGET = 96 * MiB
# Silence is an error, quickly: an AWS endpoint or a registry that accepts connections and
# never answers fails the command within 30 s, retries included. The timeouts bound each
# read (and each send of a piece of a body), never a whole transfer: a slow transfer that
# progresses is not cut.
# AWS clients (composition.client_config). Budget per call, worst case: silence, 3 attempts
# x 6 s read + standard-mode backoff (<= 1 s, then <= 2 s) = 21 s; a black-holed address,
# 3 x 3 s connect + backoff = 12 s; a refused connection, the backoff alone, <= 3 s.
AWS_CONNECT_TIMEOUT_SECONDS = 3
AWS_READ_TIMEOUT_SECONDS = 6
AWS_MAX_ATTEMPTS = 3  # standard retry mode: the first try and two retries
# Two S3 calls wait longer, never a command's first: an endpoint gone silent has failed an
# earlier call by then. S3 answers CompleteMultipartUpload once the object is assembled,
# which "may take several minutes" (sending whitespace meanwhile); moto's server took 10 s
# for 512 MiB here. moto's ListObjectVersions copies every version it lists (3 to 6 s for
# one 512 MiB version here), and the devkit's moto must not fail what S3 would answer.
AWS_PATIENT_READ_TIMEOUT_SECONDS = 120
# Registries (registry/tls.py's pool). A request met by silence (a connect or read timeout)
# is sent at most REGISTRY_SILENT_ATTEMPTS times: 2 x 10 s + backoff < 21 s. A refused or
# dropped connection is retried up to REGISTRY_ATTEMPTS times (backoff alone, ~6 s).
REGISTRY_CONNECT_TIMEOUT_S = 5.0
REGISTRY_READ_TIMEOUT_S = 10.0
REGISTRY_SILENT_ATTEMPTS = 2
# A registry answers the PATCH that carried a whole blob, and the PUT ?digest= that commits
# it, only once the blob is stored (moved, hashed or copied to its storage): those answers
# may wait this long.
REGISTRY_COMMIT_READ_TIMEOUT_S = 120.0
# A streamed body is sent in pieces of this size: while a body is sent, urllib3 bounds each
# send by the connect timeout, so a piece must drain within it (64 KiB in 5 s: 13 KiB/s).
SEND_PIECE_SIZE = 64 * 1024
REGISTRY_MAX_CONNECTIONS_PER_HOST = 16
# Retention and Object Lock (docs/deploy.md, "Retention"): the bucket's default retention
# period, how long an image outlives its deletion or last tag, how many digests each tag
# keeps, and prune's grace period between marking an object and deleting it.
DEFAULT_LOCK_DAYS = 35
DEFAULT_KEEP_DELETED_DAYS = 90
DEFAULT_KEEP_PER_TAG = 3
DEFAULT_PRUNE_GRACE_HOURS = 24
# A prune run holds its lease this long; a run that died leaves it to expire.
PRUNE_LEASE_HOURS = 6
# The Lambda's clock: a blob copy starts only if, at this many MiB/s, it would end before the
# invocation's deadline minus the reserve. The floor is per copy with `concurrency` copies
# sharing the function's network, well under what a 1 GiB function reaches from ECR to S3
# in one region, so that a copy that starts finishes.
DEFAULT_THROUGHPUT_FLOOR_MIBPS = 10.0
# Seconds kept after the last copy: the manifest, index writes and the batch response.
DEADLINE_RESERVE_SECONDS = 10.0
# Deletion surges (catalog/surges.py): deletions within an hour, per account or repository,
# above which retention holds the deleted images until a person acknowledges the surge; the
# share of a repository's images counts only from a few deletions on, so that deleting one
# of a repository's three images is not a surge.
DEFAULT_SURGE_IMAGES = 50
DEFAULT_SURGE_PERCENT = 20
SURGE_MIN_IMAGES = 5
# Restore drills (maintenance/drill.py): images whose whole closure each drill reads, and
# the days in which the daily drills read every kept object once.
DEFAULT_DRILL_SAMPLE = 3
DEFAULT_SCRUB_DAYS = 90
# DescribeRepositories and DescribeImages accept 1 to 1000 results per page.
ECR_PAGE_SIZE = 1000
# SQS SendMessageBatch takes at most 10 messages; entries SQS failed for its own reasons
# (not the sender's) are sent again, this many times in all.
SQS_BATCH_SIZE = 10
SQS_SEND_ATTEMPTS = 5
# DynamoDB's own limits: keys per BatchGetItem, items per BatchWriteItem.
DYNAMO_BATCH_GET_LIMIT = 100
DYNAMO_BATCH_WRITE_LIMIT = 25
# A docker credential helper (docker-credential-ecr-login may call STS and ECR) answers
# within this many seconds, or the login is refused.
CREDENTIAL_HELPER_TIMEOUT_S = 60
# Images backfill copies at once (each with its own `concurrency` blob copies).
DEFAULT_IMAGE_CONCURRENCY = 4
# `serve`: presigned blob URLs live long enough for a slow pull to start every blob; page
# sizes of tags/list and _catalog are capped (as CNCF distribution caps _catalog's); the
# repository's image list is re-read after the TTL so new backups appear; worker threads
# bound concurrent connections; stream mode hands out blobs in chunks of this size.
SERVE_PRESIGN_SECONDS = 900
SERVE_MAX_PAGE = 1000
SERVE_LISTING_TTL_SECONDS = 30.0
SERVE_WORKERS = 32
SERVE_IDLE_TIMEOUT_SECONDS = 60.0
SERVE_CHUNK = 1 * MiB
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_TABLE = re.compile(r"[A-Za-z0-9_.-]{3,255}")


M = TypeVar("M", bound=BaseModel)


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    bucket: str
    table: str | None = None  # bucket-only commands run without an index
    prefix: str = ""
    source_registry: str | None = None
    # ecr: ECR tokens; config: the login docker/podman/skopeo saved (registry/credentials.py)
    source_auth: Literal["ecr", "config", "none"] = "ecr"
    concurrency: int = Field(default=DEFAULT_CONCURRENCY, ge=1, le=64)
    part_size_mib: int = Field(default=DEFAULT_PART_SIZE_MIB, ge=MIN_PART_SIZE // MiB, le=512)
    lock_days: int = Field(default=DEFAULT_LOCK_DAYS, ge=1, le=36500)
    lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"
    keep_deleted_days: int = Field(default=DEFAULT_KEEP_DELETED_DAYS, ge=0, le=36500)
    keep_per_tag: int = Field(default=DEFAULT_KEEP_PER_TAG, ge=0, le=1000)
    prune_grace_hours: int = Field(default=DEFAULT_PRUNE_GRACE_HOURS, ge=1, le=24 * 365)
    surge_images: int = Field(default=DEFAULT_SURGE_IMAGES, ge=1, le=1_000_000)
    surge_percent: int = Field(default=DEFAULT_SURGE_PERCENT, ge=1, le=100)
    scrub_days: int = Field(default=DEFAULT_SCRUB_DAYS, ge=1, le=3650)
    drill_sample: int = Field(default=DEFAULT_DRILL_SAMPLE, ge=0, le=1000)
    # Restore one sampled image into a scratch ECR repository (restore/drill.py), here:
    # default the backup account's ECR in its region.
    drill_restore: bool = False
    drill_registry: str | None = None
    # Back up images pull-through cache rules store (template parameter BackupPullThroughCache).
    pull_through_cache: bool = True
    throughput_floor_mibps: float = Field(default=DEFAULT_THROUGHPUT_FLOOR_MIBPS, gt=0, le=10_000)

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if not _BUCKET.fullmatch(value):
            raise ValueError("not a valid S3 bucket name")
        return value

    @field_validator("table")
    @classmethod
    def _table(cls, value: str | None) -> str | None:
        if value is not None and not _TABLE.fullmatch(value):
            raise ValueError("not a valid DynamoDB table name")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip("/")
        return f"{value}/" if value else ""

    @field_validator("source_registry")
    @classmethod
    def _registry(cls, value: str | None) -> str | None:
        if value and not re.fullmatch(r"https?://[^/\s]+/?", value):
            raise ValueError("must be a URL such as https://HOST[:PORT]")
        return value.rstrip("/") if value else None

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str],
        *,
        flags: Mapping[str, str] | None = None,
        **overrides: object,
    ) -> Settings:
        """Flags (overrides that are not None) win over ECR_BACKUP_* variables; `flags`
        names the command line's flag of each field, for the message of a bad value."""
        return load_from_env(cls, environ, overrides, flags=flags)


def load_from_env(
    model: type[M],
    environ: Mapping[str, str],
    overrides: Mapping[str, object] | None = None,
    *,
    flags: Mapping[str, str] | None = None,
) -> M:
    """A settings model from its ECR_BACKUP_* variables (empty ones unset), with `overrides`
    that are not None winning; the first invalid value becomes one InvalidInputError, naming
    the variable (and the flag `flags` names for the field, if any)."""
    values: dict[str, object] = {}
    for name in model.model_fields:
        env_value = environ.get(ENV_PREFIX + name.upper())
        if env_value not in (None, ""):
            values[name] = env_value
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return model.model_validate(values)
    except ValidationError as e:
        first = e.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else None
        label = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
        flag = (flags or {}).get(field or "")
        if flag:
            label = f"{label} ({flag})"
        raise InvalidInputError(f"invalid setting {label}: {first['msg']}") from e
