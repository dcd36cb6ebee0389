"""Two sessions from the one composition root: the backup side's, and an ECR target's in
another account (profile, region, or an assumed role)."""

from __future__ import annotations

import argparse

import boto3
import pytest
from botocore.credentials import RefreshableCredentials

from ecr_backup.awssession import open_session
from ecr_backup.cli.common import services_from
from ecr_backup.errors import ConfigurationError
from ecr_backup.registry.ecr import caller_identity

ROLE = "arn:aws:iam::222222222222:role/restorer"


def args(**values: object) -> argparse.Namespace:
    defaults: dict[str, object] = {"bucket": "backup-bucket", "table": "backup-index"}
    return argparse.Namespace(**{**defaults, **values})


def test_the_target_assumes_its_role_and_the_backup_side_keeps_its_own(aws: None) -> None:
    services = services_from(args(to_role_arn=ROLE, to_region="eu-west-1"))
    assert caller_identity(services.target_session) == ("222222222222", "eu-west-1")
    assert caller_identity(services.session) == ("123456789012", "us-east-1")
    alone = services_from(args())
    assert alone.target_session is alone.session


def test_an_assumed_role_session_refreshes_its_credentials(aws: None) -> None:
    session = open_session(region="eu-west-1", role_arn=ROLE, base=boto3.Session())
    credentials = session.get_credentials()
    assert isinstance(credentials, RefreshableCredentials)
    assert credentials.method == "assume-role" and credentials.refresh_needed() is False


def test_an_unknown_profile_is_a_configuration_error(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigurationError, match="no-such-profile"):
        services_from(args(to_profile="no-such-profile"))
