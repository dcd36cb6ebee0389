"""`serve`: the backup as a read-only OCI Distribution API v2 registry."""
