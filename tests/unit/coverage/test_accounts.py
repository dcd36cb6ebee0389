"""Which source registries a reconcile lists (ecr_backup.coverage.accounts)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from ecr_backup.coverage.accounts import plan_sources
from ecr_backup.coverage.reconcile import Source
from ecr_backup.errors import ConfigurationError

OWN = Source("999999999999", "us-east-1")


@dataclass(frozen=True)
class Seen:
    account: str
    region: str
    first_seen: datetime = datetime(2026, 1, 1, tzinfo=UTC)


class FakeOrganization:
    def __init__(self, *accounts: str) -> None:
        self.accounts = list(accounts)

    def active_accounts(self) -> list[str]:
        return self.accounts


class FakeSeen:
    def __init__(self, *seen: Seen) -> None:
        self.found = list(seen)

    def seen(self) -> list[Seen]:
        return self.found


def test_a_list_is_every_account_in_every_region_once() -> None:
    plan = plan_sources(
        "list", listed=["2" * 12, "1" * 12, "2" * 12], regions=["eu-west-1", "us-east-1"], own=OWN
    )
    assert plan.sources == (
        Source("1" * 12, "eu-west-1"),
        Source("1" * 12, "us-east-1"),
        Source("2" * 12, "eu-west-1"),
        Source("2" * 12, "us-east-1"),
    )


def test_nothing_listed_is_the_stacks_own_registry() -> None:
    assert plan_sources("list", listed=[], regions=[], own=OWN).sources == (OWN,)


def test_the_organization_gives_the_accounts_and_the_parameter_the_regions() -> None:
    organization = FakeOrganization("1" * 12, "2" * 12)
    plan = plan_sources(
        "organization", listed=[], regions=["eu-west-1"], own=OWN, organization=organization
    )
    assert plan.sources == (Source("1" * 12, "eu-west-1"), Source("2" * 12, "eu-west-1"))


def test_the_organization_without_its_role_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="needs OrganizationReadRoleArn"):
        plan_sources("organization", listed=[], regions=[], own=OWN)


def test_events_give_their_registries_or_their_accounts_in_the_given_regions() -> None:
    seen = FakeSeen(Seen("1" * 12, "eu-west-1"), Seen("1" * 12, "ap-south-1"))
    exact = plan_sources("events", listed=[], regions=[], own=OWN, seen=seen)
    assert exact.sources == (Source("1" * 12, "ap-south-1"), Source("1" * 12, "eu-west-1"))
    given = plan_sources("events", listed=[], regions=["us-east-1"], own=OWN, seen=seen)
    assert given.sources == (Source("1" * 12, "us-east-1"),)
    # No event yet: the stack's own registry.
    assert plan_sources("events", listed=[], regions=[], own=OWN, seen=FakeSeen()).sources == (OWN,)
