"""The read model: what the backup holds, as of any time, for restore, maintenance and serve."""
