"""Keeping a backup sound: verify, rebuild-index."""
