"""ecr-backup: digest-exact, incremental backups of container registries into S3."""

__version__ = "0.1.0"
