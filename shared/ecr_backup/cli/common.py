"""Options and output shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ecr_backup.composition import AwsServices
from ecr_backup.restore.catalog import Catalog
from ecr_backup.settings import Settings
from ecr_backup.storage.records import parse_time


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("backup location (flags win over environment)")
    group.add_argument("--bucket", help="S3 bucket (ECR_BACKUP_BUCKET)")
    group.add_argument("--table", help="DynamoDB index table (ECR_BACKUP_TABLE)")
    group.add_argument("--prefix", help="key prefix inside the bucket (ECR_BACKUP_PREFIX)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")


def add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source-registry",
        help="registry URL overriding the ECR endpoint (ECR_BACKUP_SOURCE_REGISTRY)",
    )
    parser.add_argument(
        "--concurrency", type=int, help="blobs copied at once (ECR_BACKUP_CONCURRENCY, default 4)"
    )


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {
        name: getattr(args, name, None)
        for name in ("bucket", "table", "prefix", "source_registry", "concurrency")
    }
    return Settings.load(os.environ, **overrides)


def services_from(args: argparse.Namespace) -> AwsServices:
    return AwsServices(settings_from(args))


def emit(args: argparse.Namespace, document: Any, text_lines: Sequence[str]) -> None:
    """Print JSON for machines (--json) or the given lines for people."""
    if getattr(args, "json", False):
        json.dump(document, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        for line in text_lines:
            print(line)


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
