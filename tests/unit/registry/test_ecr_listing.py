"""The ECR listing adapter against botocore's Stubber: every page, archived images asked
for, errors translated."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from ecr_backup.errors import ConfigurationError, RegistryError
from ecr_backup.registry.ecr_listing import EcrListing, ImageStatus

ACCOUNT = "111122223333"
PUSHED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def detail(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "registryId": ACCOUNT,
        "repositoryName": "team/app",
        "imageDigest": digest(n),
        "imagePushedAt": PUSHED,
        "imageSizeInBytes": 100 * n,
        **extra,
    }


@pytest.fixture
def stubbed() -> Iterator[tuple[EcrListing, Stubber]]:
    client = boto3.client(
        "ecr", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stubber:
        yield EcrListing(client, ACCOUNT), stubber
        stubber.assert_no_pending_responses()


def test_images_reads_every_page_with_archived_ones(stubbed: tuple[EcrListing, Stubber]) -> None:
    listing, stubber = stubbed
    asked = {
        "registryId": ACCOUNT,
        "repositoryName": "team/app",
        "filter": {"imageStatus": "ANY"},
        "maxResults": 1000,
    }
    stubber.add_response(
        "describe_images",
        {"imageDetails": [detail(1, imageTags=["v1"]), detail(2)], "nextToken": "page-2"},
        asked,
    )
    stubber.add_response(
        "describe_images",
        {"imageDetails": [detail(3, imageStatus="ARCHIVED", imageTags=["b", "a"])]},
        {**asked, "nextToken": "page-2"},
    )
    images = listing.images("team/app")
    assert images is not None
    assert [(str(i.digest), i.tags, i.status, i.size) for i in images] == [
        (digest(1), ("v1",), ImageStatus.ACTIVE, 100),
        (digest(2), (), ImageStatus.ACTIVE, 200),
        (digest(3), ("a", "b"), ImageStatus.ARCHIVED, 300),
    ]
    assert all(i.pushed_at == PUSHED for i in images)
    assert not images[2].pullable


def test_repositories_reads_every_page_and_filters_by_prefix(
    stubbed: tuple[EcrListing, Stubber],
) -> None:
    listing, stubber = stubbed

    def repository(name: str) -> dict[str, str]:
        return {"repositoryName": name, "registryId": ACCOUNT}

    asked = {"registryId": ACCOUNT, "maxResults": 1000}
    stubber.add_response(
        "describe_repositories",
        {"repositories": [repository("prod/a"), repository("dev/b")], "nextToken": "t"},
        asked,
    )
    stubber.add_response(
        "describe_repositories",
        {"repositories": [repository("prod/c")]},
        {**asked, "nextToken": "t"},
    )
    assert list(listing.repositories(["prod/"])) == ["prod/a", "prod/c"]


def test_a_repository_deleted_meanwhile_is_none_and_denial_is_configuration(
    stubbed: tuple[EcrListing, Stubber],
) -> None:
    listing, stubber = stubbed
    stubber.add_client_error("describe_images", "RepositoryNotFoundException")
    assert listing.images("team/app") is None
    stubber.add_client_error("describe_images", "AccessDeniedException", http_status_code=403)
    with pytest.raises(ConfigurationError, match="DescribeImages team/app"):
        listing.images("team/app")
    stubber.add_client_error("describe_images", "ServerException", http_status_code=500)
    with pytest.raises(RegistryError) as failure:
        listing.images("team/app")
    assert failure.value.retryable


def test_image_without_push_time_is_a_registry_error(stubbed: tuple[EcrListing, Stubber]) -> None:
    listing, stubber = stubbed
    broken = detail(1)
    del broken["imagePushedAt"]
    stubber.add_response("describe_images", {"imageDetails": [broken]})
    with pytest.raises(RegistryError, match="imagePushedAt"):
        listing.images("team/app")
