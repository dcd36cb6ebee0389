"""Separate backup account mode: the read-only role templates/source-account.yaml creates
in each source account, which backfill and the scheduled reconcile assume to list ECR."""

from __future__ import annotations

# The role name templates/source-account.yaml gives the read-only role.
SOURCE_READ_ROLE = "ecr-backup-source-read"


def source_role_arn(account: str, region: str) -> str:
    """The read-only role templates/source-account.yaml creates in `account`."""
    if region.startswith("cn-"):
        partition = "aws-cn"
    else:
        partition = "aws-us-gov" if region.startswith("us-gov-") else "aws"
    return f"arn:{partition}:iam::{account}:role/{SOURCE_READ_ROLE}"
