"""Coverage: the diff between a source registry and the backup, and the backfill that closes it."""
