"""Separate-account listing: the source account's read-only role, assumed through STS."""

from __future__ import annotations

from typing import Any

import boto3

from ecr_backup.composition import AwsServices
from ecr_backup.registry.source_account import SOURCE_READ_ROLE, source_role_arn
from ecr_backup.settings import Settings
from tests.helpers import BUCKET, TABLE


def signing_credentials(client: Any) -> Any:
    return client._request_signer._credentials.get_frozen_credentials()


def test_role_arn_follows_the_partition_of_the_region() -> None:
    assert source_role_arn("111122223333", "eu-west-1") == (
        f"arn:aws:iam::111122223333:role/{SOURCE_READ_ROLE}"
    )
    assert source_role_arn("111122223333", "cn-north-1").startswith("arn:aws-cn:")
    assert source_role_arn("111122223333", "us-gov-west-1").startswith("arn:aws-us-gov:")


def test_listing_through_a_role_uses_its_credentials_and_is_reused(aws: None) -> None:
    session = boto3.Session(region_name="us-east-1")
    services = AwsServices(Settings(bucket=BUCKET, table=TABLE), session)
    role = source_role_arn("123456789012", "eu-west-1")
    boto3.client("ecr", region_name="eu-west-1").create_repository(repositoryName="team/app")

    listing = services.listing("123456789012", "eu-west-1", role)

    ours = session.get_credentials()
    assert ours is not None
    client = listing._ecr  # the adapter's client: whose credentials, which region
    credentials = signing_credentials(client)
    assert credentials.access_key != ours.access_key and credentials.token  # STS's
    assert client.meta.region_name == "eu-west-1"
    assert list(listing.repositories()) == ["team/app"]
    assert services.listing("123456789012", "eu-west-1", role) is listing
    own = services.listing("123456789012", "eu-west-1")
    assert signing_credentials(own._ecr).access_key == ours.access_key
