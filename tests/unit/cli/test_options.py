"""Global options before or after the command, for commands registered later too; logging
levels; progress only for a person at a terminal."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from ecr_backup.cli import build_parser
from ecr_backup.cli.common import short, table
from ecr_backup.cli.options import add_global_options, progress_for, settle
from ecr_backup.progress import no_progress

ROOT = Path(__file__).resolve().parents[3]


def parse(*argv: str) -> argparse.Namespace:
    return settle(build_parser().parse_args(list(argv)))


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "-q", "--no-progress", "tags", "team/app"],
        ["tags", "team/app", "--json", "-q", "--no-progress"],
        ["--json", "tags", "team/app", "--quiet", "--no-progress"],
    ],
)
def test_global_options_before_or_after_the_command(argv: list[str]) -> None:
    args = parse(*argv)
    assert (args.json, args.quiet, args.no_progress, args.repository) == (
        True,
        True,
        True,
        "team/app",
    )


def test_verbosity_counts_on_both_sides_and_botocore_logs_only_at_two() -> None:
    assert parse("tags", "x").verbose == 0
    assert parse("-v", "tags", "x").verbose == 1
    assert parse("tags", "x", "-v").verbose == 1
    parse("-v", "tags", "x")
    assert logging.getLogger("ecr_backup").getEffectiveLevel() == logging.DEBUG
    assert logging.getLogger("botocore").getEffectiveLevel() == logging.WARNING
    parse("-v", "tags", "x", "-v")
    assert logging.getLogger("botocore").getEffectiveLevel() == logging.DEBUG
    parse("tags", "x", "-q")
    assert logging.getLogger("ecr_backup").getEffectiveLevel() == logging.ERROR
    parse("tags", "x")  # the next run in the same process starts from the defaults
    assert logging.getLogger("ecr_backup").getEffectiveLevel() == logging.WARNING


def test_a_command_registered_later_gets_the_global_options() -> None:
    parser = argparse.ArgumentParser(prog="x")
    commands = add_global_options(parser)
    commands.add_parser("later").add_argument("--own")
    args = settle(parser.parse_args(["later", "--own", "1", "--json", "-vv"]))
    assert args.json and args.verbose == 2 and args.own == "1"
    settle(parser.parse_args(["later"]))


def test_no_progress_without_a_terminal_or_when_asked_not_to() -> None:
    # Under pytest stdout is captured: never a terminal.
    assert progress_for(parse("restore", "--all-repositories")) is no_progress
    assert progress_for(parse("--json", "verify")) is no_progress
    assert progress_for(parse("verify", "-q")) is no_progress


def test_tables_shorten_digests_unless_no_trunc_and_fit_100_columns() -> None:
    digest = "sha256:" + "0123456789ab" + "f" * 52
    assert short(parse("tags", "x"), digest) == "0123456789ab"
    assert short(parse("tags", "x", "--no-trunc"), digest) == digest
    row = ["release-2026.03.01", "0123456789ab", "2026-03-01T09:12:44Z", "removed", "1023.9 MiB"]
    lines = table([row], ["TAG", "DIGEST", "SINCE", "STATE", "SIZE"])
    assert max(len(line) for line in lines) <= 100


@pytest.mark.parametrize(
    ("modules", "imports_rich"),
    [
        ("replicate, ecr_backup.composition, ecr_backup.backup.service", False),
        ("ecr_backup.cli.progress", True),  # the check itself can tell
    ],
)
def test_the_lambda_never_imports_rich(modules: str, imports_rich: bool) -> None:
    code = f"import sys, {modules}; sys.exit(('rich' in sys.modules) != {imports_rich})"
    env = {
        "PYTHONPATH": f"{ROOT / 'shared'}:{ROOT / 'handlers'}",
        "PATH": "/usr/bin:/bin",
        "AWS_DEFAULT_REGION": "us-east-1",
        "ECR_BACKUP_BUCKET": "bucket-name",
        "ECR_BACKUP_TABLE": "table-name",
        "POWERTOOLS_SERVICE_NAME": "ecr-backup",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr or f"{modules}: rich imported: {not imports_rich}"
