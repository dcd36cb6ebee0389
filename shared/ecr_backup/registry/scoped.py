"""A source registry reached with one client per repository.

Registries that hand out bearer tokens (Docker Hub, GHCR, Harbor, distribution with token
auth) scope each token to repositories; a client whose credentials ask for one repository
reads that repository only. This keeps one client, and one token, per repository.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Manifest
from ecr_backup.oci.streams import Readable
from ecr_backup.registry.client import RegistryClient


class PerRepository:
    """The SourceRegistry port over a client made for each repository on first use."""

    def __init__(self, make: Callable[[str], RegistryClient]) -> None:
        self._make = make
        self._clients: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()

    def client(self, repository: str) -> RegistryClient:
        with self._lock:
            if repository not in self._clients:
                self._clients[repository] = self._make(repository)
            return self._clients[repository]

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        return self.client(repository).get_manifest(repository, reference)

    def open_blob(self, repository: str, digest: Digest) -> AbstractContextManager[Readable]:
        return self.client(repository).open_blob(repository, digest)
