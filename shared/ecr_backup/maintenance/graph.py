"""What each manifest holds, read from the bucket once per run: the reachability of objects."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from ecr_backup.errors import NotFoundError
from ecr_backup.model import ManifestRecord
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Manifest, parse_manifest


class ManifestSource(Protocol):
    def read(self, digest: Digest) -> bytes: ...


class ReferrerSource(Protocol):
    def referrers(self, subject: Digest) -> list[ManifestRecord]: ...


class ObjectGraph:
    def __init__(self, store: ManifestSource, index: ReferrerSource) -> None:
        self._store = store
        self._index = index
        self._manifests: dict[Digest, Manifest | None] = {}
        self._closures: dict[Digest, frozenset[Digest]] = {}
        self._nodes: dict[Digest, frozenset[Digest]] = {}  # the manifests of each closure

    def manifest(self, digest: Digest) -> Manifest | None:
        """The manifest, or None when the bucket does not hold it (pruned, never stored)."""
        if digest not in self._manifests:
            try:
                self._manifests[digest] = parse_manifest(self._store.read(digest))
            except NotFoundError:
                self._manifests[digest] = None
        return self._manifests[digest]

    def closure(self, digest: Digest) -> frozenset[Digest]:
        """The manifest and every object under it (child manifests, configs, layers)."""
        cached = self._closures.get(digest)
        if cached is not None:
            return cached
        objects, nodes = {digest}, {digest}
        manifest = self.manifest(digest)
        if manifest is not None:
            for child in manifest.children:
                objects |= self.closure(child.digest)
                nodes |= self._nodes[child.digest]
            objects.update(b.digest for b in manifest.blobs)
        self._closures[digest] = frozenset(objects)
        self._nodes[digest] = frozenset(nodes)
        return self._closures[digest]

    def reach(self, roots: Iterable[Digest], *, referrers: bool) -> set[Digest]:
        """Every object under the roots; with `referrers`, also the referrers (signatures,
        SBOMs) of every manifest reached, and what is under them."""
        reached: set[Digest] = set()
        pending = list(roots)
        asked: set[Digest] = set()
        while pending:
            root = pending.pop()
            if root in reached:
                continue
            reached |= self.closure(root)
            if not referrers:
                continue
            for digest in self._nodes[root] - asked:
                asked.add(digest)
                pending.extend(r.digest for r in self._index.referrers(digest))
        return reached
