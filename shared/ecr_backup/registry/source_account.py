"""Separate backup account mode: list a source account's ECR through the read-only role
templates/source-account.yaml creates there, with credentials that renew themselves."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.credentials import RefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError
from botocore.session import get_session

from ecr_backup.awserrors import translate
from ecr_backup.errors import ConfigurationError

if TYPE_CHECKING:
    import boto3

SESSION_NAME = "ecr-backup-reconcile"
# The role name templates/source-account.yaml gives the read-only role.
SOURCE_READ_ROLE = "ecr-backup-source-read"


def source_role_arn(account: str, region: str) -> str:
    """The read-only role templates/source-account.yaml creates in `account`."""
    if region.startswith("cn-"):
        partition = "aws-cn"
    else:
        partition = "aws-us-gov" if region.startswith("us-gov-") else "aws"
    return f"arn:{partition}:iam::{account}:role/{SOURCE_READ_ROLE}"


def assumed_session(base: boto3.Session, role_arn: str, region: str) -> boto3.Session:
    """A session acting as `role_arn` (STS AssumeRole), renewed before it expires."""
    import boto3

    sts = base.client("sts", region_name=region)

    def fetch() -> dict[str, Any]:
        try:
            answer = sts.assume_role(RoleArn=role_arn, RoleSessionName=SESSION_NAME)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"assume role {role_arn}", ConfigurationError) from e
        credentials = answer["Credentials"]
        return {
            "access_key": credentials["AccessKeyId"],
            "secret_key": credentials["SecretAccessKey"],
            "token": credentials["SessionToken"],
            "expiry_time": credentials["Expiration"].isoformat(),
        }

    botocore_session = get_session()
    # botocore has no public way to give a session refreshable credentials.
    botocore_session._credentials = RefreshableCredentials.create_from_metadata(  # type: ignore[attr-defined]
        metadata=fetch(), refresh_using=fetch, method="sts-assume-role"
    )
    botocore_session.set_config_variable("region", region)
    return boto3.Session(botocore_session=botocore_session, region_name=region)
