"""In-memory stand-ins for the source registry, for unit tests under moto's mock_aws."""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ecr_backup.errors import BlobNotFoundError, ManifestNotFoundError
from ecr_backup.oci import mediatypes
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Manifest, parse_manifest


def descriptor(media_type: str, data: bytes, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data), **extra}


@dataclass
class FakeRegistry:
    blobs: dict[Digest, bytes] = field(default_factory=dict)
    manifests: dict[str, bytes] = field(default_factory=dict)  # "repo@ref" -> bytes
    blob_gets: Counter[Digest] = field(default_factory=Counter)
    manifest_gets: int = 0

    def add_blob(self, data: bytes) -> Digest:
        digest = Digest.of(data)
        self.blobs[digest] = data
        return digest

    def add_manifest(
        self, repository: str, document: dict[str, object], tag: str | None = None
    ) -> Manifest:
        raw = json.dumps(document, indent=3).encode()  # odd formatting: bytes must survive as-is
        manifest = parse_manifest(raw)
        self.manifests[f"{repository}@{manifest.digest}"] = raw
        if tag:
            self.manifests[f"{repository}@{tag}"] = raw
        return manifest

    def image(
        self, repository: str, layers: list[bytes], tag: str | None = None, config: bytes = b"{}"
    ) -> Manifest:
        for data in [config, *layers]:
            self.add_blob(data)
        return self.add_manifest(
            repository,
            {
                "schemaVersion": 2,
                "mediaType": mediatypes.OCI_MANIFEST,
                "config": descriptor(mediatypes.OCI_CONFIG, config),
                "layers": [descriptor(mediatypes.OCI_LAYER_GZIP, layer) for layer in layers],
            },
            tag,
        )

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        self.manifest_gets += 1
        raw = self.manifests.get(f"{repository}@{reference}")
        if raw is None:
            raise ManifestNotFoundError(f"manifest {repository}:{reference} not found")
        return parse_manifest(raw)

    @contextmanager
    def open_blob(self, repository: str, digest: Digest) -> Iterator[io.BytesIO]:
        self.blob_gets[digest] += 1
        data = self.blobs.get(digest)
        if data is None:
            raise BlobNotFoundError(f"blob {digest} not found in {repository}")
        yield io.BytesIO(data)
