"""Descriptors, image manifests and image indexes, parsed from their exact bytes.

A manifest's identity is the sha256 of the bytes the registry served; those bytes are
kept as they are and never re-serialized, so a restored image keeps its digest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, ValidationError

from ecr_backup.errors import InvalidInputError, UnsupportedManifestError
from ecr_backup.oci import mediatypes
from ecr_backup.oci.digest import Digest


def _digest(value: object) -> Digest:
    if isinstance(value, Digest):
        return value
    if not isinstance(value, str):
        raise ValueError("digest must be a string")
    return Digest.parse(value)


DigestField = Annotated[Digest, PlainValidator(_digest), PlainSerializer(str)]

_MODEL = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")


class Platform(BaseModel):
    model_config = _MODEL

    architecture: str
    os: str
    variant: str | None = None
    os_version: str | None = Field(default=None, alias="os.version")

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


class Descriptor(BaseModel):
    model_config = _MODEL

    media_type: str = Field(alias="mediaType")
    digest: DigestField
    size: int = Field(ge=0)
    urls: tuple[str, ...] = ()
    platform: Platform | None = None
    artifact_type: str | None = Field(default=None, alias="artifactType")
    annotations: dict[str, str] | None = None

    @property
    def is_foreign(self) -> bool:
        """Layers that name outside URLs (Windows base layers) may not be served by the registry."""
        return bool(self.urls)


class ImageManifest(BaseModel):
    model_config = _MODEL

    schema_version: int = Field(alias="schemaVersion")
    media_type: str | None = Field(default=None, alias="mediaType")
    artifact_type: str | None = Field(default=None, alias="artifactType")
    config: Descriptor
    layers: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        return (self.config, *self.layers)


class ImageIndex(BaseModel):
    model_config = _MODEL

    schema_version: int = Field(alias="schemaVersion")
    media_type: str | None = Field(default=None, alias="mediaType")
    artifact_type: str | None = Field(default=None, alias="artifactType")
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest or index: its exact bytes, their digest, and the parsed content."""

    raw: bytes
    media_type: str
    digest: Digest
    content: ImageManifest | ImageIndex

    @property
    def is_index(self) -> bool:
        return isinstance(self.content, ImageIndex)

    @property
    def children(self) -> tuple[Descriptor, ...]:
        return self.content.manifests if isinstance(self.content, ImageIndex) else ()

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        return self.content.blobs if isinstance(self.content, ImageManifest) else ()

    @property
    def unique_blobs(self) -> tuple[Descriptor, ...]:
        """Config and layers, each digest once, in order of appearance."""
        seen: dict[Digest, Descriptor] = {}
        for blob in self.blobs:
            seen.setdefault(blob.digest, blob)
        return tuple(seen.values())

    @property
    def subject(self) -> Descriptor | None:
        return self.content.subject

    @property
    def artifact_type(self) -> str | None:
        content = self.content
        if content.artifact_type:
            return content.artifact_type
        if isinstance(content, ImageManifest) and content.config.media_type not in (
            mediatypes.OCI_CONFIG,
            mediatypes.DOCKER_CONFIG,
        ):
            return content.config.media_type
        return None

    @property
    def size(self) -> int:
        return len(self.raw)


def parse_manifest(raw: bytes, content_type: str | None = None) -> Manifest:
    """Parse a manifest from the bytes a registry (or the bucket) holds.

    The media type comes from the document itself when it says, else from the
    Content-Type the registry sent, else from its shape (OCI allows omitting it).
    """
    try:
        document: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidInputError(f"manifest is not valid JSON: {e}") from e
    if not isinstance(document, dict):
        raise InvalidInputError("manifest is not a JSON object")

    declared = document.get("mediaType")
    header = (content_type or "").split(";")[0].strip() or None
    if (
        document.get("schemaVersion") == 1
        or declared in mediatypes.SCHEMA1
        or (header in mediatypes.SCHEMA1)
    ):
        raise UnsupportedManifestError(
            "Docker schema 1 manifests are not supported; re-push the image with a current client"
        )
    media_type = declared if isinstance(declared, str) else None
    if media_type is None and header in mediatypes.MANIFESTS:
        media_type = header
    if media_type is None:
        if "manifests" in document:
            media_type = mediatypes.OCI_INDEX
        elif "config" in document:
            media_type = mediatypes.OCI_MANIFEST
    if media_type not in mediatypes.MANIFESTS:
        raise UnsupportedManifestError(f"unsupported manifest media type {media_type!r}")

    model = ImageIndex if media_type in mediatypes.IMAGE_INDEXES else ImageManifest
    try:
        content: ImageManifest | ImageIndex = model.model_validate(document)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInputError(f"invalid {media_type} manifest at {where}: {first['msg']}") from e
    return Manifest(raw=raw, media_type=media_type, digest=Digest.of(raw), content=content)
