"""The `ecr-backup` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ecr_backup import __version__
from ecr_backup.cli import backfill, backup, maintenance, queries, restore
from ecr_backup.cli.options import HelpFormatter, add_global_options, settle
from ecr_backup.errors import EcrBackupError

PROG = "ecr-backup"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Digest-exact, incremental backups of container images into S3.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = add_global_options(parser)
    backup.register(commands)
    queries.register(commands)
    backfill.register(commands)
    restore.register(commands)
    maintenance.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _run(argv)
        sys.stdout.flush()  # a closed pipe shows here, not in Python's flush at exit
    except SystemExit:  # argparse's --help, --version and usage errors
        _flush_stdout()
        raise
    except BrokenPipeError:
        _stdout_closed()
        return 0
    return code


def _run(argv: Sequence[str] | None) -> int:
    args = settle(build_parser().parse_args(argv))
    try:
        code: int = args.run(args)
    except EcrBackupError as e:
        if isinstance(e.__cause__, BrokenPipeError):  # translated where it was written
            raise e.__cause__ from None
        print(f"{PROG}: error: {e.one_line()}", file=sys.stderr)
        return int(e.exit_code)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return code


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_closed()


def _stdout_closed() -> None:
    """The reader of stdout has gone (`ecr-backup tags x | head -1`): the command ends
    quietly with 0, as other tools on a pipe do. Python's own flush at exit would fail
    again (and turn the exit status into 120), so stdout now points at /dev/null."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
