"""The sample events of the Amazon ECR User Guide, "Amazon ECR events and EventBridge"
(https://docs.aws.amazon.com/AmazonECR/latest/userguide/ecr-eventbridge.html), as facts:
detail-types, field names, structure and values as AWS documents them.

Some of AWS's placeholder values are not valid: the push, deletion and replication samples'
digest has 60 hex digits, the pull through cache sample's digest ends in "EXAMPLE" and its
time is 29 February 2023. `usable` puts a real digest (and time) in their place; the samples
as printed are refused (tests/unit/backup/test_ecr_event_kinds.py).

The guide prints no referrer PUSH or DELETE: `referrer_action` gives the documented referrer
sample's shape (the same detail fields as an image action) another action-type.
"""

from __future__ import annotations

import copy
from typing import Any

IMAGE_PUSH: dict[str, Any] = {
    "version": "0",
    "id": "13cde686-328b-6117-af20-0e5566167482",
    "detail-type": "ECR Image Action",
    "source": "aws.ecr",
    "account": "123456789012",
    "time": "2019-11-16T01:54:34Z",
    "region": "us-west-2",
    "resources": [],
    "detail": {
        "result": "SUCCESS",
        "repository-name": "my-repository-name",
        "image-digest": "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234",
        "action-type": "PUSH",
        "image-tag": "latest",
    },
}

IMAGE_DELETE: dict[str, Any] = {
    "version": "0",
    "id": "dd3b46cb-2c74-f49e-393b-28286b67279d",
    "detail-type": "ECR Image Action",
    "source": "aws.ecr",
    "account": "123456789012",
    "time": "2019-11-16T02:01:05Z",
    "region": "us-west-2",
    "resources": [],
    "detail": {
        "result": "SUCCESS",
        "repository-name": "my-repository-name",
        "image-digest": "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234",
        "action-type": "DELETE",
        "image-tag": "latest",
    },
}

PULL_THROUGH_CACHE: dict[str, Any] = {
    "version": "0",
    "id": "85fc3613-e913-7fc4-a80c-a3753e4aa9ae",
    "detail-type": "ECR Pull Through Cache Action",
    "source": "aws.ecr",
    "account": "123456789012",
    "time": "2023-02-29T02:36:48Z",
    "region": "us-west-2",
    "resources": ["arn:aws:ecr:us-west-2:123456789012:repository/docker-hub/alpine"],
    "detail": {
        "rule-version": "1",
        "sync-status": "SUCCESS",
        "ecr-repository-prefix": "docker-hub",
        "repository-name": "docker-hub/alpine",
        "upstream-registry-url": "public.ecr.aws",
        "image-tag": "3.17.2",
        "image-digest": "sha256:4aa08ef415aecc80814cb42fa41b658480779d80c77ab15EXAMPLE",
    },
}

IMAGE_ARCHIVE: dict[str, Any] = {
    "version": "0",
    "id": "4f5ec4d5-4de4-7aad-a046-EXAMPLE",
    "detail-type": "ECR Image Action",
    "source": "aws.ecr",
    "account": "123456789012",
    "time": "2019-08-06T00:58:09Z",
    "region": "us-east-1",
    "resources": [],
    "detail": {
        "action-type": "UPDATE_STORAGE_CLASS",
        "target-storage-class": "ARCHIVE",
        "image-digest": "sha256:f98d67af8e53a536502bfc600de3266556b06ed635a32d60aa7a5fe6d7e609d7",
        "repository-name": "ubuntu",
        "result": "SUCCESS",
        "manifest-media-type": "application/vnd.oci.image.manifest.v1+json",
        "artifact-media-type": "application/vnd.oci.image.config.v1+json",
    },
}

IMAGE_RESTORE: dict[str, Any] = {
    "version": "0",
    "id": "7b8fc5e6-5ef5-8bbe-b157-EXAMPLE",
    "detail-type": "ECR Image Action",
    "source": "aws.ecr",
    "account": "123456789012",
    "time": "2019-08-06T01:15:22Z",
    "region": "us-east-1",
    "resources": [],
    "detail": {
        "action-type": "UPDATE_STORAGE_CLASS",
        "target-storage-class": "STANDARD",
        "image-digest": "sha256:f98d67af8e53a536502bfc600de3266556b06ed635a32d60aa7a5fe6d7e609d7",
        "repository-name": "ubuntu",
        "result": "SUCCESS",
        "manifest-media-type": "application/vnd.oci.image.manifest.v1+json",
        "artifact-media-type": "application/vnd.oci.image.config.v1+json",
        "last-activated-at": "2025-10-10T19:13:02.74Z",
    },
}

REFERRER_RESTORE: dict[str, Any] = {
    "version": "0",
    "id": "8c9gd6f7-6fg6-9ccf-c268-EXAMPLE",
    "detail-type": "ECR Referrer Action",
    "source": "aws.ecr",
    "account": "123456789012",
    "time": "2019-08-06T01:20:45Z",
    "region": "us-east-1",
    "resources": [],
    "detail": {
        "action-type": "UPDATE_STORAGE_CLASS",
        "target-storage-class": "STANDARD",
        "image-digest": "sha256:f98d67af8e53a536502bfc600de3266556b06ed635a32d60aa7a5fe6d7e609d7",
        "repository-name": "sbom",
        "result": "SUCCESS",
        "manifest-media-type": "application/vnd.cncf.oras.artifact.manifest.v1+json",
        "artifact-media-type": "text/sbom+json",
        "last-activated-at": "2025-10-10T19:13:02.74Z",
    },
}

REPLICATION: dict[str, Any] = {
    "version": "0",
    "id": "c8b133b1-6029-ee73-e2a1-4f466b8ba999",
    "detail-type": "ECR Replication Action",
    "source": "aws.ecr",
    "account": "123456789012",
    "time": "2024-05-08T20:44:54Z",
    "region": "us-east-1",
    "resources": ["arn:aws:ecr:us-east-1:123456789012:repository/docker-hub/alpine"],
    "detail": {
        "result": "SUCCESS",
        "repository-name": "docker-hub/alpine",
        "image-digest": "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234",
        "source-account": "123456789012",
        "action-type": "REPLICATE",
        "source-region": "us-west-2",
        "image-tag": "3.17.2",
    },
}

REPLICATION_FAILED: dict[str, Any] = {
    "version": "0",
    "id": "d9c244c2-7130-ff84-f3b2-5g577c9cb000",
    "detail-type": "ECR Replication Action",
    "source": "aws.ecr",
    "account": "123456789012",
    "time": "2024-05-08T20:45:12Z",
    "region": "us-east-1",
    "resources": ["arn:aws:ecr:us-east-1:123456789012:repository/my-app"],
    "detail": {
        "result": "FAILED",
        "repository-name": "my-app",
        "image-digest": "sha256:8g6c3751gf7gc5g47603ege4511d5a80ead5g90f5893543f1489bde2345",
        "source-account": "123456789012",
        "action-type": "REPLICATE",
        "source-region": "us-west-2",
        "image-tag": "latest",
    },
}

SAMPLES: dict[str, dict[str, Any]] = {
    "image push": IMAGE_PUSH,
    "image delete": IMAGE_DELETE,
    "pull through cache": PULL_THROUGH_CACHE,
    "image archive": IMAGE_ARCHIVE,
    "image restore": IMAGE_RESTORE,
    "referrer restore": REFERRER_RESTORE,
    "replication": REPLICATION,
    "replication failed": REPLICATION_FAILED,
}


def usable(
    sample: dict[str, Any],
    digest: object | None = None,
    *,
    repository: str | None = None,
    account: str | None = None,
    region: str | None = None,
    time: str | None = None,
    **detail: object,
) -> dict[str, Any]:
    """A copy of `sample` naming a real image: its digest, repository, account, region and
    time replaced where given, and any detail field set (or removed, given None)."""
    event = copy.deepcopy(sample)
    if digest is not None:
        event["detail"]["image-digest"] = str(digest)
    if repository is not None:
        event["detail"]["repository-name"] = repository
    for key, given in (("account", account), ("region", region), ("time", time)):
        if given is not None:
            event[key] = given
    if event["time"] == "2023-02-29T02:36:48Z" and time is None:
        event["time"] = "2023-02-28T02:36:48Z"  # the sample's day does not exist
    for name, value in detail.items():
        key = name.replace("_", "-")
        if value is None:
            event["detail"].pop(key, None)
        else:
            event["detail"][key] = value
    return event


def referrer_action(
    action_type: str, digest: object, repository: str = "team/app"
) -> dict[str, Any]:
    """An "ECR Referrer Action" for a referrer pushed or deleted: the documented referrer
    sample's envelope and detail fields, with that action-type and no storage class."""
    return usable(
        REFERRER_RESTORE,
        digest,
        repository=repository,
        action_type=action_type,
        target_storage_class=None,
        last_activated_at=None,
        manifest_media_type="application/vnd.oci.image.manifest.v1+json",
    )
