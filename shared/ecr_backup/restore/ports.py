"""What a restore needs from the registry it pushes to."""

from __future__ import annotations

from typing import Protocol

from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Descriptor, Manifest
from ecr_backup.oci.streams import Readable


class TargetRegistry(Protocol):
    def blob_size(self, repository: str, digest: Digest) -> int | None: ...

    def manifest_digest(self, repository: str, reference: str) -> Digest | None: ...

    def mount_blob(self, repository: str, digest: Digest, from_repository: str) -> bool: ...

    def upload_blob(
        self,
        repository: str,
        digest: Digest,
        size: int,
        source: Readable,
        *,
        chunk_size: int | None = None,
    ) -> None:
        """One streamed request per blob; several chunks only when `chunk_size` is given."""
        ...

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> Digest: ...

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        """ManifestNotFoundError when the reference is unknown."""
        ...

    def referrers(self, repository: str, subject: Digest) -> list[Descriptor] | None:
        """The referrers API's list for `subject`; None when the registry has no such API."""
        ...
