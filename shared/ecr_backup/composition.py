"""Wiring: builds the S3, DynamoDB and registry adapters from settings, once per process."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, NoRegionError

from ecr_backup.awserrors import translate
from ecr_backup.backup.replicator import Replicator
from ecr_backup.errors import ConfigurationError, IndexMissingError, InvalidInputError
from ecr_backup.registry.auth import Anonymous, Credentials, TokenCredentials
from ecr_backup.registry.client import RegistryClient
from ecr_backup.registry.ecr import EcrTokenSource, caller_identity, ecr_registry_url
from ecr_backup.restore.catalog import Catalog
from ecr_backup.restore.target import AuthMode, Target, ensure_ecr_repository, target_credentials
from ecr_backup.settings import (
    AWS_CONNECT_TIMEOUT_SECONDS,
    AWS_MAX_ATTEMPTS,
    AWS_READ_TIMEOUT_SECONDS,
    ENV_PREFIX,
    PART_BUFFER_BUDGET,
    MiB,
    Settings,
)
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex, Location

if TYPE_CHECKING:
    import boto3

# Every AWS client's timeouts and retries (the budget is written next to the numbers in
# settings.py): an unreachable endpoint fails in seconds, a throttled call is retried.
CLIENT_CONFIG = Config(
    connect_timeout=AWS_CONNECT_TIMEOUT_SECONDS,
    read_timeout=AWS_READ_TIMEOUT_SECONDS,
    retries={"mode": "standard", "total_max_attempts": AWS_MAX_ATTEMPTS},
)


def open_session() -> boto3.Session:
    """The session from the environment (profile, region, credentials chain), whose clients
    all get CLIENT_CONFIG. A missing region is refused here rather than guessed."""
    import boto3
    import botocore.session

    try:
        core = botocore.session.Session()
        core.set_default_client_config(CLIENT_CONFIG)
        session = boto3.Session(botocore_session=core)
        if session.region_name is None:
            raise NoRegionError()
    except BotoCoreError as e:
        raise translate(e, "open the AWS session", ConfigurationError) from e
    return session


def parts_in_flight(settings: Settings) -> int:
    """Multipart parts buffered at once. Part buffers are the copy's memory, so they are
    capped in bytes whatever the concurrency and part size: peak RSS stays near
    80 MiB (interpreter, imports) + PART_BUFFER_BUDGET + a part or two in transit."""
    part_size = settings.part_size_mib * MiB
    return max(2, min(2 * settings.concurrency, PART_BUFFER_BUDGET // part_size))


class AwsServices:
    """Adapters built lazily and reused: a warm Lambda keeps its clients and ECR tokens."""

    def __init__(self, settings: Settings, session: boto3.Session | None = None) -> None:
        self.settings = settings
        self._session = session or open_session()
        self._registries: dict[tuple[str, str], RegistryClient] = {}
        self._lock = threading.Lock()
        self._location_claimed = False

    @property
    def session(self) -> boto3.Session:
        """The boto3 session every adapter is built from (restore uses it for ECR targets)."""
        return self._session

    def client(self, service: str, config: Config | None = None) -> Any:
        """A boto3 client with CLIENT_CONFIG (merged with `config`)."""
        merged = CLIENT_CONFIG.merge(config) if config else CLIENT_CONFIG
        try:
            return self._session.client(service, config=merged)  # type: ignore[call-overload]
        except BotoCoreError as e:
            raise translate(e, f"create the {service} client", ConfigurationError) from e

    @cached_property
    def store(self) -> S3BlobStore:
        in_flight = parts_in_flight(self.settings)
        return S3BlobStore(
            self.settings.bucket,
            self.settings.prefix,
            client=self.client("s3", Config(max_pool_connections=in_flight * 2)),
            part_size=self.settings.part_size_mib * MiB,
            parts_in_flight=in_flight,
        )

    @property
    def has_index(self) -> bool:
        return self.settings.table is not None

    @cached_property
    def index(self) -> DynamoIndex:
        if self.settings.table is None:
            raise InvalidInputError(f"name the index table: --table or {ENV_PREFIX}TABLE")
        return DynamoIndex(self.settings.table, client=self.client("dynamodb"))

    @property
    def location(self) -> Location:
        return Location(self.settings.bucket, self.settings.prefix)

    def checked_index(self) -> DynamoIndex:
        """The index, once it is known to describe this bucket and prefix (for reading)."""
        # A missing table is the catalog's to handle: it answers from the bucket, and says so.
        with contextlib.suppress(IndexMissingError):
            self.index.check_location(self.location)
        return self.index

    def claim_index(self) -> None:
        """Record this bucket and prefix in the index, or refuse when it indexes another;
        once per process, before anything is written."""
        with self._lock:
            if not self._location_claimed:
                self.index.claim_location(self.location)
                self._location_claimed = True

    def catalog(self, *, from_bucket: bool = False) -> Catalog:
        """Lookups from the index, or from the bucket's push records alone."""
        use_index = self.has_index and not from_bucket
        return Catalog(self.store, self.checked_index() if use_index else None)

    def target_registry(
        self,
        target: Target,
        *,
        auth: AuthMode = "auto",
        username: str | None = None,
        password: str | None = None,
        mount_from: Sequence[str] = (),
        create_repository: bool = False,
        dry_run: bool = False,
    ) -> tuple[RegistryClient, bool]:
        """A client for a restore target, and whether its ECR repository was (or, dry, would
        be) created. ECR targets must have their repository before anything is pushed."""
        credentials = target_credentials(
            target,
            auth=auth,
            session=self._session,
            username=username,
            password=password,
            mount_from=mount_from,
        )
        created = False
        if target.is_ecr:
            created = ensure_ecr_repository(
                target, self._session, create=create_repository, dry_run=dry_run
            )
        return RegistryClient(target.url, credentials), created

    def registry(self, account: str, region: str) -> RegistryClient:
        """The source registry of an event's account and region (or the configured override)."""
        with self._lock:
            client = self._registries.get((account, region))
            if client is None:
                credentials: Credentials = (
                    Anonymous()
                    if self.settings.source_auth == "none"
                    else TokenCredentials(EcrTokenSource(self._session, account, region))
                )
                url = self.settings.source_registry or ecr_registry_url(account, region)
                client = RegistryClient(url, credentials)
                self._registries[(account, region)] = client
            return client

    def replicator(self, account: str, region: str) -> Replicator:
        self.claim_index()
        return Replicator(
            self.registry(account, region),
            self.store,
            self.index,
            concurrency=self.settings.concurrency,
        )

    def caller_source(self) -> tuple[str, str]:
        """This session's account and region: the default source for a manual replicate."""
        return caller_identity(self._session)
