"""Verify the backup: every complete image's closure is in the bucket, intact.

Without --deep: each manifest is read and hashed (they are small), each blob's current
object version exists with its descriptor's size, and each object was written once. With
--deep: every object (the closure's, or with no reference every object under blobs/) is
re-read and re-hashed, streamed, and for an object whose current version does not hash
to its name, the older versions are searched for the one restore and export will read.

The bucket is versioned and the backup writes each object exactly once (If-None-Match),
so an object with more than one version was written by something else: that is reported.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from ecr_backup.catalog.catalog import Catalog
from ecr_backup.errors import EcrBackupError, StorageError
from ecr_backup.oci.digest import Digest, is_sha256_hex
from ecr_backup.oci.manifest import Descriptor, Manifest
from ecr_backup.oci.reference import ImageRef
from ecr_backup.progress import ProgressFactory, no_progress
from ecr_backup.settings import DEFAULT_CONCURRENCY
from ecr_backup.storage.blobstore import ObjectVersion
from ecr_backup.storage.reader import BucketReader
from ecr_backup.text import counted

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    kind: str  # missing, deleted, size, hash, rewritten, incomplete, unreadable, record, stray
    subject: str  # a digest, or a key
    detail: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.detail}"


@dataclass
class VerifyReport:
    scope: str
    deep: bool
    source: str = "index"
    images: int = 0
    manifests: int = 0
    blobs: int = 0
    bytes: int = 0
    objects_hashed: int = 0
    bytes_hashed: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class _Verifier:
    def __init__(
        self,
        catalog: Catalog,
        report: VerifyReport,
        *,
        deep: bool,
        listing: dict[str, list[ObjectVersion]] | None,
    ) -> None:
        self.catalog = catalog
        self.reader: BucketReader = catalog.reader
        self.store = catalog.store
        self.report = report
        self.deep = deep
        self._listing = listing
        self.manifests: dict[Digest, Manifest] = {}
        self.blobs: dict[Digest, Descriptor] = {}
        self.to_hash: dict[Digest, int] = {}  # digest -> expected size
        self._lock = threading.Lock()  # deep hashing reports from several threads
        self._versions: dict[Digest, list[ObjectVersion]] = {}

    def problem(self, kind: str, subject: object, detail: str) -> None:
        with self._lock:
            self.report.problems.append(Problem(kind, str(subject), detail))

    def versions(self, digest: Digest) -> list[ObjectVersion]:
        if self._listing is not None:
            return self._listing.get(digest.hex, [])
        with self._lock:
            cached = self._versions.get(digest)
        if cached is None:
            cached = self.store.versions(digest)
            with self._lock:
                self._versions[digest] = cached
        return cached

    def check_object(self, digest: Digest, size: int | None) -> ObjectVersion | None:
        """Presence, size and single write of the current version; returns it if usable."""
        versions = self.versions(digest)
        live = [v for v in versions if not v.deleted]
        current = next((v for v in versions if v.is_latest), None)
        where = self.reader.where(digest)
        if not live:
            self.problem("missing", digest, f"not in the bucket ({where})")
            return None
        if current is None or current.deleted:
            self.problem(
                "deleted",
                digest,
                f"{where} was deleted (a delete marker); earlier versions left: {len(live)}",
            )
            return None
        if size is not None and current.size != size:
            self.problem("size", digest, f"{where} holds {current.size} bytes, expected {size}")
        if len(live) > 1 and not self.deep:
            self.problem(
                "rewritten",
                digest,
                f"{where} has {counted(len(live), 'version')}, but the backup writes each "
                "object once: "
                "something else wrote to it (run verify --deep)",
            )
        return current

    def manifest(self, digest: Digest, size: int | None = None) -> Manifest | None:
        if digest in self.manifests:
            return self.manifests[digest]
        current = self.check_object(digest, size)
        if current is not None:
            # Manifests are small: always hashed, deep or not.
            self.to_hash.pop(digest, None)
            self.hash_current(digest, current.size)
        try:
            manifest = self.reader.manifest(digest)
        except EcrBackupError as e:
            self.problem("unreadable", digest, str(e))
            return None
        self.manifests[digest] = manifest
        self.report.manifests += 1
        for child in manifest.children:
            self.manifest(child.digest, child.size)
        for blob in manifest.blobs:
            self.blob(blob)
        return manifest

    def blob(self, blob: Descriptor) -> None:
        if blob.digest in self.blobs:
            return
        self.blobs[blob.digest] = blob
        self.report.blobs += 1
        self.report.bytes += blob.size
        versions = self.versions(blob.digest)
        if blob.is_foreign and not any(not v.deleted for v in versions):
            self.report.notes.append(f"{blob.digest}: foreign layer, not held by the backup")
            return
        if self.check_object(blob.digest, blob.size) is not None and self.deep:
            self.to_hash[blob.digest] = blob.size

    def hash_current(self, digest: Digest, size: int) -> None:
        try:
            actual, read = self.reader.hash_version(digest, None)
        except (StorageError, EcrBackupError) as e:
            self.problem("unreadable", digest, f"cannot read {self.reader.where(digest)}: {e}")
            return
        with self._lock:
            self.report.objects_hashed += 1
            self.report.bytes_hashed += read
        if actual == digest:
            if self.deep and len([v for v in self.versions(digest) if not v.deleted]) > 1:
                with self._lock:
                    self.report.notes.append(
                        f"{digest}: written more than once, but the current version is intact"
                    )
            return
        self.problem(
            "hash",
            digest,
            f"the current version of {self.reader.where(digest)} hashes to {actual}"
            f"{self.recovery(digest, size)}",
        )

    def recovery(self, digest: Digest, size: int) -> str:
        """What restore will do about an object whose current version is not intact."""
        for version in reversed([v for v in self.versions(digest) if not v.deleted]):
            if version.is_latest or version.size != size:
                continue
            if self.reader.hash_version(digest, version.version_id)[0] == digest:
                return f"; version {version.version_id} is intact: restore and export read it"
        return "; no version is intact: this content is lost from the backup"


def _listing(catalog: Catalog, report: VerifyReport) -> dict[str, list[ObjectVersion]]:
    listing: dict[str, list[ObjectVersion]] = {}
    for name, version in catalog.store.iter_blob_versions():
        if not is_sha256_hex(name):
            report.problems.append(
                Problem("stray", f"blobs/sha256/{name}", "not named by a sha256 digest")
            )
            continue
        listing.setdefault(name, []).append(version)
    return listing


def verify(
    catalog: Catalog,
    *,
    ref: ImageRef | None = None,
    at: datetime | None = None,
    deep: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: ProgressFactory = no_progress,
) -> VerifyReport:
    """Check one image (with its referrers) or every image the catalog knows."""
    report = VerifyReport(scope=str(ref) if ref else "all", deep=deep)
    listing = _listing(catalog, report) if ref is None else None
    verifier = _Verifier(catalog, report, deep=deep, listing=listing)
    if ref is not None:
        _verify_image(verifier, catalog, ref, at)
    else:
        _verify_everything(verifier, catalog)
    report.source = catalog.source
    if deep:
        if listing is not None:
            _queue_unreferenced(verifier, listing)
        _hash_all(verifier, concurrency, progress)
    return report


def _verify_image(
    verifier: _Verifier, catalog: Catalog, ref: ImageRef, at: datetime | None
) -> None:
    resolved = catalog.resolve(ref, at)
    verifier.report.images = 1
    if verifier.manifest(resolved.digest) is None:
        return
    closure = catalog.reader.closure(resolved.digest)
    for referrer in catalog.referrers(ref.repository, closure):
        verifier.report.images += 1
        verifier.manifest(referrer.digest)


def _verify_everything(verifier: _Verifier, catalog: Catalog) -> None:
    report = verifier.report
    for repository in catalog.repositories():
        for digest in catalog.images(repository):
            report.images += 1
            if catalog.is_complete(digest) is False:
                verifier.problem(
                    "incomplete",
                    digest,
                    f"pushed to {repository}, but the index does not hold it as complete",
                )
            verifier.manifest(digest)
    records = catalog.records
    if records is not None:
        for invalid in records.invalid:
            verifier.problem("record", invalid.split(":", 1)[0], invalid)


def _queue_unreferenced(verifier: _Verifier, listing: dict[str, list[ObjectVersion]]) -> None:
    """--deep with no reference hashes every object, those no image references included."""
    for name, versions in listing.items():
        digest = Digest("sha256", name)
        current = next((v for v in versions if v.is_latest and not v.deleted), None)
        if current is not None and digest not in verifier.manifests:
            verifier.to_hash.setdefault(digest, current.size)
    referenced = {d.hex for d in verifier.manifests} | {d.hex for d in verifier.blobs}
    orphans = len(listing.keys() - referenced)
    if orphans:
        verifier.report.notes.append(
            f"{counted(orphans, 'object')} not referenced by any backed-up image (an "
            "interrupted backup leaves blobs before their manifest)"
        )


def _hash_all(verifier: _Verifier, concurrency: int, progress_factory: ProgressFactory) -> None:
    work = sorted(verifier.to_hash.items(), key=lambda item: str(item[0]))
    progress = progress_factory(sum(size for _, size in work), "verify")

    def hash_one(item: tuple[Digest, int]) -> None:
        verifier.hash_current(*item)
        progress.advance(item[1])

    with ThreadPoolExecutor(concurrency, thread_name_prefix="verify") as pool:
        list(pool.map(hash_one, work))
    progress.finish()
