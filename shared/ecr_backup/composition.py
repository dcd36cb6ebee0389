"""Wiring: builds the S3, DynamoDB and registry adapters from settings, once per process."""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING

from ecr_backup.backup.replicator import Replicator
from ecr_backup.registry.auth import Anonymous, Credentials, TokenCredentials
from ecr_backup.registry.client import RegistryClient
from ecr_backup.registry.ecr import EcrTokenSource, caller_identity, ecr_registry_url
from ecr_backup.settings import PART_BUFFER_BUDGET, MiB, Settings
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex

if TYPE_CHECKING:
    import boto3


def parts_in_flight(settings: Settings) -> int:
    """Multipart parts buffered at once. Part buffers are the copy's memory, so they are
    capped in bytes whatever the concurrency and part size: peak RSS stays near
    80 MiB (interpreter, imports) + PART_BUFFER_BUDGET + a part or two in transit."""
    part_size = settings.part_size_mib * MiB
    return max(2, min(2 * settings.concurrency, PART_BUFFER_BUDGET // part_size))


class AwsServices:
    """Adapters built lazily and reused: a warm Lambda keeps its clients and ECR tokens."""

    def __init__(self, settings: Settings, session: boto3.Session | None = None) -> None:
        if session is None:
            import boto3

            session = boto3.Session()
        self.settings = settings
        self._session = session
        self._registries: dict[tuple[str, str], RegistryClient] = {}
        self._lock = threading.Lock()

    @property
    def session(self) -> boto3.Session:
        """The boto3 session every adapter is built from (restore uses it for ECR targets)."""
        return self._session

    @cached_property
    def store(self) -> S3BlobStore:
        from botocore.config import Config

        in_flight = parts_in_flight(self.settings)
        config = Config(max_pool_connections=in_flight * 2, retries={"mode": "standard"})
        return S3BlobStore(
            self.settings.bucket,
            self.settings.prefix,
            client=self._session.client("s3", config=config),
            part_size=self.settings.part_size_mib * MiB,
            parts_in_flight=in_flight,
        )

    @cached_property
    def index(self) -> DynamoIndex:
        return DynamoIndex(self.settings.table, client=self._session.client("dynamodb"))

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
        return Replicator(
            self.registry(account, region),
            self.store,
            self.index,
            concurrency=self.settings.concurrency,
        )

    def caller_source(self) -> tuple[str, str]:
        """This session's account and region: the default source for a manual replicate."""
        return caller_identity(self._session)
