"""A manifest's closure: child manifests, configs and layers, and its total size."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ecr_backup.errors import (
    DigestMismatchError,
    InvalidInputError,
    NotFoundError,
)
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Descriptor, Manifest, Platform
from ecr_backup.settings import MAX_INDEX_DEPTH


def check_index_depth(depth: int, digest: Digest) -> None:
    """Refuse a manifest nested deeper than MAX_INDEX_DEPTH indexes below the root.

    Image indexes may list indexes; a chain of them is walked recursively, so a hostile
    chain (~1,100 deep once overflowed the stack) is refused as input before that.
    """
    if depth > MAX_INDEX_DEPTH:
        raise InvalidInputError(
            f"{digest} is nested {depth} image indexes deep; at most {MAX_INDEX_DEPTH} are "
            "accepted",
            code="INDEX_TOO_DEEP",
        )


# -- closures ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    """A manifest of a closure, with what its parent index says about it."""

    manifest: Manifest
    platform: Platform | None = None
    parent: Digest | None = None


@dataclass(frozen=True)
class Closure:
    """A manifest and everything under it: child manifests, configs and layers."""

    root: Manifest
    nodes: tuple[Node, ...]  # root first (pre-order), each manifest once
    blobs: tuple[Descriptor, ...]  # configs and layers, each once, in order of appearance
    total_size: int  # counted as the backup counts it (ManifestRecord.total_size)

    @property
    def digest(self) -> Digest:
        return self.root.digest

    def push_order(self) -> list[Manifest]:
        """Children before the indexes that list them: the order a registry accepts."""
        by_digest = {n.manifest.digest: n.manifest for n in self.nodes}
        ordered: list[Manifest] = []
        seen: set[Digest] = set()

        def visit(manifest: Manifest) -> None:
            if manifest.digest in seen:
                return
            seen.add(manifest.digest)
            for child in manifest.children:
                visit(by_digest[child.digest])
            ordered.append(manifest)

        visit(self.root)
        return ordered

    @property
    def platforms(self) -> list[Platform]:
        return [n.platform for n in self.nodes if n.platform is not None]

    def image_for(self, wanted: str) -> Manifest:
        """The image of one platform (os/arch[/variant]) of an index; the root when it is one."""
        if not self.root.is_index:
            return self.root
        want = wanted.split("/")
        for node in self.nodes:
            platform = node.platform
            if platform is None or node.manifest.is_index:
                continue
            have = [platform.os, platform.architecture]
            if platform.variant:
                have.append(platform.variant)
            # "linux/arm64" picks linux/arm64/v8; "linux/arm/v7" wants that variant.
            if have[: len(want)] == want:
                return node.manifest
        choices = ", ".join(str(p) for p in self.platforms if p.os != "unknown") or "none"
        raise NotFoundError(f"{self.root.digest} has no {wanted} image (platforms: {choices})")


def closure_total(manifest: Manifest, child_totals: Iterable[int]) -> int:
    """The size the index records for a manifest's closure (ManifestRecord.total_size): the
    manifest, each child's own total, and its own blobs once each. A blob shared by two
    children counts in both: the total is what a pull of each child would fetch."""
    return manifest.size + sum(child_totals) + sum(b.size for b in manifest.unique_blobs)


def build_closure(digest: Digest, load: Callable[[Digest], Manifest]) -> Closure:
    nodes: dict[Digest, Node] = {}
    blobs: dict[Digest, Descriptor] = {}

    def walk(
        manifest: Manifest, platform: Platform | None, parent: Digest | None, depth: int
    ) -> int:
        nodes.setdefault(manifest.digest, Node(manifest, platform, parent))
        child_totals = []
        for child in manifest.children:
            check_index_depth(depth + 1, child.digest)
            child_manifest = load(child.digest)
            if child_manifest.size != child.size:
                raise DigestMismatchError(
                    child.digest, f"{manifest.digest} lists it with {child.size} bytes"
                )
            child_totals.append(walk(child_manifest, child.platform, manifest.digest, depth + 1))
        for blob in manifest.unique_blobs:
            blobs.setdefault(blob.digest, blob)
        return closure_total(manifest, child_totals)

    root = load(digest)
    total = walk(root, None, None, 0)
    return Closure(root, tuple(nodes.values()), tuple(blobs.values()), total)
