"""ECR's control plane as backfill and reconcile read it: DescribeRepositories and
DescribeImages, every page, read-only. Listing never touches the registry data plane, so
it never counts as a pull (ECR's `sinceImagePulled` lifecycle rules stay meaningful)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from ecr_backup.awserrors import error_code, translate
from ecr_backup.errors import RegistryError
from ecr_backup.oci.digest import Digest
from ecr_backup.settings import ECR_PAGE_SIZE

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient


class ImageStatus(StrEnum):
    """DescribeImages' `imageStatus`: ARCHIVED and ACTIVATING images cannot be pulled."""

    ACTIVE = "ACTIVE"
    ARCHIVED = "ARCHIVED"
    ACTIVATING = "ACTIVATING"


@dataclass(frozen=True, slots=True)
class EcrImage:
    """One manifest as DescribeImages reports it."""

    repository: str
    digest: Digest
    tags: tuple[str, ...]
    pushed_at: datetime
    media_type: str | None
    size: int = 0  # imageSizeInBytes: compressed layers (an index: its largest image)
    status: ImageStatus = ImageStatus.ACTIVE

    @property
    def pullable(self) -> bool:
        return self.status is ImageStatus.ACTIVE


class EcrListing:
    """Repositories and images of one registry (account and region)."""

    def __init__(self, client: ECRClient, registry_id: str | None = None) -> None:
        self._ecr = client
        self._registry: dict[str, Any] = {"registryId": registry_id} if registry_id else {}

    def repositories(self, prefixes: Sequence[str] = ()) -> Iterator[str]:
        """Every repository name (starting with one of `prefixes`, when given)."""
        try:
            pages = self._ecr.get_paginator("describe_repositories").paginate(
                **self._registry, PaginationConfig={"PageSize": ECR_PAGE_SIZE}
            )
            for page in pages:
                for repository in page.get("repositories", []):
                    name = repository["repositoryName"]
                    if not prefixes or name.startswith(tuple(prefixes)):
                        yield name
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "ECR DescribeRepositories", RegistryError) from e

    def images(self, repository: str) -> list[EcrImage] | None:
        """Every image of `repository`, archived ones included; None when the repository
        does not exist (deleted since it was listed)."""
        try:
            pages = self._ecr.get_paginator("describe_images").paginate(
                **self._registry,
                repositoryName=repository,
                # Without the filter DescribeImages leaves archived images out.
                filter={"imageStatus": "ANY"},
                PaginationConfig={"PageSize": ECR_PAGE_SIZE},
            )
            return [_image(repository, d) for page in pages for d in page.get("imageDetails", [])]
        except ClientError as e:
            if error_code(e) == "RepositoryNotFoundException":
                return None
            raise translate(e, f"ECR DescribeImages {repository}", RegistryError) from e
        except BotoCoreError as e:
            raise translate(e, f"ECR DescribeImages {repository}", RegistryError) from e

    def image(self, repository: str, digest: Digest) -> EcrImage | None:
        """One image by digest, or None when ECR does not know it."""
        try:
            answer = self._ecr.describe_images(
                **self._registry,
                repositoryName=repository,
                imageIds=[{"imageDigest": str(digest)}],
            )
        except ClientError as e:
            if error_code(e) in ("ImageNotFoundException", "RepositoryNotFoundException"):
                return None
            raise translate(e, f"ECR DescribeImages {repository}@{digest}", RegistryError) from e
        except BotoCoreError as e:
            raise translate(e, f"ECR DescribeImages {repository}@{digest}", RegistryError) from e
        details = answer.get("imageDetails", [])
        return _image(repository, details[0]) if details else None


def _image(repository: str, detail: Any) -> EcrImage:
    pushed_at: datetime | None = detail.get("imagePushedAt")
    if pushed_at is None:
        raise RegistryError(f"ECR DescribeImages {repository}: an image without imagePushedAt")
    status = detail.get("imageStatus") or ImageStatus.ACTIVE
    return EcrImage(
        repository=repository,
        digest=Digest.parse(detail["imageDigest"]),
        tags=tuple(sorted(detail.get("imageTags") or ())),
        pushed_at=pushed_at.astimezone(UTC),
        media_type=detail.get("imageManifestMediaType"),
        size=int(detail.get("imageSizeInBytes") or 0),
        status=ImageStatus(status),
    )
