"""`python -m moto.server` as the devkit runs it: with its disk use bounded, with large
generated objects that cost no upload, and with request costs that grow less with the data.

Run as a script (`python devkit/moto_server.py -H 127.0.0.1 -p PORT`), it patches moto
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

**Speed, same answers.** Unpatched, a DynamoDB Query reads the whole table, an SQS request
reads the clock once per message in the queue, and every request looks for its access key
in every account's IAM backend, creating missing ones on the way: an organization-scale
reconcile (bench/org_reconcile_bench.py) slows quadratically. `patch_dynamodb_query`,
`patch_sqs_clock` and `patch_iam_account_lookup` change only that cost;
tests/functional/test_moto_patches.py shows each answering as moto does.

**Atomic DynamoDB requests.** moto answers requests on threads, and its TransactWriteItems
rolls back by putting back a copy of the table taken while others write: the copy can
fail, and a rollback can undo other requests' committed writes. DynamoDB does neither.
`patch_dynamodb_atomic` answers DynamoDB requests one at a time, here and in the
functional tests' in-process moto.
"""

from __future__ import annotations

import hashlib
import random
import sys
import threading
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


def patch_dynamodb_query() -> None:
    """A base-table Query reads its partition, not the table.

    moto's Table.query gathers `self.all_items()` (every item of the table, sorted) and keeps
    those whose hash key equals the query's, so each Query costs the whole table. The items
    with that hash key are exactly `table.items[hash_key]` (DynamoType hashes and compares by
    type and value), so the original runs here on a view of the table holding that one
    partition: same items, order, paging, filters and projections. An index query, which
    matches on other attributes, still reads the whole table.
    """
    from moto.dynamodb.models.table import Table

    query = Table.query

    def partition_query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name or hash_key is None:
            return query(self, hash_key, *args, **kwargs)
        # A per-call view, never a change to the table: moto's server answers on threads.
        view = object.__new__(type(self))  # skips BaseModel.__new__: not tracked
        view.__dict__.update(self.__dict__)
        partition = self.items.get(hash_key)
        view.items = {} if partition is None else {hash_key: partition}
        return query(view, hash_key, *args, **kwargs)

    Table.query = partition_query  # type: ignore[method-assign]


def patch_sqs_clock() -> None:
    """A queue's message counts and visible messages read the clock once per pass.

    moto asks `Message.visible` and `Message.delayed` per message, and each reads the clock
    (unix_time_millis, a few microseconds), on every SendMessage (which builds the queue's
    attributes, counts included), ReceiveMessage and GetQueueAttributes: with thousands of
    messages waiting, that clock is most of the run. Reading it once per pass answers what
    the per-message readings would if the pass took no time; the comparisons are moto's own
    (visible: now > visible_at; delayed: now < delayed_until).
    """
    from moto.core.utils import unix_time_millis
    from moto.sqs.models import Queue

    def messages(self: Any) -> list[Any]:
        now = unix_time_millis()
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    def delayed(self: Any) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if now < m.delayed_until)

    def not_visible(self: Any) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if not now > m.visible_at)

    Queue.messages = property(messages)  # type: ignore[method-assign,assignment]
    Queue.approximate_number_of_messages_delayed = property(delayed)  # type: ignore[method-assign,assignment]
    Queue.approximate_number_of_messages_not_visible = property(not_visible)  # type: ignore[method-assign,assignment]


def patch_iam_account_lookup() -> None:
    """The account of a request's access key, found without creating backends on the way.

    moto finds a request's account by asking every account's IAM backend, in every partition,
    whether it holds the access key (`get_account_id_from`); `account[partition]` creates each
    missing partition's backend on the way (0.57 ms a request at 100 accounts, profiled).
    Reading only the backends that exist gives the same first account, in the same order: a
    backend not yet created holds no key. The walk stays linear in the accounts, only
    cheaper (1.2 ms a request at 1,000 accounts, profiled).
    """
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.iam import models
    from moto.utilities.utils import PARTITION_NAMES

    partitions = frozenset(PARTITION_NAMES)

    def get_account_id_from(access_key: str) -> str:
        # list() snapshots, as moto's own loop does: the server answers on threads.
        for account_id, account in list(models.iam_backends.items()):
            for partition, backend in list(dict.items(account)):
                if partition in partitions and access_key in backend.access_keys:
                    return account_id
        return DEFAULT_ACCOUNT_ID

    models.get_account_id_from = get_account_id_from


def patch_dynamodb_atomic() -> None:
    """Each DynamoDB request is answered whole before the next starts, as DynamoDB's are
    atomic: moto's are not on threads.

    moto's TransactWriteItems deep-copies every table it touches, to put the copy back if a
    condition fails. Another thread's write during the copy breaks it ("dictionary changed
    size during iteration"), and one that lands before a rollback is lost with it: a
    committed PutItem undone by somebody else's failed transaction, which DynamoDB never
    does. The engine writes from threads (blob copies, backfill's images), so the devkit's
    server and the functional tests' in-process moto take the requests one at a time.
    """
    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoHandler.call_action, "_atomic", False):
        return
    answer = DynamoHandler.call_action
    one_at_a_time = threading.Lock()

    def call_action(self: Any) -> Any:
        with one_at_a_time:
            return answer(self)

    call_action._atomic = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


def patch_for_speed() -> None:
    """The patches that change what a request costs, never what it answers."""
    patch_dynamodb_query()
    patch_sqs_clock()
    patch_iam_account_lookup()


def main(argv: list[str]) -> None:
    patch_moto()
    patch_ecr_image_size()
    patch_dynamodb_atomic()
    patch_for_speed()
    from moto.server import main as moto_main

    moto_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
