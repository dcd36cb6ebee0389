"""`python -m ecr_backup` is the `ecr-backup` command."""

import sys

from ecr_backup.cli import main

sys.exit(main())
