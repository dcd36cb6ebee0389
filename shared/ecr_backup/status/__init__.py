"""`ecr-backup status`: is the backup healthy, and since when not (status.service), from
the stack (stack.aws), the index and the scheduled jobs' last runs (status.runs)."""
