"""`python -m moto.server` as the devkit runs it: with its disk use bounded, and with large
generated objects that cost no upload.

Run as a script (`python devkit/moto_server.py -H 127.0.0.1 -p PORT`), it patches moto's S3
in its own process, then starts moto's server; it imports nothing from the devkit, so it
runs wherever moto is installed.

**Disk bound.** moto 5 keeps each object's bytes in a SpooledTemporaryFile (on disk above
~5 MiB). ListObjectVersions deep-copies *every* version of *every* key in the bucket on
each call (`copy.deepcopy(version_key)` in S3Backend.list_object_versions, whatever the
prefix), and each copy is a new FakeKey with its own temporary file; BaseModel.__new__
appends every FakeKey to `FakeKey.instances_tracked`, which only a reset clears, so the
copies are never freed: their deleted-but-open files fill the disk (73 GB in a long run of
exports of a 1.5 GiB image). The listing only needs each version's attributes, so here a
FakeKey's deep copy is a view sharing the original's bytes: no file, nothing tracked.

**ECR's image size.** moto's DescribeImages reports an image's config size as
imageSizeInBytes; ECR reports the image's size in the repository (its compressed
layers), and for a manifest list the largest of its manifests (ImageDetail in the ECR API
reference). Here it is the sum of the layer sizes, and the largest child's for an index.

**Generated objects.** A PutObject with the metadata `devkit-generate: SIZE:SEED` stores
`generated_bytes(SIZE, SEED)` without anyone sending them: the object serves them from a
repeating pseudo-random block, so tests can have a 1 GiB layer in flight for the price of
hashing it once (`generated_digest`).
"""

from __future__ import annotations

import hashlib
import random
import sys
from collections.abc import Iterator
from typing import Any

GENERATE_METADATA = "devkit-generate"
_BLOCK = 1024 * 1024


def _block(seed: int) -> bytes:
    return random.Random(seed).randbytes(_BLOCK)


def generated_chunks(size: int, seed: int) -> Iterator[bytes]:
    """The bytes of a generated object, a MiB at a time."""
    block = _block(seed)
    for start in range(0, size, _BLOCK):
        yield block[: min(_BLOCK, size - start)]


def generated_digest(size: int, seed: int) -> str:
    """sha256 digest ("sha256:<hex>") of a generated object's bytes."""
    sha = hashlib.sha256()
    for chunk in generated_chunks(size, seed):
        sha.update(chunk)
    return "sha256:" + sha.hexdigest()


class _GeneratedBuffer:
    """Read-only stand-in for a FakeKey's SpooledTemporaryFile: the repeating block."""

    def __init__(self, size: int, seed: int) -> None:
        self._block = _block(seed)
        self._size = size
        self._position = 0

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._position, 2: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def read(self, n: int = -1) -> bytes:
        end = self._size if n < 0 else min(self._size, self._position + n)
        pieces = []
        while self._position < end:
            at = self._position % _BLOCK
            take = min(_BLOCK - at, end - self._position)
            pieces.append(self._block[at : at + take])
            self._position += take
        return b"".join(pieces)

    def close(self) -> None:
        pass


class _SharedBuffer:
    """A version view's handle on the original's bytes: reads them, never closes them."""

    def __init__(self, original: Any) -> None:
        self._original = original

    def seek(self, offset: int, whence: int = 0) -> int:
        position: int = self._original.seek(offset, whence)
        return position

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._original.read(n)
        return data

    def close(self) -> None:
        pass


def patch_moto() -> None:
    from moto.s3.models import FakeKey

    def version_view(self: Any, memo: dict[int, Any]) -> Any:
        # object.__new__ skips BaseModel.__new__, so the view is not tracked.
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view._value_buffer = _SharedBuffer(self._value_buffer)
        view.multipart = None  # disposing a view must not dispose the original's parts
        view.disposed = True
        return view

    FakeKey.__deepcopy__ = version_view  # type: ignore[attr-defined]

    set_metadata = FakeKey.set_metadata

    def set_metadata_generating(self: Any, metadata: Any, replace: bool = False) -> None:
        spec = metadata.pop(f"x-amz-meta-{GENERATE_METADATA}", None)
        set_metadata(self, metadata, replace)
        if spec:
            size, _, seed = spec.partition(":")
            self._value_buffer = _GeneratedBuffer(int(size), int(seed))
            self.contentsize = int(size)
            # The ETag is not the MD5 (hashing a GiB twice is what this avoids); nothing the
            # devkit serves checks it.
            self._etag = hashlib.md5(spec.encode()).hexdigest()

    FakeKey.set_metadata = set_metadata_generating  # type: ignore[method-assign]


def _layers_size(document: dict[str, Any]) -> int:
    return sum(int(layer.get("size", 0)) for layer in document.get("layers", []))


def patch_ecr_image_size() -> None:
    import json

    from moto.ecr.models import Image, ecr_backends

    def image_size(self: Any) -> int | None:
        document = json.loads(self.image_manifest)
        if "layers" in document:
            return _layers_size(document)
        children = {m.get("digest") for m in document.get("manifests", [])}
        sizes = [
            _layers_size(json.loads(image.image_manifest))
            for backend in ecr_backends[self.registry_id].values()
            if self.repository_name in backend.repositories
            for image in backend.repositories[self.repository_name].images
            if image.image_digest in children
        ]
        return max(sizes, default=None)

    Image.get_image_size_in_bytes = image_size  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    patch_moto()
    patch_ecr_image_size()
    from moto.server import main as moto_main

    moto_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
