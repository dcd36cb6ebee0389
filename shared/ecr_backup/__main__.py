"""`python -m ecr_backup` and the `ecr-backup` script: the command line, started lean."""

import gc
import sys


def run() -> int:
    # Importing the command line makes some 100,000 objects that live as long as the
    # process; the cyclic collector walking them again and again as they are made cost
    # about 60 ms of every command's CPU (docs/bench.md, "Start-up"). It is off while they
    # are made, then on again with them frozen out of its way.
    gc.disable()
    try:
        from ecr_backup.cli import main
    finally:
        gc.freeze()
        gc.enable()
    return main()


if __name__ == "__main__":
    sys.exit(run())
