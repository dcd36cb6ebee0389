"""Closures: a bounded walk over nested image indexes."""

from __future__ import annotations

import json

import pytest

from ecr_backup.errors import InvalidInputError
from ecr_backup.oci import mediatypes
from ecr_backup.oci.closure import build_closure
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Manifest, parse_manifest
from ecr_backup.settings import MAX_INDEX_DEPTH


def chain(depth: int) -> tuple[Manifest, dict[Digest, Manifest]]:
    """An image under `depth` nested indexes; the root and every manifest by digest."""
    config = {"mediaType": mediatypes.OCI_CONFIG, "digest": str(Digest.of(b"{}")), "size": 2}
    image = {"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST, "config": config}
    manifest = parse_manifest(json.dumps({**image, "layers": []}).encode())
    by_digest = {manifest.digest: manifest}
    for _ in range(depth):
        child = {
            "mediaType": manifest.media_type,
            "digest": str(manifest.digest),
            "size": manifest.size,
        }
        document = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": [child]}
        manifest = parse_manifest(json.dumps(document).encode())
        by_digest[manifest.digest] = manifest
    return manifest, by_digest


def test_deep_chains_are_refused_with_a_clear_error_not_a_recursion_error() -> None:
    root, manifests = chain(1100)
    with pytest.raises(InvalidInputError, match="image indexes deep"):
        build_closure(root.digest, manifests.__getitem__)


def test_chains_up_to_the_bound_are_walked() -> None:
    root, manifests = chain(MAX_INDEX_DEPTH)
    closure = build_closure(root.digest, manifests.__getitem__)
    assert len(closure.nodes) == MAX_INDEX_DEPTH + 1
    assert len(closure.push_order()) == MAX_INDEX_DEPTH + 1
