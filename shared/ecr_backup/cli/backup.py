"""Backup subcommands: setup, replicate, handle-event."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from ecr_backup.backup.events import EcrEvent, load_json, parse_event
from ecr_backup.backup.replicator import CopyReport
from ecr_backup.backup.service import EventOutcome, handle_ecr_event
from ecr_backup.cli.backfill import add_source_account_options, resolve_source
from ecr_backup.cli.common import (
    add_source_options,
    add_storage_options,
    emit,
    human_size,
    services_from,
)
from ecr_backup.cli.options import progress_for
from ecr_backup.composition import AwsServices
from ecr_backup.coverage.reconcile import Source
from ecr_backup.errors import EcrBackupError, ExitCode, InvalidInputError, RegistryError
from ecr_backup.model import Action, ImageEvent
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.reference import ImageRef
from ecr_backup.storage.provision import ensure_bucket


def register(commands: Any) -> None:
    setup = commands.add_parser("setup", help="create the bucket and index table if missing")
    add_storage_options(setup)
    setup.add_argument("--retention-days", type=int, default=35, help="Object Lock default days")
    setup.add_argument(
        "--retention-mode",
        choices=("GOVERNANCE", "COMPLIANCE"),
        default="GOVERNANCE",
        help="Object Lock default mode",
    )
    setup.add_argument(
        "--kms-key-id",
        metavar="KEY",
        help="SSE-KMS with this key (id, ARN or alias) and Bucket Keys; default SSE-S3",
    )
    setup.add_argument(
        "--no-tls-policy",
        action="store_true",
        help="leave out the deny-without-TLS bucket policy (only for a plain-HTTP stand-in "
        "such as moto: the policy would lock every request out)",
    )
    setup.set_defaults(run=run_setup)

    replicate = commands.add_parser(
        "replicate", help="back up one image now: REPOSITORY[:TAG|@DIGEST]"
    )
    replicate.add_argument("image", metavar="REPOSITORY[:TAG|@DIGEST]")
    add_storage_options(replicate)
    add_source_options(replicate)
    add_source_account_options(replicate)
    replicate.set_defaults(run=run_replicate)

    handle = commands.add_parser(
        "handle-event",
        help="run the Lambda's code path on an ECR event or an SQS batch of them",
    )
    handle.add_argument("file", metavar="FILE|-")
    add_storage_options(handle)
    add_source_options(handle)
    handle.set_defaults(run=run_handle_event)


def run_setup(args: argparse.Namespace) -> int:
    if args.retention_days < 1:
        raise InvalidInputError("--retention-days must be at least 1")
    services = services_from(args)
    created_bucket = ensure_bucket(
        services.client("s3"),
        services.settings.bucket,
        region=services.session.region_name or "us-east-1",
        retention_days=args.retention_days,
        retention_mode=args.retention_mode,
        kms_key_id=args.kms_key_id,
        tls_only=not args.no_tls_policy,
        prefix=services.settings.prefix,
    )
    created_table = services.index.create_if_missing()
    bucket_action = "created" if created_bucket else "exists"
    table_action = "created" if created_table else "exists"
    encryption = ("aws:kms" if args.kms_key_id else "AES256") if created_bucket else None
    emit(
        args,
        {
            "bucket": services.settings.bucket,
            "bucket_action": bucket_action,
            "encryption": encryption,
            "kms_key_id": args.kms_key_id if created_bucket else None,
            "table": services.settings.table,
            "table_action": table_action,
        },
        [
            f"bucket {services.settings.bucket}: {bucket_action}"
            + (f" ({encryption})" if encryption else ""),
            f"table  {services.settings.table}: {table_action}",
        ],
        summary=True,
    )
    return 0


def run_replicate(args: argparse.Namespace) -> int:
    ref = ImageRef.parse(args.image)
    services = services_from(args)
    source, role_arn = resolve_source(
        services, args.source_account, args.source_region, args.role_arn
    )
    replicator = services.replicator(source.account, source.region, progress=progress_for(args))
    report = replicator.replicate(ref.repository, ref.reference)
    if report.root is None:  # replicate always names the manifest it copied or found
        raise RegistryError(f"{ref}: the registry named no manifest")
    push = _push_record(services, source, ref, report.root, role_arn)
    if push is not None:
        replicator.record(push)
    document = {
        "repository": ref.repository,
        "tag": ref.tag,
        "digest": report.root,
        "action": "backed up" if report.manifests_stored else "already backed up",
        "report": report,
    }
    emit(args, document, describe_report(str(ref), report), summary=True)
    return 0


def _push_record(
    services: AwsServices, source: Source, ref: ImageRef, digest: Digest, role_arn: str | None
) -> ImageEvent | None:
    """The push to record: at ECR's imagePushedAt (DescribeImages), so that running the
    command again rewrites the same history row. A registry ECR does not describe (a
    non-ECR source) has no push time: then the push is recorded once, at the first run."""
    image = services.listing(source.account, source.region, role_arn).image(ref.repository, digest)
    if image is None:
        index = services.index
        if ref.tag is not None:
            state = index.tag(ref.repository, ref.tag)
            if state is not None and state.digest == digest and state.action is Action.PUSH:
                return None
        elif digest in index.image_states(ref.repository):
            return None
    return ImageEvent(
        repository=ref.repository,
        digest=digest,
        action=Action.PUSH,
        time=image.pushed_at if image else datetime.now(UTC),
        tag=ref.tag,
        media_type=image.media_type if image else None,
        source_account=source.account,
        source_region=source.region,
        event_id="manual",
    )


def run_handle_event(args: argparse.Namespace) -> int:
    raw = sys.stdin.buffer.read() if args.file == "-" else _read_file(args.file)
    document = load_json(raw, "stdin" if args.file == "-" else args.file)
    services = services_from(args)
    handle = partial(handle_ecr_event, pull_through_cache=services.settings.pull_through_cache)
    if isinstance(document, dict) and isinstance(document.get("Records"), list):
        return _handle_batch(args, document["Records"], services.replicator, handle)
    outcome = handle(parse_event(document), services.replicator)
    emit(args, outcome, describe_outcome(outcome), summary=True)
    return 0


def _handle_batch(
    args: argparse.Namespace,
    records: list[Any],
    replicator_for: Any,
    handle: Callable[[EcrEvent, Any], EventOutcome],
) -> int:
    """Like the Lambda: each record succeeds or fails alone; failures are listed."""
    outcomes: list[EventOutcome] = []
    failures: list[dict[str, str]] = []
    lines: list[str] = []
    for position, record in enumerate(records):
        message_id = (
            str(record.get("messageId", position)) if isinstance(record, dict) else str(position)
        )
        try:
            body = record.get("body") if isinstance(record, dict) else None
            if not isinstance(body, str):
                raise InvalidInputError(f"record {message_id}: no body")
            outcome = handle(parse_event(body), replicator_for)
        except EcrBackupError as e:
            failures.append({"itemIdentifier": message_id})
            print(f"ecr-backup: record {message_id} failed: {e.one_line()}", file=sys.stderr)
            continue
        outcomes.append(outcome)
        lines.extend(describe_outcome(outcome))
    emit(args, {"outcomes": outcomes, "batchItemFailures": failures}, lines, summary=True)
    return ExitCode.PROBLEMS if failures else ExitCode.OK


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as e:
        raise InvalidInputError(f"cannot read {path}: {e.strerror}") from e


def describe_outcome(outcome: EventOutcome) -> list[str]:
    storage = outcome.storage
    if storage is not None and outcome.report is None:
        where = f"{storage.repository}@{storage.digest}"
        return [f"{where}: storage class {storage.storage_class} recorded (nothing copied)"]
    if outcome.image is None:
        return [f"event {outcome.event_id}: ignored (not an ECR change the backup acts on)"]
    image = outcome.image
    name = f"{image.repository}:{image.tag}" if image.tag else image.repository
    if outcome.report is None:
        return [f"{name}@{image.digest}: deletion recorded (nothing deleted from the backup)"]
    return describe_report(f"{name}@{image.digest}", outcome.report)


def describe_report(name: str, report: CopyReport) -> list[str]:
    if not report.manifests_stored:
        return [f"{name}: already backed up; nothing fetched or copied"]
    lines = [
        f"{name}: backed up",
        f"  manifests stored {len(report.manifests_stored)}, already complete "
        f"{len(report.manifests_skipped)}",
        f"  blobs copied {len(report.blobs_copied)} ({human_size(report.bytes_copied)}), "
        f"already held {len(report.blobs_skipped)}",
    ]
    if report.blobs_foreign:
        lines.append(f"  foreign layers not served by the registry: {len(report.blobs_foreign)}")
    return lines
