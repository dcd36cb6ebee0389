"""Backing up: ECR events, the replicator and the one event service."""
