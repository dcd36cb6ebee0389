"""The `ecr-backup` command line."""

from __future__ import annotations

import argparse
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
    status,
    surges,
)
from ecr_backup.cli.options import add_global_options, settle
from ecr_backup.errors import EcrBackupError

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
    coverage.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = settle(parser.parse_args(argv))
    try:
        code: int = args.run(args)
    except EcrBackupError as e:
        print(f"{PROG}: error: {e.one_line()}", file=sys.stderr)
        return int(e.exit_code)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
