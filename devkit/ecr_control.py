"""Keep moto's ECR control plane in agreement with a LocalRegistry.

Every image the devkit pushes is also registered with moto's ECR (PutImage with the exact
manifest, tag and media type), so DescribeImages lists what the registry serves, as ECR's
API and registry agree. Pushing never delivers an ECR event: a test that wants one sends
it; a test that does not has simulated a missed event.

moto gaps worked around here: PutImage computes a wrong digest unless given imageDigest,
and moving a tag deletes the image it left when that was its only tag (ECR keeps it,
untagged), so the devkit puts that image back untagged.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any, Protocol

from botocore.exceptions import ClientError


class AwsEndpoint(Protocol):
    """Where moto answers (devkit.servers.MotoServer): boto3 clients for it."""

    def client(self, service: str) -> Any: ...


class EcrControlPlane:
    """moto's ECR of one account and region, registered into as images are pushed."""

    def __init__(self, moto: AwsEndpoint) -> None:
        self._ecr: Any = moto.client("ecr")
        # Registering reads the tag's image before moving it: one push at a time.
        self._lock = threading.Lock()

    def ensure_repository(self, repository: str) -> None:
        try:
            self._ecr.create_repository(repositoryName=repository)
        except ClientError as e:
            if e.response["Error"]["Code"] != "RepositoryAlreadyExistsException":
                raise

    def register(
        self, repository: str, manifest: bytes, media_type: str, tag: str | None = None
    ) -> str:
        """PutImage as ECR records a manifest PUT; returns the manifest digest."""
        with self._lock:
            return self._register(repository, manifest, media_type, tag)

    def images(self, repository: str) -> list[dict[str, Any]]:
        """Every image of `repository` as BatchGetImage gives it (manifest included)."""
        try:
            pages = self._ecr.get_paginator("describe_images").paginate(repositoryName=repository)
            ids = [
                {"imageDigest": detail["imageDigest"]}
                for page in pages
                for detail in page.get("imageDetails", [])
            ]
        except ClientError as e:
            if e.response["Error"]["Code"] == "RepositoryNotFoundException":
                return []
            raise
        images: list[dict[str, Any]] = []
        for start in range(0, len(ids), 100):  # BatchGetImage takes 100 ids at most
            answer = self._ecr.batch_get_image(
                repositoryName=repository, imageIds=ids[start : start + 100]
            )
            images.extend(answer.get("images", []))
        return images

    def _register(self, repository: str, manifest: bytes, media_type: str, tag: str | None) -> str:
        self.ensure_repository(repository)
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        displaced = self._tagged(repository, tag) if tag else None
        arguments: dict[str, Any] = {
            "repositoryName": repository,
            "imageManifest": manifest.decode(),
            "imageManifestMediaType": media_type,
            "imageDigest": digest,
        }
        if tag:
            arguments["imageTag"] = tag
        elif self._known(repository, digest):
            return digest  # an untagged re-push changes nothing in ECR
        try:
            self._ecr.put_image(**arguments)
        except ClientError as e:
            if e.response["Error"]["Code"] != "ImageAlreadyExistsException":
                raise
        left = displaced is not None and displaced[0] != digest
        if displaced is not None and left and not self._known(repository, displaced[0]):
            self._ecr.put_image(
                repositoryName=repository,
                imageManifest=displaced[1],
                imageManifestMediaType=displaced[2],
                imageDigest=displaced[0],
            )
        return digest

    def delete(self, repository: str, digest: str) -> None:
        """BatchDeleteImage by digest: the image and all its tags leave ECR's listing."""
        self._ecr.batch_delete_image(repositoryName=repository, imageIds=[{"imageDigest": digest}])

    def _known(self, repository: str, digest: str) -> bool:
        try:
            self._ecr.describe_images(repositoryName=repository, imageIds=[{"imageDigest": digest}])
        except ClientError as e:
            if e.response["Error"]["Code"] == "ImageNotFoundException":
                return False
            raise
        return True

    def _tagged(self, repository: str, tag: str) -> tuple[str, str, str] | None:
        """(digest, manifest, media type) of the image `tag` names now, if any."""
        try:
            answer = self._ecr.batch_get_image(
                repositoryName=repository, imageIds=[{"imageTag": tag}]
            )
        except ClientError:
            return None
        for image in answer.get("images", []):
            manifest: str = image["imageManifest"]
            media_type = image.get("imageManifestMediaType") or json.loads(manifest).get(
                "mediaType", ""
            )
            return image["imageId"]["imageDigest"], manifest, media_type
        return None
