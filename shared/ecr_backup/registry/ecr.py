"""ECR's specifics: registry hosts, authorization tokens and whose account a session is."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from ecr_backup.awserrors import translate
from ecr_backup.errors import RegistryError

if TYPE_CHECKING:
    import boto3


def ecr_registry_url(account: str, region: str) -> str:
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://{account}.dkr.ecr.{region}.{suffix}"


class EcrTokenSource:
    """GetAuthorizationToken for one registry; the token is base64 'AWS:<password>'."""

    def __init__(self, session: boto3.Session, account: str, region: str) -> None:
        self._account = account
        try:
            self._ecr = session.client("ecr", region_name=region)
        except BotoCoreError as e:
            raise translate(e, "create the ECR client", RegistryError) from e

    def __call__(self) -> tuple[str, datetime]:
        try:
            answer = self._ecr.get_authorization_token(registryIds=[self._account])
        except (ClientError, BotoCoreError) as e:
            what = f"get an ECR token for registry {self._account}"
            raise translate(e, what, RegistryError) from e
        data = answer["authorizationData"][0]
        return data["authorizationToken"], data["expiresAt"]


def caller_arn(session: boto3.Session) -> str:
    """Who these credentials are (STS GetCallerIdentity's ARN): audit records name them."""
    region = session.region_name or "us-east-1"
    try:
        return str(session.client("sts", region_name=region).get_caller_identity()["Arn"])
    except (ClientError, BotoCoreError) as e:
        raise translate(e, "find who these AWS credentials are", RegistryError) from e


def caller_identity(session: boto3.Session) -> tuple[str, str]:
    """The account and region a boto3 session acts in (STS GetCallerIdentity)."""
    region = session.region_name or "us-east-1"
    try:
        account = session.client("sts", region_name=region).get_caller_identity()["Account"]
    except (ClientError, BotoCoreError) as e:
        raise translate(e, "find which AWS account these credentials are", RegistryError) from e
    return account, region
