"""The command line a person expects: the location options on either side of the command,
AWS_REGION, help that describes and shows defaults, a closed stdout that ends quietly,
flags in messages that exist, counts in the right number, -q and -v."""

from __future__ import annotations

import argparse
import ast
import io
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import ecr_backup.cli
from ecr_backup.cli import build_parser, main
from ecr_backup.cli.common import SETTING_FLAGS, services_from
from ecr_backup.cli.options import settle
from ecr_backup.errors import StorageError
from ecr_backup.text import counted
from tests.helpers import BUCKET, TABLE, Backup, minutes, parser_commands

ROOT = Path(__file__).resolve().parents[3]
LOCATION = {
    "bucket": "--bucket",
    "table": "--table",
    "prefix": "--prefix",
    "profile": "--profile",
    "region": "--region",
}


def minimal_argv(sub: argparse.ArgumentParser) -> list[str]:
    """Arguments that satisfy a subcommand's parser: its positionals and required groups."""
    argv: list[str] = []
    for action in sub._actions:
        if not action.option_strings and action.nargs in (None, "+"):
            argv.append("team/app:v1")
        elif action.required and action.option_strings:
            argv += [action.option_strings[0], "x"]
    for group in sub._mutually_exclusive_groups:
        if group.required:
            argv += [group._group_actions[0].option_strings[0], "out"]
    return argv


def takes_location(sub: argparse.ArgumentParser) -> bool:
    return any("--bucket" in a.option_strings for a in sub._actions)


@pytest.mark.parametrize("command", sorted(parser_commands()))
def test_location_options_before_or_after_every_command(command: str) -> None:
    sub = parser_commands()[command]
    flags = [part for name, flag in LOCATION.items() for part in (flag, f"{name}-value")]
    before = build_parser().parse_args([*flags, command, *minimal_argv(sub)])
    assert {name: getattr(before, name) for name in LOCATION} == {
        name: f"{name}-value" for name in LOCATION
    }
    if takes_location(sub):
        after = build_parser().parse_args([command, *minimal_argv(sub), *flags])
        assert vars(after) == vars(before)
    unset = build_parser().parse_args([command, *minimal_argv(sub)])
    assert all(getattr(unset, name) is None for name in LOCATION)


def test_a_command_registered_later_gets_the_location_options_and_help() -> None:
    parser = argparse.ArgumentParser(prog="x")
    commands = ecr_backup.cli.options.add_global_options(parser)
    later = commands.add_parser("later", help="do the later thing")
    later.add_argument("--size", type=int, default=7, help="how many")
    ecr_backup.cli.common.add_storage_options(later)
    args = parser.parse_args(["--region", "eu-west-1", "later", "--bucket", "b"])
    assert (args.region, args.bucket, args.size) == ("eu-west-1", "b", 7)
    text = later.format_help()
    assert "Do the later thing." in text and "how many (default: 7)" in text


@pytest.mark.parametrize(
    ("flag", "aws_region", "expected"),
    [
        (None, None, "us-east-1"),  # AWS_DEFAULT_REGION, as botocore reads it
        (None, "eu-west-1", "eu-west-1"),  # AWS_REGION wins over AWS_DEFAULT_REGION
        ("ap-south-1", "eu-west-1", "ap-south-1"),  # and --region over both
    ],
)
def test_the_region_is_the_flag_then_aws_region_then_botocore_s(
    aws: None,
    monkeypatch: pytest.MonkeyPatch,
    flag: str | None,
    aws_region: str | None,
    expected: str,
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    if aws_region is None:
        monkeypatch.delenv("AWS_REGION", raising=False)
    else:
        monkeypatch.setenv("AWS_REGION", aws_region)
    argv = ["--bucket", BUCKET, "--table", TABLE, "tags", "x"]
    args = build_parser().parse_args(argv + (["--region", flag] if flag else []))
    assert services_from(args).session.region_name == expected


@pytest.mark.parametrize("command", sorted(parser_commands()))
def test_every_command_s_help_describes_it_and_shows_its_defaults(command: str) -> None:
    sub = parser_commands()[command]
    text = " ".join(sub.format_help().split())
    assert sub.description and " ".join(sub.description.split()[:5]) in text
    for action in sub._actions:
        shown = action.default not in (None, False, [], argparse.SUPPRESS)
        if shown and action.option_strings and action.help != argparse.SUPPRESS:
            assert f"(default: {action.default})" in text, (command, action.dest)
    assert "(default: None)" not in text and "(default: False)" not in text


def test_the_main_help_lists_every_command_with_its_help() -> None:
    text = build_parser().format_help()
    for name in parser_commands():
        assert re.search(rf"^\s+{re.escape(name)}\s+\S", text, re.M), name


# -- a closed stdout ------------------------------------------------------------------------


@pytest.fixture
def closed_stdout(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """stdout a pipe whose reader has gone (as after `| head -1`); stderr captured."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    saved = os.dup(1)
    os.dup2(write_end, 1)  # _stdout_closed points fd 1 at /dev/null: restored below
    os.close(write_end)
    stderr = io.StringIO()
    monkeypatch.setattr("sys.stdout", open(1, "w", closefd=False))  # noqa: SIM115
    monkeypatch.setattr("sys.stderr", stderr)
    yield stderr
    os.dup2(saved, 1)
    os.close(saved)


def run_with(monkeypatch: pytest.MonkeyPatch, work: Callable[[], int]) -> int:
    def with_work(args: argparse.Namespace) -> argparse.Namespace:
        args.run = lambda _: work()
        return settle(args)

    monkeypatch.setattr(ecr_backup.cli, "settle", with_work)
    return main(["repos"])


def write_lines(count: int) -> Callable[[], int]:
    def work() -> int:
        for n in range(count):
            print(f"line {n}")
        return 0

    return work


def raise_translated() -> int:
    try:
        raise BrokenPipeError(32, "Broken pipe")
    except BrokenPipeError as e:
        raise StorageError("writing the archive to stdout failed") from e


@pytest.mark.parametrize(
    "work",
    [write_lines(100_000), write_lines(1), raise_translated],
    ids=["while running", "at the last flush", "translated by an adapter"],
)
def test_a_closed_stdout_ends_quietly_with_zero(
    monkeypatch: pytest.MonkeyPatch, closed_stdout: io.StringIO, work: Callable[[], int]
) -> None:
    assert run_with(monkeypatch, work) == 0
    assert closed_stdout.getvalue() == ""


def test_other_errors_still_say_what_went_wrong(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail() -> int:
        raise StorageError("s3://b/k: it broke")

    assert run_with(monkeypatch, fail) == 4
    assert capsys.readouterr().err == "ecr-backup: error: s3://b/k: it broke\n"


# -- words ----------------------------------------------------------------------------------


def test_counts_are_singular_for_one() -> None:
    assert [counted(n, "image") for n in (0, 1, 2)] == ["0 images", "1 image", "2 images"]
    assert counted(1, "repository") == "1 repository"
    assert counted(3, "repository") == "3 repositories" and counted(2, "day") == "2 days"


def _strings(path: Path) -> Iterator[str]:
    """The string constants of a module that are not docstrings (messages, help texts)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            yield node.value


def test_every_flag_a_message_names_exists() -> None:
    options = {o for a in build_parser()._actions for o in a.option_strings}
    for sub in parser_commands().values():
        options |= {o for a in sub._actions for o in a.option_strings}
    sources = [*(ROOT / "shared" / "ecr_backup").rglob("*.py"), *(ROOT / "handlers").glob("*.py")]
    named = {
        (flag, path.name)
        for path in sources
        for text in _strings(path)
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", text)
    }
    assert named, "the scan found no flag at all"
    assert {(flag, where) for flag, where in named if flag not in options} == set()
    assert set(SETTING_FLAGS.values()) <= options


def test_a_bad_setting_names_the_flag_that_exists(
    backup: Backup, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["prune", "--dry-run", "--grace-hours", "0"]) == 2
    err = capsys.readouterr().err
    assert "(--grace-hours)" in err and "--prune-grace-hours" not in err


# -- -q and -v ------------------------------------------------------------------------------


@pytest.fixture
def backup(store: Any, index: Any, monkeypatch: pytest.MonkeyPatch) -> Backup:
    monkeypatch.setenv("ECR_BACKUP_BUCKET", BUCKET)
    monkeypatch.setenv("ECR_BACKUP_TABLE", TABLE)
    monkeypatch.setenv("ECR_BACKUP_PREFIX", "backup/")
    made = Backup(store, index)
    made.push("team/app", made.image("team/app"), "v1", minutes(1))
    return made


def test_quiet_leaves_only_errors_and_the_data_asked_for(
    backup: Backup, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    done = [
        ["verify"],
        ["hold", "team/app:v1"],
        ["release", "team/app:v1"],
        ["maintain"],
        ["prune"],
        ["export", "team/app:v1", "--oci", str(tmp_path / "layout")],
    ]
    for argv in done:
        assert main([*argv, "-q"]) == 0, capsys.readouterr().err
        assert capsys.readouterr() == ("", ""), argv
    asked = [["repos"], ["tags", "team/app"], ["stats"], ["prune", "--dry-run"]]
    for argv in asked:
        assert main(["-q", *argv]) == 0
        out, err = capsys.readouterr()
        assert out and not err, argv


def test_verbose_tells_each_blob_without_botocore(
    backup: Backup, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    layout = str(tmp_path / "layout")
    with caplog.at_level(logging.NOTSET):
        assert main(["-v", "export", "team/app:v1", "--oci", layout]) == 0
    steps = [r for r in caplog.records if r.name == "ecr_backup.restore.export"]
    assert [r.getMessage().split()[0] for r in steps] == ["blob"] * 3  # config, two layers
    assert not [r for r in caplog.records if r.name.startswith(("botocore", "urllib3"))]
    caplog.clear()
    with caplog.at_level(logging.NOTSET):
        assert main(["export", "team/app:v1", "--oci", layout]) == 0
    assert not [r for r in caplog.records if r.levelno < logging.WARNING]
