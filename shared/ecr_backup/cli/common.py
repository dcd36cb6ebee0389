"""Options and output shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ecr_backup.awssession import open_session
from ecr_backup.catalog.catalog import Catalog
from ecr_backup.cli.options import add_location_options
from ecr_backup.composition import AwsServices
from ecr_backup.model import parse_time
from ecr_backup.oci.digest import Digest
from ecr_backup.registry.tls import TlsOptions
from ecr_backup.settings import Settings

SHORT_DIGEST = 12  # hex characters in tables, as docker and crane show image ids


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    """The backup location's options after the command (the main parser takes them before)."""
    add_location_options(parser, after=True)


def add_tls_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("registry TLS")
    group.add_argument(
        "--insecure", action="store_true", help="do not verify registry TLS certificates"
    )
    group.add_argument(
        "--ca-bundle",
        metavar="FILE",
        help="CA certificates for registries (else SSL_CERT_FILE, else AWS_CA_BUNDLE)",
    )


def add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source-registry",
        help="registry URL overriding the ECR endpoint (ECR_BACKUP_SOURCE_REGISTRY)",
    )
    parser.add_argument(
        "--source-auth",
        choices=("ecr", "config", "none"),
        help="ecr: ECR tokens (default); config: the login docker/podman/skopeo saved "
        "(ECR_BACKUP_SOURCE_AUTH)",
    )
    parser.add_argument(
        "--concurrency", type=int, help="blobs copied at once (ECR_BACKUP_CONCURRENCY, default 4)"
    )
    add_tls_options(parser)


# Each setting a flag can give -> that flag (the argparse dest is the setting's name), so
# that a bad value's message names the flag that exists.
SETTING_FLAGS = {
    "bucket": "--bucket",
    "table": "--table",
    "prefix": "--prefix",
    "source_registry": "--source-registry",
    "source_auth": "--source-auth",
    "concurrency": "--concurrency",
    "lock_days": "--lock-days",
    "keep_deleted_days": "--keep-deleted-days",
    "keep_per_tag": "--keep-per-tag",
    "prune_grace_hours": "--grace-hours",
    "drill_sample": "--sample",
    "scrub_days": "--scrub-days",
    "drill_restore": "--restore",
    "drill_registry": "--restore-registry",
}


def settings_from(args: argparse.Namespace, **overrides: object) -> Settings:
    values = {name: getattr(args, name, None) for name in SETTING_FLAGS}
    return Settings.load(os.environ, flags=SETTING_FLAGS, **{**values, **overrides})


def region_from(args: argparse.Namespace) -> str | None:
    """--region, else AWS_REGION, else AWS_DEFAULT_REGION and the profile's (which botocore
    reads itself): the order of the AWS CLI and the SDKs that know AWS_REGION, which boto3
    alone ignores."""
    return getattr(args, "region", None) or os.environ.get("AWS_REGION") or None


def tls_from(args: argparse.Namespace) -> TlsOptions:
    return TlsOptions.from_environment(
        insecure=getattr(args, "insecure", False), ca_bundle=getattr(args, "ca_bundle", None)
    )


def services_from(args: argparse.Namespace, settings: Settings | None = None) -> AwsServices:
    """The one place the CLI builds its services: the backup side's session and, when a
    restore names one, the target's (another profile, region or assumed role)."""
    session = open_session(getattr(args, "profile", None), region_from(args))
    to_profile = getattr(args, "to_profile", None)
    to_region = getattr(args, "to_region", None)
    role_arn = getattr(args, "to_role_arn", None)
    target = (
        open_session(to_profile, to_region, role_arn=role_arn, base=session)
        if to_profile or to_region or role_arn
        else None
    )
    return AwsServices(
        settings or settings_from(args),
        session,
        target_session=target,
        tls=tls_from(args),
        adapters=getattr(args, "adapters", None),
    )


def json_report(args: argparse.Namespace, document: Any) -> str:
    """The command's --json output: `document` in its schema (ecr_backup/schema.py)."""
    # Imported here: the JSON models cost every command's start-up, and only --json needs them.
    from ecr_backup.schema import render

    return json.dumps(render(args.command, document), indent=2)


def emit(
    args: argparse.Namespace,
    document: Any,
    text_lines: Sequence[str],
    *,
    summary: bool = False,
    problems: Sequence[str] = (),
) -> None:
    """JSON for machines (--json, in the command's schema), else the lines for people.
    `summary`: the lines report what was done (not data the command was asked for), so
    --quiet leaves them out; `problems` (printed after them) it keeps."""
    if getattr(args, "json", False):
        print(json_report(args, document))
        return
    quiet = summary and getattr(args, "quiet", False)
    for line in [*([] if quiet else text_lines), *problems]:
        print(line)


def short(args: argparse.Namespace, digest: Digest | str) -> str:
    """A digest as tables show it: 12 hex characters unless --no-trunc."""
    text = str(digest)
    if getattr(args, "no_trunc", False):
        return text
    return text.partition(":")[2][:SHORT_DIGEST] or text


def table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> list[str]:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def add_catalog_options(parser: argparse.ArgumentParser, *, at: bool = False) -> None:
    add_storage_options(parser)
    parser.add_argument(
        "--from-bucket",
        action="store_true",
        help="answer tag lookups from the bucket's push records, not the index table",
    )
    if at:
        parser.add_argument(
            "--at", metavar="TIME", help="tag lookups as of this time (ISO 8601, UTC if no offset)"
        )


def catalog_from(args: argparse.Namespace) -> Catalog:
    return services_from(args).catalog(from_bucket=getattr(args, "from_bucket", False))


def at_from(args: argparse.Namespace) -> datetime | None:
    text = getattr(args, "at", None)
    return parse_time(text) if text else None
