"""AWS sessions: the backup side's and a restore target's (a profile, a region, an assumed
role), every client with the same timeouts and retries."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, NoRegionError

from ecr_backup.awserrors import translate
from ecr_backup.errors import ConfigurationError
from ecr_backup.settings import (
    AWS_CONNECT_TIMEOUT_SECONDS,
    AWS_MAX_ATTEMPTS,
    AWS_READ_TIMEOUT_SECONDS,
)

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config


@cache
def client_config() -> Config:
    """Every AWS client's timeouts and retries (the budget is written next to the numbers in
    settings.py): an endpoint unreachable or silent fails in seconds, a throttled call is
    retried, a slow transfer that progresses is not cut (the timeouts bound each read)."""
    # Imported here, not at module level: botocore.config pulls in most of botocore
    # (about 150 ms), which the Lambda handler's cold import should not pay before the
    # first invocation builds its clients.
    from botocore.config import Config

    return Config(
        connect_timeout=AWS_CONNECT_TIMEOUT_SECONDS,
        read_timeout=AWS_READ_TIMEOUT_SECONDS,
        retries={"mode": "standard", "total_max_attempts": AWS_MAX_ATTEMPTS},
    )


ASSUMED_ROLE_SESSION = "ecr-backup-restore"


def open_session(
    profile: str | None = None,
    region: str | None = None,
    *,
    role_arn: str | None = None,
    base: boto3.Session | None = None,
) -> boto3.Session:
    """A session from the environment (profile, region, credentials chain), or the named
    profile and region, whose clients all get client_config(). With `role_arn`, that role is
    assumed with the profile's (or `base`'s) credentials and refreshed before it expires.
    A missing region is refused here rather than guessed."""
    import boto3
    import botocore.session

    try:
        core = botocore.session.Session(profile=profile)
        core.set_default_client_config(client_config())
        if base is not None and profile is None:
            # The base's loader, whose cache holds the service models already read: a
            # reconcile assumes one role per source registry, thousands in an
            # organization, and each new session would otherwise read them from disk.
            # (A named profile gets its own: its configuration may point elsewhere.)
            core.register_component("data_loader", base._session.get_component("data_loader"))
        if role_arn is not None:
            source = (
                base
                if base is not None and profile is None
                else boto3.Session(botocore_session=core)
            )
            region = region or source.region_name
            _assume(core, source, role_arn, region)
        session = boto3.Session(botocore_session=core, region_name=region)
        if session.region_name is None:
            raise NoRegionError()
    except BotoCoreError as e:
        raise translate(e, "open the AWS session", ConfigurationError) from e
    return session


def _assume(core: Any, source: boto3.Session, role_arn: str, region: str | None) -> None:
    """Give `core` the role's credentials, refreshed by botocore before they expire."""
    from botocore.credentials import RefreshableCredentials
    from botocore.exceptions import ClientError

    sts = source.client("sts", region_name=region or "us-east-1", config=client_config())

    def refresh() -> dict[str, str]:
        try:
            answer = sts.assume_role(RoleArn=role_arn, RoleSessionName=ASSUMED_ROLE_SESSION)
        except (BotoCoreError, ClientError) as e:
            raise translate(e, f"assume {role_arn}", ConfigurationError) from e
        creds = answer["Credentials"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    # botocore has no public setter for a session's credential provider.
    core._credentials = RefreshableCredentials.create_from_metadata(
        refresh(), refresh, "assume-role"
    )
