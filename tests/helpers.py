"""Helpers shared by the tests: in-memory fakes of the ports (source and target
registries) and a backup made by the real engine, under moto or on tests/fakes.py."""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.exceptions import ConnectionClosedError

from ecr_backup.backup.ports import BackupLocks, SourceRegistry
from ecr_backup.backup.replicator import Replicator
from ecr_backup.catalog.catalog import Catalog
from ecr_backup.composition import AwsServices
from ecr_backup.errors import BlobNotFoundError, ManifestNotFoundError, NotFoundError
from ecr_backup.model import Action, ImageEvent
from ecr_backup.oci import mediatypes
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Descriptor, Manifest, parse_manifest
from ecr_backup.oci.reference import ImageRef
from ecr_backup.oci.streams import Readable, read_full
from ecr_backup.registry.ecr_listing import EcrImage, ImageStatus
from ecr_backup.restore.ports import TargetRegistry
from ecr_backup.restore.referrers import referrer_descriptor
from ecr_backup.schema import render
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex
from tests.fakes import FakeBlobStore, FakeIndex

BUCKET = "backup-bucket"
TABLE = "backup-index"
ACCOUNT = "111122223333"
REGION = "eu-west-1"


def descriptor(media_type: str, data: bytes, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data), **extra}


@dataclass
class FakeRegistry(SourceRegistry):
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


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


@dataclass
class Backup:
    """Pushes images into a fake source registry and backs them up with the real engine."""

    store: S3BlobStore | FakeBlobStore
    index: DynamoIndex | FakeIndex
    source: FakeRegistry = field(default_factory=FakeRegistry)
    seed: int = 0
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    locks: BackupLocks | None = None

    @property
    def replicator(self) -> Replicator:
        return Replicator(self.source, self.store, self.index, clock=self.clock, locks=self.locks)

    def layer(self, size: int = 1000) -> bytes:
        self.seed += 1
        return hashlib.sha256(str(self.seed).encode()).digest() * (size // 32 + 1)

    def image(
        self,
        repository: str,
        layers: list[bytes] | None = None,
        *,
        architecture: str = "amd64",
        docker: bool = False,
    ) -> Manifest:
        layers = layers if layers is not None else [self.layer(), self.layer()]
        self.seed += 1
        config = json.dumps(
            {"architecture": architecture, "os": "linux", "seed": self.seed}
        ).encode()
        for data in [config, *layers]:
            self.source.add_blob(data)
        return self.source.add_manifest(
            repository,
            {
                "schemaVersion": 2,
                "mediaType": mediatypes.DOCKER_MANIFEST if docker else mediatypes.OCI_MANIFEST,
                "config": descriptor(
                    mediatypes.DOCKER_CONFIG if docker else mediatypes.OCI_CONFIG, config
                ),
                "layers": [
                    descriptor(
                        mediatypes.DOCKER_LAYER_GZIP if docker else mediatypes.OCI_LAYER_GZIP,
                        layer,
                    )
                    for layer in layers
                ],
            },
        )

    def multi_arch(self, repository: str, shared: bytes | None = None) -> Manifest:
        children = []
        for arch in ("amd64", "arm64"):
            layers = [shared] if shared else []
            children.append(self.image(repository, [*layers, self.layer()], architecture=arch))
        return self.source.add_manifest(
            repository,
            {
                "schemaVersion": 2,
                "mediaType": mediatypes.OCI_INDEX,
                "manifests": [
                    {
                        "mediaType": c.media_type,
                        "digest": str(c.digest),
                        "size": c.size,
                        "platform": {"os": "linux", "architecture": arch},
                    }
                    for c, arch in zip(children, ("amd64", "arm64"), strict=True)
                ],
            },
        )

    def signature(self, repository: str, subject: Manifest) -> Manifest:
        payload = b'{"critical":{"type":"cosign container image signature"},"n":%d}' % self.seed
        self.seed += 1
        self.source.add_blob(b"{}")
        self.source.add_blob(payload)
        return self.source.add_manifest(
            repository,
            {
                "schemaVersion": 2,
                "mediaType": mediatypes.OCI_MANIFEST,
                "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
                "config": descriptor(mediatypes.OCI_EMPTY, b"{}"),
                "layers": [descriptor("application/vnd.dev.cosign.simplesigning.v1+json", payload)],
                "subject": {
                    "mediaType": subject.media_type,
                    "digest": str(subject.digest),
                    "size": subject.size,
                },
            },
        )

    def push(
        self, repository: str, manifest: Manifest, tag: str | None, at: datetime
    ) -> ImageEvent:
        event = ImageEvent(
            repository=repository,
            digest=manifest.digest,
            action=Action.PUSH,
            time=at,
            tag=tag,
            media_type=manifest.media_type,
            source_account="123456789012",
            source_region="us-east-1",
            event_id=f"evt-{manifest.digest.hex[:8]}-{tag}",
        )
        self.replicator.backup_event(event)
        return event

    def delete(self, repository: str, manifest: Manifest, tag: str | None, at: datetime) -> None:
        event = ImageEvent(repository, manifest.digest, Action.DELETE, at, tag)
        self.replicator.record(event)

    def tamper(self, s3: Any, digest: Digest, data: bytes) -> None:
        """Write a new version over a blob's object, as someone with s3:PutObject could."""
        s3.put_object(
            Bucket=BUCKET,
            Key=self.store.blob_key(digest),
            Body=data,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=base64.b64encode(hashlib.sha256(data).digest()).decode(),
        )


class TargetError(Exception):
    pass


@dataclass
class FakeTarget(TargetRegistry):
    """An in-memory OCI registry that enforces what real ones do on manifest PUT."""

    blobs: dict[str, dict[Digest, bytes]] = field(default_factory=dict)
    manifests: dict[str, dict[str, bytes]] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    chunks: list[int] = field(default_factory=list)
    mountable: bool = True
    fail_upload_of: Digest | None = None
    requests: Counter[str] = field(default_factory=Counter)
    # Raised, one per attempt, after an upload read its whole source (a drop at the end).
    upload_errors: dict[Digest, list[Exception]] = field(default_factory=dict)
    upload_attempts: Counter[Digest] = field(default_factory=Counter)
    # The OCI 1.1 referrers API; without it (as CNCF distribution 2.x) GET answers 404.
    referrers_api: bool = False

    def blob_size(self, repository: str, digest: Digest) -> int | None:
        self.requests["HEAD blob"] += 1
        data = self.blobs.get(repository, {}).get(digest)
        return len(data) if data is not None else None

    def mount_blob(self, repository: str, digest: Digest, from_repository: str) -> bool:
        data = self.blobs.get(from_repository, {}).get(digest)
        if data is None or not self.mountable:
            return False
        self.blobs.setdefault(repository, {})[digest] = data
        self.calls.append(("mount", repository, str(digest), from_repository))
        return True

    def upload_blob(
        self,
        repository: str,
        digest: Digest,
        size: int,
        source: Readable,
        *,
        chunk_size: int | None = None,
    ) -> None:
        if digest == self.fail_upload_of:
            raise TargetError(f"upload of {digest} failed")
        self.upload_attempts[digest] += 1
        buffer = io.BytesIO()
        step = chunk_size or max(size, 1)  # None: the whole blob in one request
        while chunk := read_full(source, min(step, size - buffer.tell())):
            self.chunks.append(len(chunk))
            buffer.write(chunk)
            if buffer.tell() >= size:
                break
        data = buffer.getvalue()
        if self.upload_errors.get(digest):
            raise self.upload_errors[digest].pop(0)
        assert Digest.of(data) == digest, "registry refuses a blob that does not hash to its name"
        self.blobs.setdefault(repository, {})[digest] = data
        self.calls.append(("upload", repository, str(digest)))

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> Digest:
        held = self.blobs.get(repository, {})
        for blob in manifest.blobs:
            if blob.digest not in held and not blob.urls:
                raise TargetError(f"blob {blob.digest} unknown to {repository}")
        for child in manifest.children:
            if str(child.digest) not in self.manifests.get(repository, {}):
                raise TargetError(f"child {child.digest} unknown to {repository}")
        repo = self.manifests.setdefault(repository, {})
        repo[reference] = manifest.raw
        repo[str(manifest.digest)] = manifest.raw
        self.calls.append(("manifest", repository, reference))
        return manifest.digest

    def manifest_digest(self, repository: str, reference: str) -> Digest | None:
        raw = self.manifests.get(repository, {}).get(reference)
        return parse_manifest(raw).digest if raw is not None else None

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        raw = self.manifests.get(repository, {}).get(reference)
        if raw is None:
            raise ManifestNotFoundError(f"manifest {repository}:{reference} not found")
        return parse_manifest(raw)

    def referrers(self, repository: str, subject: Digest) -> list[Descriptor] | None:
        if not self.referrers_api:
            return None
        held = [parse_manifest(raw) for raw in self.manifests.get(repository, {}).values()]
        found = {m.digest: m for m in held if m.subject is not None}
        return [
            Descriptor.model_validate(referrer_descriptor(m))
            for _, m in sorted(found.items())
            if m.subject is not None and m.subject.digest == subject
        ]

    def tags(self, repository: str) -> dict[str, Digest]:
        return {
            ref: Digest.of(raw)
            for ref, raw in self.manifests.get(repository, {}).items()
            if not ref.startswith("sha256:")
        }


@dataclass
class RecordedBar:
    """One progress bar as a long operation drove it."""

    total: int
    label: str
    done: int = 0
    finished: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def advance(self, amount: int) -> None:
        with self._lock:  # blob copies run on several threads
            self.done += amount

    def grow(self, amount: int) -> None:
        self.total += amount

    def finish(self) -> None:
        self.finished = True


@dataclass
class ProgressRecorder:
    """A ProgressFactory that keeps every bar it made."""

    bars: list[RecordedBar] = field(default_factory=list)

    def __call__(self, total: int, label: str) -> RecordedBar:
        self.bars.append(RecordedBar(total, label))
        return self.bars[-1]


def parser_commands() -> dict[str, argparse.ArgumentParser]:
    """Every subcommand of `ecr-backup`, by name, as the parser has them."""
    from ecr_backup.cli import build_parser

    found = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(found) == 1
    return dict(found[0].choices)


def drop_table() -> None:
    dynamo = boto3.client("dynamodb")
    dynamo.update_table(TableName=TABLE, DeletionProtectionEnabled=False)
    dynamo.delete_table(TableName=TABLE)


def answers(catalog: Catalog) -> dict[str, Any]:
    """Every query's answer, as plain data."""
    result: dict[str, Any] = {"repos": catalog.repositories()}
    for repository in result["repos"]:
        rows = catalog.tag_rows(repository)
        result[f"tags {repository}"] = [asdict(r) for r in rows]
        result[f"images {repository}"] = [str(d) for d in catalog.images(repository)]
        for row in rows:
            ref = ImageRef(repository, row.tag)
            result[f"history {ref}"] = [
                (str(e.digest), e.action, e.time, e.source_account)
                for e in catalog.history(repository, row.tag)
            ]
            for label, at in (("now", None), ("at", minutes(15))):
                try:
                    result[f"{label} {ref}"] = render("show", catalog.show(ref, at))
                except NotFoundError as e:  # removed tags answer with an error, the same one
                    result[f"{label} {ref}"] = str(e)
    return result


def ecr_event(
    digest: Digest | str,
    *,
    action: str = "PUSH",
    tag: str | None = "v1",
    result: str = "SUCCESS",
    repository: str = "team/app",
    event_id: str | None = None,
    time: str = "2026-05-01T10:00:00Z",
) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "result": result,
        "repository-name": repository,
        "image-digest": str(digest),
        "action-type": action,
        "manifest-media-type": mediatypes.OCI_MANIFEST,
    }
    if tag:
        detail["image-tag"] = tag
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "account": ACCOUNT,
        "time": time,
        "region": REGION,
        "resources": [],
        "detail": detail,
    }


def reset_connections(
    services: AwsServices, service: str, operation: str, marker: str
) -> list[str]:
    """Every `operation` request whose URL or body mentions `marker` dies with a reset
    connection (as botocore reports it), on every attempt; returns the URLs refused."""
    refused: list[str] = []

    def fail(request: Any, **_: Any) -> None:
        body = request.body if isinstance(request.body, bytes) else b""
        if marker in request.url or marker.encode() in body:
            refused.append(request.url)
            raise ConnectionClosedError(endpoint_url=request.url)

    services.session.events.register(f"before-send.{service}.{operation}", fail)
    return refused


@dataclass
class FakeEcr:
    """ECR's control plane as reconcile reads it (ecr_backup.coverage.reconcile.EcrCatalog)."""

    images_by_repository: dict[str, list[EcrImage]] = field(default_factory=dict)
    describe_calls: int = 0

    def add(
        self,
        repository: str,
        digest: Digest,
        *tags: str,
        pushed_at: datetime = T0,
        status: ImageStatus = ImageStatus.ACTIVE,
        size: int = 1000,
    ) -> EcrImage:
        kind = mediatypes.OCI_MANIFEST
        image = EcrImage(repository, digest, tuple(sorted(tags)), pushed_at, kind, size, status)
        self.images_by_repository.setdefault(repository, []).append(image)
        return image

    def remove(self, repository: str, digest: Digest) -> None:
        images = self.images_by_repository[repository]
        images[:] = [i for i in images if i.digest != digest]

    def retag(self, repository: str, tag: str, digest: Digest) -> None:
        """Move `tag` onto `digest`, as a PutImage of an existing manifest does."""
        images = self.images_by_repository[repository]
        for n, image in enumerate(images):
            tags = tuple(t for t in image.tags if t != tag)
            if image.digest == digest:
                tags = tuple(sorted((*tags, tag)))
            images[n] = replace(image, tags=tags)

    def repositories(self, prefixes: Sequence[str] = ()) -> Iterator[str]:
        for name in sorted(self.images_by_repository):
            if not prefixes or name.startswith(tuple(prefixes)):
                yield name

    def images(self, repository: str) -> list[EcrImage] | None:
        self.describe_calls += 1
        found = self.images_by_repository.get(repository)
        return list(found) if found is not None else None
