"""The `ecr-backup` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ecr_backup import __version__
from ecr_backup.cli import (
    backfill,
    backup,
    coverage,
    drill,
    maintenance,
    queries,
    restore,
    serve,
    status,
    surges,
    undelete,
)
from ecr_backup.cli.interrupts import interrupts_cancel
from ecr_backup.cli.options import HelpFormatter, add_global_options, settle
from ecr_backup.composition import Adapters
from ecr_backup.errors import EcrBackupError, ExitCode, RefusedError

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
    surges.register(commands)
    drill.register(commands)
    status.register(commands)
    undelete.register(commands)
    serve.register(commands)
    coverage.register(commands)
    return parser


def main(argv: Sequence[str] | None = None, *, adapters: Adapters | None = None) -> int:
    """Run one command; `adapters` replace the AWS ones (tests pass fakes)."""
    try:
        code = _run(argv, adapters)
        sys.stdout.flush()  # a closed pipe shows here, not in Python's flush at exit
    except SystemExit:  # argparse's --help, --version and usage errors
        _flush_stdout()
        raise
    except BrokenPipeError:
        _stdout_closed()
        return 0
    return code


def _run(argv: Sequence[str] | None, adapters: Adapters | None) -> int:
    args = settle(build_parser().parse_args(argv))
    args.adapters = adapters
    try:
        with interrupts_cancel():
            code: int = args.run(args)
    except RefusedError as e:
        for line in e.details:
            print(line, file=sys.stderr)
        print(f"{PROG}: error: {e.one_line()}", file=sys.stderr)
        return int(e.exit_code)
    except EcrBackupError as e:
        if isinstance(e.__cause__, BrokenPipeError):  # translated where it was written
            raise e.__cause__ from None
        print(f"{PROG}: error: {e.one_line()}", file=sys.stderr)
        return int(e.exit_code)
    except KeyboardInterrupt:
        # Cleanup ran on the way here: uploads aborted, sessions deleted, partial files gone.
        print(f"{PROG}: interrupted; nothing was left half-written", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
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
