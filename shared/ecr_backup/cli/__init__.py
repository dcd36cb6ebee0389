"""The `ecr-backup` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ecr_backup import __version__
from ecr_backup.cli import (
    backfill,
    backup,
    drill,
    maintenance,
    queries,
    restore,
    status,
    surges,
    undelete,
)
from ecr_backup.cli.interrupts import interrupts_cancel
from ecr_backup.cli.options import add_global_options, settle
from ecr_backup.composition import Adapters
from ecr_backup.errors import EcrBackupError, ExitCode, RefusedError

PROG = "ecr-backup"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Digest-exact, incremental backups of container images into S3."
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
    return parser


def main(argv: Sequence[str] | None = None, *, adapters: Adapters | None = None) -> int:
    """Run one command; `adapters` replace the AWS ones (tests pass fakes)."""
    parser = build_parser()
    args = settle(parser.parse_args(argv))
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
        print(f"{PROG}: error: {e.one_line()}", file=sys.stderr)
        return int(e.exit_code)
    except KeyboardInterrupt:
        # Cleanup ran on the way here: uploads aborted, sessions deleted, partial files gone.
        print(f"{PROG}: interrupted; nothing was left half-written", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    return code


if __name__ == "__main__":
    sys.exit(main())
