"""Restore images from the bucket into any registry (ECR included), digest for digest.

Order of work, so that a restore that fails halfway leaves nothing tagged at the target:
plan everything from the bucket first (every manifest read and verified, every blob found);
then blobs (HEAD and skip what the target holds, mount what a sibling repository holds,
upload the rest in chunks streamed from S3); then manifests by digest, children before the
indexes that list them, with their exact stored bytes; then, last, the tags.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import re
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal, TextIO
from urllib.parse import urlencode

import urllib3
from botocore.exceptions import BotoCoreError, ClientError

from ecr_backup.composition import EcrTokenSource, caller_identity
from ecr_backup.errors import (
    BlobNotFoundError,
    DigestMismatchError,
    InvalidInputError,
    NotFoundError,
    RegistryAuthError,
    RegistryError,
    RepositoryNotFoundError,
)
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Descriptor, Manifest
from ecr_backup.oci.reference import ImageRef, validate_repository, validate_tag
from ecr_backup.oci.streams import Readable, read_full
from ecr_backup.registry.client import Anonymous, Credentials, RegistryClient, TokenCredentials
from ecr_backup.restore.catalog import BucketReader, Catalog, Closure, Resolved, display_time
from ecr_backup.storage.blobstore import MiB
from ecr_backup.storage.records import Action, TagState, format_time

if TYPE_CHECKING:
    import boto3

log = logging.getLogger(__name__)

# ECR's documented part limits for layer uploads are 5 to 10 MiB (the last part may be
# smaller); 8 MiB is inside them and still few requests per GiB.
DEFAULT_CHUNK_SIZE = 8 * MiB
MIN_CHUNK_SIZE = 5 * MiB
DEFAULT_CONCURRENCY = 4
_BLOB_ATTEMPTS = 3

_ECR_HOST = re.compile(
    r"(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
)
_LOOPBACK = ("localhost", "127.", "[::1]")

AuthMode = Literal["auto", "ecr", "basic", "none"]


# -- the target ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where to restore: a registry URL, a repository and maybe a tag."""

    url: str  # scheme://host[:port]
    host: str
    repository: str
    tag: str | None = None
    ecr_account: str | None = None
    ecr_region: str | None = None

    @property
    def is_ecr(self) -> bool:
        return self.ecr_account is not None

    def __str__(self) -> str:
        name = f"{self.host}/{self.repository}"
        return f"{name}:{self.tag}" if self.tag else name


def parse_target(text: str, *, endpoint: str | None = None) -> Target:
    """[http://|https://]HOST[:PORT]/REPOSITORY[:TAG]; loopback hosts default to http.

    `endpoint` sends the requests elsewhere (a VPC endpoint, a test double) while auth and
    repository creation still follow the host named in `text`.
    """
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    elif scheme not in ("http", "https"):
        raise InvalidInputError(f"invalid target {text!r}: use http:// or https://")
    host, slash, path = rest.partition("/")
    if not host or not slash or not path:
        raise InvalidInputError(
            f"invalid target {text!r}: expected [https://]HOST[:PORT]/REPOSITORY[:TAG]"
        )
    if "@" in path:
        raise InvalidInputError(
            f"invalid target {text!r}: name a repository and optionally a tag; the digest "
            "comes from the backup"
        )
    repository, tag = path, None
    colon = path.rfind(":")
    if colon > path.rfind("/"):
        repository, tag = path[:colon], validate_tag(path[colon + 1 :])
    validate_repository(repository)
    if not scheme:
        scheme = "http" if host.startswith(_LOOPBACK) else "https"
    url = f"{scheme}://{host}"
    if endpoint:
        if not re.fullmatch(r"https?://[^/\s]+/?", endpoint):
            raise InvalidInputError(f"invalid endpoint {endpoint!r}: use http(s)://HOST[:PORT]")
        url = endpoint.rstrip("/")
    ecr = _ECR_HOST.fullmatch(host)
    return Target(
        url=url,
        host=host,
        repository=repository,
        tag=tag,
        ecr_account=ecr["account"] if ecr else None,
        ecr_region=ecr["region"] if ecr else None,
    )


class BasicCredentials:
    def __init__(self, username: str, password: str) -> None:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._header = f"Basic {token}"

    def authorization(self, *, refresh: bool = False) -> str | None:
        return self._header


class ChallengeCredentials:
    """For registries other than ECR: whatever their /v2/ challenge asks for.

    Basic sends the user and password; Bearer (Docker Hub, GHCR, Harbor, distribution with
    token auth) gets one token covering every repository the restore touches, since our
    registry client asks for credentials without saying for which request.
    """

    def __init__(
        self,
        base_url: str,
        username: str | None,
        password: str | None,
        repositories: Sequence[str],
        *,
        http: urllib3.PoolManager | None = None,
    ) -> None:
        self._base_url = base_url
        self._username = username
        self._password = password or ""
        self._scopes = [f"repository:{repositories[0]}:pull,push"] + [
            f"repository:{r}:pull" for r in repositories[1:]
        ]
        self._http = http or urllib3.PoolManager(timeout=urllib3.Timeout(connect=10, read=60))
        self._lock = threading.Lock()
        self._header: str | None = None
        self._checked = False
        self._expires = 0.0

    def authorization(self, *, refresh: bool = False) -> str | None:
        with self._lock:
            if refresh or not self._checked or (self._expires and time.monotonic() > self._expires):
                self._header = self._login()
                self._checked = True
            return self._header

    def _login(self) -> str | None:
        probe = self._http.request("GET", f"{self._base_url}/v2/", redirect=False)
        if probe.status != 401:
            return self._basic() if self._username else None
        challenge = probe.headers.get("WWW-Authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if not self._username:
                raise RegistryAuthError(
                    f"{self._base_url} wants a user name and password: pass --to-username and "
                    "set ECR_BACKUP_TARGET_PASSWORD"
                )
            return self._basic()
        if scheme != "bearer":
            raise RegistryAuthError(f"{self._base_url}: unsupported auth challenge {challenge!r}")
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.get("realm")
        if not realm:
            raise RegistryAuthError(f"{self._base_url}: bearer challenge without a realm")
        query = [("scope", s) for s in self._scopes]
        if params.get("service"):
            query.insert(0, ("service", params["service"]))
        headers = {}
        if self._username:
            headers["Authorization"] = self._basic()
        answer = self._http.request("GET", f"{realm}?{urlencode(query)}", headers=headers)
        if answer.status != 200:
            raise RegistryAuthError(f"{realm}: token request refused (HTTP {answer.status})")
        document = json.loads(answer.data)
        token = document.get("token") or document.get("access_token")
        if not token:
            raise RegistryAuthError(f"{realm}: no token in the answer")
        lifetime = float(document.get("expires_in") or 60)
        self._expires = time.monotonic() + max(lifetime - 10, 10)
        return f"Bearer {token}"

    def _basic(self) -> str:
        token = base64.b64encode(f"{self._username}:{self._password}".encode()).decode()
        return f"Basic {token}"


def target_credentials(
    target: Target,
    *,
    auth: AuthMode = "auto",
    session: boto3.Session | None = None,
    username: str | None = None,
    password: str | None = None,
    mount_from: Sequence[str] = (),
) -> Credentials:
    """ECR auth for ECR hosts (or --to-auth ecr), else what the registry's challenge asks."""
    if auth == "none":
        return Anonymous()
    if auth == "ecr" or (auth == "auto" and target.is_ecr):
        if session is None:
            raise InvalidInputError("ECR auth needs an AWS session")
        account, region = ecr_identity(target, session)
        return TokenCredentials(EcrTokenSource(session, account, region))
    if auth == "basic":
        if not username:
            raise InvalidInputError("--to-auth basic needs --to-username")
        return BasicCredentials(username, password or "")
    return ChallengeCredentials(target.url, username, password, [target.repository, *mount_from])


def ecr_identity(target: Target, session: boto3.Session) -> tuple[str, str]:
    """The registry id and region of an ECR target: from its host, else this session's."""
    if target.ecr_account and target.ecr_region:
        return target.ecr_account, target.ecr_region
    return caller_identity(session)


def ensure_ecr_repository(
    target: Target, session: boto3.Session, *, create: bool, dry_run: bool = False
) -> bool:
    """Check the ECR repository exists; create it when asked. True when (it would be) created."""
    account, region = ecr_identity(target, session)
    ecr = session.client("ecr", region_name=region)
    try:
        ecr.describe_repositories(registryId=account, repositoryNames=[target.repository])
        return False
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "RepositoryNotFoundException":
            raise RegistryError(f"cannot look up {target.repository} in {target.host}: {e}") from e
    except BotoCoreError as e:
        raise RegistryError(f"cannot look up {target.repository} in {target.host}: {e}") from e
    if not create:
        raise RepositoryNotFoundError(
            f"repository {target.repository} does not exist in {target.host}: pass "
            "--create-repository to create it"
        )
    if dry_run:
        return True
    try:
        ecr.create_repository(registryId=account, repositoryName=target.repository)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "RepositoryAlreadyExistsException":
            raise RegistryError(f"cannot create {target.repository} in {target.host}: {e}") from e
        return False
    return True


# -- planning -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreRequest:
    source: ImageRef  # REPOSITORY[:TAG|@DIGEST]; the repository alone with all_tags
    at: datetime | None = None
    all_tags: bool = False
    with_referrers: bool = False


@dataclass(frozen=True)
class RestoreRoot:
    resolved: Resolved
    closure: Closure
    target_tag: str | None


@dataclass
class RestorePlan:
    target: Target
    roots: list[RestoreRoot]
    referrers: list[Closure]
    manifests: list[Manifest]  # push order: children before parents, each once
    blobs: list[Descriptor]  # each once, all in the bucket
    foreign: list[Descriptor]  # foreign layers the bucket does not hold: not pushed
    removed_tags: list[TagState] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(b.size for b in self.blobs)

    def as_dict(self) -> dict[str, object]:
        return {
            "target": str(self.target),
            "images": [
                {
                    "source": str(r.resolved),
                    "digest": str(r.closure.digest),
                    "tag": r.target_tag,
                    "pushed_at": format_time(r.resolved.pushed_at)
                    if r.resolved.pushed_at
                    else None,
                }
                for r in self.roots
            ],
            "referrers": [str(r.digest) for r in self.referrers],
            "manifests": [
                {"digest": str(m.digest), "media_type": m.media_type, "size": m.size}
                for m in self.manifests
            ],
            "blobs": [
                {"digest": str(b.digest), "media_type": b.media_type, "size": b.size}
                for b in self.blobs
            ],
            "foreign_layers_not_in_backup": [str(b.digest) for b in self.foreign],
            "removed_tags_skipped": [
                {"tag": t.tag, "removed_at": format_time(t.time), "digest": str(t.digest)}
                for t in self.removed_tags
            ],
            "total_bytes": self.total_bytes,
        }


def _resolve(
    catalog: Catalog, request: RestoreRequest, target: Target
) -> tuple[list[Resolved], list[TagState]]:
    """The digests to restore, and (--all-tags) the tags skipped because they were removed."""
    ref = request.source
    if not request.all_tags:
        return [catalog.resolve(ref, request.at)], []
    if ref.tag or ref.digest:
        raise InvalidInputError("--all-tags takes a REPOSITORY, without a tag or digest")
    if target.tag:
        raise InvalidInputError(
            "--all-tags keeps every tag's name: give --to HOST/REPOSITORY without a tag"
        )
    states = catalog.tags(ref.repository, request.at)
    removed = [s for s in states if s.action is Action.DELETE]
    live = [s for s in states if s.action is Action.PUSH]
    if not live:
        when = f" at {display_time(request.at)}" if request.at else ""
        hint = f" ({len(removed)} removed: pass --at a time before that)" if removed else ""
        raise NotFoundError(f"no tags of {ref.repository}{when}{hint}")
    return [Resolved(ref.repository, s.digest, s.tag, s.time, request.at) for s in live], removed


def plan_restore(
    catalog: Catalog,
    request: RestoreRequest,
    target: Target,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> RestorePlan:
    """Everything the restore will push, read and checked from the bucket before any push."""
    resolved, removed = _resolve(catalog, request, target)
    reader = catalog.reader
    roots: list[RestoreRoot] = []
    for item in resolved:
        closure = reader.closure(item.digest)
        tag = item.tag if request.all_tags else (target.tag or item.tag)
        roots.append(RestoreRoot(item, closure, tag))

    referrers: list[Closure] = []
    if request.with_referrers:
        seen: set[Digest] = set()
        for root in roots:
            for referrer in catalog.referrers(request.source.repository, root.closure):
                if referrer.digest not in seen:
                    seen.add(referrer.digest)
                    referrers.append(referrer)

    manifests: dict[Digest, Manifest] = {}
    blobs: dict[Digest, Descriptor] = {}
    for closure in [r.closure for r in roots] + referrers:
        for manifest in closure.push_order():
            manifests.setdefault(manifest.digest, manifest)
        for blob in closure.blobs:
            blobs.setdefault(blob.digest, blob)

    def present(blob: Descriptor) -> bool:
        try:
            reader.locate(blob.digest, size=blob.size)
        except BlobNotFoundError:
            if blob.is_foreign:
                return False  # foreign layers come from their URLs, not the registry
            raise
        return True

    # Every blob found (and, when written over, its intact version chosen) before any push.
    with ThreadPoolExecutor(concurrency, thread_name_prefix="plan") as pool:
        found = list(pool.map(present, blobs.values()))
    return RestorePlan(
        target=target,
        roots=roots,
        referrers=referrers,
        manifests=list(manifests.values()),
        blobs=[b for b, ok in zip(blobs.values(), found, strict=True) if ok],
        foreign=[b for b, ok in zip(blobs.values(), found, strict=True) if not ok],
        removed_tags=removed,
    )


# -- progress ---------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on a terminal (stderr); silent elsewhere."""

    _WIDTH = 28

    def __init__(self, total: int, stream: TextIO | None = None, *, label: str = "restore") -> None:
        self.total = max(total, 1)
        self.label = label
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self._stream, "isatty", lambda: False)())
        self._done = 0
        self._lock = threading.Lock()
        self._drawn = 0.0
        self._start = time.monotonic()

    def advance(self, amount: int) -> None:
        with self._lock:
            self._done += amount
            now = time.monotonic()
            if self.enabled and now - self._drawn >= 0.2:
                self._drawn = now
                self._draw(now)

    def _draw(self, now: float) -> None:
        share = min(self._done / self.total, 1.0)
        filled = int(share * self._WIDTH)
        rate = self._done / max(now - self._start, 1e-6)
        self._stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (self._WIDTH - filled)}] {share:4.0%} "
            f"{_mib(self._done)} / {_mib(self.total)} MiB  {_mib(rate)} MiB/s "
        )
        self._stream.flush()

    def finish(self) -> None:
        if self.enabled:
            with self._lock:
                self._draw(time.monotonic())
                self._stream.write("\n")
                self._stream.flush()


def _mib(size: float) -> str:
    return f"{size / MiB:.1f}"


class _Counted:
    """A stream that tells the progress bar how much went by."""

    def __init__(self, source: Readable, progress: Progress) -> None:
        self._source = source
        self._progress = progress
        self.count = 0

    def read(self, amt: int = -1, /) -> bytes:
        data = self._source.read(amt)
        self.count += len(data)
        self._progress.advance(len(data))
        return data


class _ReadAhead:
    """Reads the next chunk from the bucket while the registry takes the current one.

    A chunked upload alternates "read a chunk from S3" and "send it to the registry"; done
    in turn, each side waits for the other. One chunk of read-ahead overlaps them, for one
    more chunk of memory per upload. Errors (a digest mismatch on the last chunk) reach the
    uploader in place of the chunk, so the upload is never committed.
    """

    def __init__(self, source: Readable, chunk_size: int) -> None:
        self._source = source
        self._chunk_size = chunk_size
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=1)
        self._buffer = b""
        self._finished = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, name="read-ahead", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = read_full(self._source, self._chunk_size)
                self._hand_over(chunk)
                if not chunk:
                    return
        except BaseException as e:  # handed to the reading thread, raised there
            self._hand_over(e)

    def _hand_over(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, amt: int = -1, /) -> bytes:
        if not self._buffer and not self._finished:
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._finished = True
                raise item
            self._buffer = item
            self._finished = not item
        if amt < 0 or amt >= len(self._buffer):
            data, self._buffer = self._buffer, b""  # whole chunks pass without a copy
        else:
            data, self._buffer = self._buffer[:amt], self._buffer[amt:]
        return data

    def close(self) -> None:
        """Stop reading ahead; the bucket's stream may be closed after this returns."""
        self._stop.set()
        self._thread.join()


# -- pushing ---------------------------------------------------------------------------------


@dataclass
class RestoreReport:
    target: str
    dry_run: bool = False
    created_repository: bool = False
    images: list[tuple[str, str | None]] = field(default_factory=list)  # (digest, tag)
    manifests_pushed: list[Digest] = field(default_factory=list)
    manifests_present: list[Digest] = field(default_factory=list)
    blobs_uploaded: list[Digest] = field(default_factory=list)
    blobs_mounted: list[Digest] = field(default_factory=list)
    blobs_present: list[Digest] = field(default_factory=list)
    bytes_uploaded: int = 0
    bytes_mounted: int = 0
    bytes_present: int = 0
    tags_set: list[str] = field(default_factory=list)
    tags_unchanged: list[str] = field(default_factory=list)
    tags_moved: dict[str, str] = field(default_factory=dict)  # tag -> digest it pointed at
    recovered_versions: dict[str, str | None] = field(default_factory=dict)
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def blob(self, kind: Literal["uploaded", "mounted", "present"], blob: Descriptor) -> None:
        with self._lock:
            if kind == "uploaded":
                self.blobs_uploaded.append(blob.digest)
                self.bytes_uploaded += blob.size
            elif kind == "mounted":
                self.blobs_mounted.append(blob.digest)
                self.bytes_mounted += blob.size
            else:
                self.blobs_present.append(blob.digest)
                self.bytes_present += blob.size

    def as_dict(self) -> dict[str, object]:
        return {
            "target": self.target,
            "dry_run": self.dry_run,
            "created_repository": self.created_repository,
            "images": [{"digest": d, "tag": t} for d, t in self.images],
            "manifests_pushed": [str(d) for d in self.manifests_pushed],
            "manifests_present": [str(d) for d in self.manifests_present],
            "blobs_uploaded": [str(d) for d in self.blobs_uploaded],
            "blobs_mounted": [str(d) for d in self.blobs_mounted],
            "blobs_present": [str(d) for d in self.blobs_present],
            "bytes_uploaded": self.bytes_uploaded,
            "bytes_mounted": self.bytes_mounted,
            "bytes_present": self.bytes_present,
            "tags_set": self.tags_set,
            "tags_unchanged": self.tags_unchanged,
            "tags_moved": self.tags_moved,
            "recovered_versions": self.recovered_versions,
            "seconds": round(self.seconds, 3),
        }


class Restorer:
    """Pushes a plan into one repository of one registry."""

    def __init__(
        self,
        reader: BucketReader,
        registry: RegistryClient,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        concurrency: int = DEFAULT_CONCURRENCY,
        mount_from: Iterable[str] = (),
        progress: Progress | None = None,
    ) -> None:
        if chunk_size < MIN_CHUNK_SIZE:
            raise InvalidInputError("upload chunks must be at least 5 MiB (ECR's minimum part)")
        if concurrency < 1:
            raise InvalidInputError("concurrency must be at least 1")
        self._reader = reader
        self._registry = registry
        self._chunk_size = chunk_size
        self._concurrency = concurrency
        self._mount_from = list(dict.fromkeys(mount_from))
        self._progress = progress

    def run(self, plan: RestorePlan, report: RestoreReport | None = None) -> RestoreReport:
        started = time.monotonic()
        report = report or RestoreReport(str(plan.target))
        report.images = [(str(r.closure.digest), r.target_tag) for r in plan.roots]
        repository = plan.target.repository
        progress = self._progress or Progress(plan.total_bytes, label="restore")
        progress.total = max(plan.total_bytes, 1)
        # 1. Blobs, concurrently; map() re-raises the first failure before any manifest.
        with ThreadPoolExecutor(self._concurrency, thread_name_prefix="restore") as pool:
            list(pool.map(lambda b: self._blob(repository, b, report, progress), plan.blobs))
        progress.finish()
        # 2. Manifests by digest, children first: untagged until everything is there.
        for manifest in plan.manifests:
            if self._registry.manifest_digest(repository, str(manifest.digest)) is not None:
                report.manifests_present.append(manifest.digest)
                continue
            self._registry.put_manifest(repository, str(manifest.digest), manifest)
            report.manifests_pushed.append(manifest.digest)
        # 3. Tags, last.
        for root in plan.roots:
            if root.target_tag:
                self._tag(repository, root.target_tag, root.closure.root, report)
        report.recovered_versions = {str(d): v for d, v in self._reader.recovered.items()}
        report.seconds = time.monotonic() - started
        return report

    def preview(self, plan: RestorePlan, report: RestoreReport | None = None) -> RestoreReport:
        """A dry run: what the target lacks, asked with HEAD requests only."""
        report = report or RestoreReport(str(plan.target))
        report.dry_run = True
        report.images = [(str(r.closure.digest), r.target_tag) for r in plan.roots]
        repository = plan.target.repository

        def check(blob: Descriptor) -> None:
            if self._registry.blob_size(repository, blob.digest) is not None:
                report.blob("present", blob)
            elif self._mount_source(repository, blob) is not None:
                report.blob("mounted", blob)
            else:
                report.blob("uploaded", blob)

        with ThreadPoolExecutor(self._concurrency, thread_name_prefix="preview") as pool:
            list(pool.map(check, plan.blobs))
        for manifest in plan.manifests:
            if self._registry.manifest_digest(repository, str(manifest.digest)) is not None:
                report.manifests_present.append(manifest.digest)
            else:
                report.manifests_pushed.append(manifest.digest)
        for root in plan.roots:
            if root.target_tag:
                current = self._registry.manifest_digest(repository, root.target_tag)
                if current == root.closure.digest:
                    report.tags_unchanged.append(root.target_tag)
                else:
                    report.tags_set.append(root.target_tag)
                    if current is not None:
                        report.tags_moved[root.target_tag] = str(current)
        report.recovered_versions = {str(d): v for d, v in self._reader.recovered.items()}
        return report

    def _mount_source(self, repository: str, blob: Descriptor) -> str | None:
        for candidate in self._mount_from:
            if candidate != repository and (
                self._registry.blob_size(candidate, blob.digest) is not None
            ):
                return candidate
        return None

    def _blob(
        self, repository: str, blob: Descriptor, report: RestoreReport, progress: Progress
    ) -> None:
        if self._registry.blob_size(repository, blob.digest) is not None:
            report.blob("present", blob)
            progress.advance(blob.size)
            return
        source = self._mount_source(repository, blob)
        if source is not None and self._registry.mount_blob(repository, blob.digest, source):
            report.blob("mounted", blob)
            progress.advance(blob.size)
            return
        recovered = False
        attempt = 0
        while True:
            attempt += 1
            counted: _Counted | None = None
            try:
                with self._reader.open_blob(blob.digest, blob.size) as stream:
                    counted = _Counted(stream, progress)
                    ahead = _ReadAhead(counted, self._chunk_size)
                    try:
                        self._registry.upload_blob(
                            repository, blob.digest, blob.size, ahead, self._chunk_size
                        )
                    finally:
                        ahead.close()
                break
            except DigestMismatchError:
                # The current object version is not what the backup wrote (its last chunk was
                # never sent, so nothing was committed): read the intact version instead.
                if recovered:
                    raise
                self._reader.recover(blob.digest, blob.size)
                recovered = True
                attempt -= 1
            except RegistryAuthError:
                raise
            except RegistryError as e:
                # Chunks are not retried inside the client (the body is a stream): start the
                # blob again in a new upload session, from the bucket.
                if attempt >= _BLOB_ATTEMPTS:
                    raise
                log.warning("upload of %s failed (%s); starting it again", blob.digest, e)
            if counted is not None:
                progress.advance(-counted.count)
        report.blob("uploaded", blob)

    def _tag(self, repository: str, tag: str, manifest: Manifest, report: RestoreReport) -> None:
        current = self._registry.manifest_digest(repository, tag)
        if current == manifest.digest:
            report.tags_unchanged.append(tag)
            return
        self._registry.put_manifest(repository, tag, manifest)
        report.tags_set.append(tag)
        if current is not None:
            report.tags_moved[tag] = str(current)


def restore(
    catalog: Catalog,
    request: RestoreRequest,
    target: Target,
    registry: RegistryClient,
    *,
    dry_run: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    mount_from: Sequence[str] = (),
    progress_stream: TextIO | None = None,
    created_repository: bool = False,
) -> tuple[RestorePlan, RestoreReport]:
    """Plan from the bucket, then push (or, dry, only look at the target)."""
    plan = plan_restore(catalog, request, target, concurrency=concurrency)
    progress = Progress(plan.total_bytes, progress_stream, label="restore")
    restorer = Restorer(
        catalog.reader,
        registry,
        chunk_size=chunk_size,
        concurrency=concurrency,
        mount_from=mount_from,
        progress=progress,
    )
    report = RestoreReport(str(target), created_repository=created_repository)
    if dry_run:
        return plan, restorer.preview(plan, report)
    return plan, restorer.run(plan, report)
