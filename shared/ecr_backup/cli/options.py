"""Options every command takes, accepted before or after the subcommand.

`ecr-backup --json tags x` and `ecr-backup tags x --json` mean the same: the options are
on the main parser and, through `Commands.add_parser`, on every subcommand's parser, so
a command added later gets them without doing anything.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from ecr_backup.progress import ProgressFactory, no_progress


def _add_global_options(parser: argparse.ArgumentParser, *, after: bool) -> None:
    # After the subcommand, defaults are SUPPRESS so that an option given before it is not
    # reset by the subcommand's parser; -v counts separately and the two counts add up.
    default: Any = argparse.SUPPRESS if after else False
    group = parser.add_argument_group("output (before or after the command)")
    group.add_argument("--json", action="store_true", default=default, help="JSON on stdout")
    group.add_argument(
        "-q", "--quiet", action="store_true", default=default, help="no progress, no summaries"
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        dest="verbose_after" if after else "verbose",
        default=argparse.SUPPRESS if after else 0,
        help="debug logs (-vv: also botocore's)",
    )
    group.add_argument(
        "--no-progress", action="store_true", default=default, help="no progress bar"
    )
    group.add_argument(
        "--no-trunc", action="store_true", default=default, help="full digests in tables"
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
        parser: argparse.ArgumentParser = super().add_parser(name, **kwargs)
        return parser


def add_global_options(parser: argparse.ArgumentParser) -> Any:
    """The global options on the main parser; returns the subcommand registry."""
    _add_global_options(parser, after=False)
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
