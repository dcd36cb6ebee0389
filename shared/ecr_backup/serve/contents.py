"""What each repository of the backup holds: the manifests and blobs a pull may ask for.

A registry serves a digest only through a repository that holds it (CNCF distribution
keeps a link per repository), so that `--repository-prefix` and pruning hide content
for good. A repository holds the closures of its images (the index's, less the pruned
ones); closures are content-addressed, so each is read once and kept, while the list of
images is read again after a few seconds, so new backups appear and pruned ones go.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ecr_backup.catalog.catalog import Catalog
from ecr_backup.errors import DataError, InvalidInputError
from ecr_backup.oci.digest import Digest
from ecr_backup.settings import SERVE_LISTING_TTL_SECONDS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Held:
    """One image's closure as sizes by digest: its manifests, and its configs and layers."""

    manifests: dict[Digest, int]
    blobs: dict[Digest, int]


_NOTHING = Held({}, {})


class RepositoryContents:
    def __init__(
        self,
        catalog: Catalog,
        *,
        ttl: float = SERVE_LISTING_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._catalog = catalog
        self._ttl = ttl
        self._clock = clock
        self._images: dict[str, tuple[float, list[Digest]]] = {}
        self._held: dict[Digest, Held] = {}
        self._lock = threading.Lock()

    def images(self, repository: str) -> list[Digest]:
        now = self._clock()
        with self._lock:
            cached = self._images.get(repository)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        images = self._catalog.images(repository)
        with self._lock:
            self._images[repository] = (now, images)
        return images

    def manifest_size(self, repository: str, digest: Digest) -> int | None:
        return self._find(repository, digest, lambda held: held.manifests.get(digest))

    def blob_size(self, repository: str, digest: Digest) -> int | None:
        """The size of a blob (or a manifest: the blob API serves those too) the repository
        holds, or None."""
        return self._find(
            repository, digest, lambda held: held.blobs.get(digest, held.manifests.get(digest))
        )

    def _find(
        self, repository: str, digest: Digest, look: Callable[[Held], int | None]
    ) -> int | None:
        images = self.images(repository)
        # The image itself first: most digests asked for are images or their children.
        ordered = [digest, *images] if digest in images else images
        for image in ordered:
            size = look(self._closure(image))
            if size is not None:
                return size
        return None

    def _closure(self, image: Digest) -> Held:
        with self._lock:
            held = self._held.get(image)
        if held is not None:
            return held
        try:
            closure = self._catalog.reader.closure(image)
        except (DataError, InvalidInputError) as e:
            # Pruned under a lagging index, or no intact version: nothing of it is served.
            # (A storage failure is not cached: it propagates, and the next request retries.)
            log.warning("not serving image %s: %s", image, e.one_line())
            held = _NOTHING
        else:
            held = Held(
                {n.manifest.digest: n.manifest.size for n in closure.nodes},
                {b.digest: b.size for b in closure.blobs},
            )
        with self._lock:
            self._held[image] = held
        return held
