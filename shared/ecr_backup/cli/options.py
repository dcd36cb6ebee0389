"""Options every command takes, accepted before or after the subcommand; help that
describes each command and shows its defaults.

`ecr-backup --json tags x` and `ecr-backup tags x --json` mean the same: the options are
on the main parser and, through `Commands.add_parser`, on every subcommand's parser, so
a command added later gets them without doing anything.

How to add a command (CONTRIBUTING):
- register it with `commands.add_parser(name, help=...)` in its module's `register`: it
  gets the output options (--json, -q, -v, --no-progress, --no-trunc) on both sides, the
  help text as its --help description (or pass `description=`), and defaults shown in
  --help (write `default=` on the argument, not "default 4" in its help text);
- if it reads the backup, call `common.add_storage_options(parser)`: --bucket, --table,
  --prefix, --profile and --region are then accepted after the command too (before it,
  the main parser always takes them);
- print results through `common.emit`, giving it the report object itself: --json
  validates it with the command's model in `ecr_backup/schema.py` (add one to SCHEMAS,
  with `_at(...)` aliases where the report names a field otherwise, and an example to
  docs/json.md); `summary=True` for lines that -q leaves out, `problems=` for those it
  keeps; anything else for people goes to stderr, through `logging` (debug lines are
  what -v shows); counts through `text.counted`, times through `model.rfc3339`, sizes
  through `common.human_size`;
- main() makes a closed stdout (`| head -1`) end quietly with exit 0, for any command.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from ecr_backup.progress import ProgressFactory, no_progress

_NO_DEFAULT = (None, False, argparse.SUPPRESS)


class HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default, unless it has none worth showing (None, off, [])."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or default in _NO_DEFAULT or default == []:
            return text
        if not action.option_strings and action.nargs not in ("?", "*"):
            return text  # a required positional has no default
        return f"{text} (default: %(default)s)"


def _add_global_options(parser: argparse.ArgumentParser, *, after: bool) -> None:
    # After the subcommand, defaults are SUPPRESS so that an option given before it is not
    # reset by the subcommand's parser; -v counts separately and the two counts add up.
    default: Any = argparse.SUPPRESS if after else False
    group = parser.add_argument_group("output (before or after the command)")
    group.add_argument("--json", action="store_true", default=default, help="JSON on stdout")
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default,
        help="only errors and the data asked for: no progress, no summaries",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        dest="verbose_after" if after else "verbose",
        default=argparse.SUPPRESS if after else 0,
        help="the tool's steps, manifest by manifest and blob by blob (-vv: also botocore's)",
    )
    group.add_argument(
        "--no-progress", action="store_true", default=default, help="no progress bar"
    )
    group.add_argument(
        "--no-trunc", action="store_true", default=default, help="full digests in tables"
    )


def add_location_options(parser: argparse.ArgumentParser, *, after: bool) -> None:
    """Where the backup is, and whose AWS session reads it (flags win over environment)."""
    default: Any = argparse.SUPPRESS if after else None
    group = parser.add_argument_group("backup location (before or after the command)")
    group.add_argument("--bucket", default=default, help="S3 bucket (ECR_BACKUP_BUCKET)")
    group.add_argument("--table", default=default, help="DynamoDB index table (ECR_BACKUP_TABLE)")
    group.add_argument(
        "--prefix", default=default, help="key prefix inside the bucket (ECR_BACKUP_PREFIX)"
    )
    group.add_argument(
        "--profile", default=default, help="AWS profile of the backup side (AWS_PROFILE)"
    )
    group.add_argument(
        "--region",
        default=default,
        help="AWS region of the backup side (else AWS_REGION, AWS_DEFAULT_REGION, the profile's)",
    )


def _after_command_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    _add_global_options(parent, after=True)
    return parent


_AFTER = _after_command_options()


class Commands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Subcommand registry that gives every command the global options."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs["parents"] = [*kwargs.get("parents", ()), _AFTER]
        kwargs.setdefault("description", _sentence(kwargs.get("help")))
        kwargs.setdefault("formatter_class", HelpFormatter)
        parser: argparse.ArgumentParser = super().add_parser(name, **kwargs)
        return parser


def _sentence(text: str | None) -> str | None:
    return f"{text[0].upper()}{text[1:]}." if text else None


def add_global_options(parser: argparse.ArgumentParser) -> Any:
    """The global options on the main parser; returns the subcommand registry."""
    _add_global_options(parser, after=False)
    add_location_options(parser, after=False)
    return parser.add_subparsers(dest="command", required=True, metavar="COMMAND", action=Commands)


def settle(args: argparse.Namespace) -> argparse.Namespace:
    """Merge the two -v counts and set up logging: ours at -v, botocore's at -vv."""
    args.verbose = args.verbose + getattr(args, "verbose_after", 0)
    level = logging.ERROR if args.quiet else logging.WARNING
    # With -v the logger's name says whose line it is (ecr_backup.*, botocore.*, urllib3).
    name = "%(name)s: " if args.verbose else ""
    logging.basicConfig(format=f"ecr-backup: %(levelname)s: {name}%(message)s")
    # Levels are set on every call: main() may run several times in one process (tests).
    logging.getLogger().setLevel(logging.DEBUG if args.verbose >= 2 else level)
    ours = logging.getLogger("ecr_backup")
    ours.setLevel(logging.DEBUG if args.verbose >= 1 else logging.NOTSET)
    return args


def progress_for(args: argparse.Namespace) -> ProgressFactory:
    """Bars only for a person at a terminal: never with --json, -q, --no-progress, or when
    stdout or stderr is not a terminal (a pipe, a file, a Lambda's log)."""
    if args.json or args.quiet or args.no_progress:
        return no_progress
    if not (sys.stdout.isatty() and sys.stderr.isatty()):
        return no_progress
    from ecr_backup.cli.progress import RichProgress  # rich is imported only when drawn

    return RichProgress.factory()
