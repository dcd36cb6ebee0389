"""Wiring: builds the S3, DynamoDB and registry adapters from settings, once per process.

Every adapter is built on first use and kept for the life of the AwsServices (a CLI
command, a warm Lambda). The index handed out has been checked against this bucket,
prefix and region, and records them before its first write (storage.index), so no caller
can read or write a misplaced index. Tests pass fakes as `Adapters`, as cosmicpython's
`bootstrap` takes them, rather than overwriting attributes of a built AwsServices.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError

from ecr_backup.awserrors import translate
from ecr_backup.awssession import client_config, open_session
from ecr_backup.backup.deadline import Deadline
from ecr_backup.backup.ports import SourceRegistry
from ecr_backup.backup.queue import MessageQueue
from ecr_backup.backup.replicator import Replicator
from ecr_backup.catalog.catalog import Catalog
from ecr_backup.catalog.surges import Surge, SurgeRules, SurgeWatch
from ecr_backup.errors import (
    ConfigurationError,
    EcrBackupError,
    ExitCode,
    IndexMissingError,
    InvalidInputError,
)
from ecr_backup.maintenance.drill import DrillReport, drill
from ecr_backup.maintenance.locks import Clock, system_clock
from ecr_backup.maintenance.wiring import Maintained, MaintenanceServices
from ecr_backup.model import RestoreCheck
from ecr_backup.oci.digest import Digest
from ecr_backup.progress import ProgressFactory, no_progress
from ecr_backup.registry.auth import Anonymous, ChallengeCredentials, Credentials, TokenCredentials
from ecr_backup.registry.client import RegistryClient
from ecr_backup.registry.credentials import find_login
from ecr_backup.registry.ecr import EcrTokenSource, caller_identity, ecr_registry_url
from ecr_backup.registry.ecr_listing import EcrListing
from ecr_backup.registry.scoped import PerRepository
from ecr_backup.registry.tls import TlsOptions
from ecr_backup.restore.drill import restore_check
from ecr_backup.restore.target import (
    AuthMode,
    Target,
    delete_ecr_repository,
    ensure_ecr_repository,
    preflight,
    speaks_ecr,
    target_credentials,
)
from ecr_backup.settings import (
    AWS_PATIENT_READ_TIMEOUT_SECONDS,
    ENV_PREFIX,
    PART_BUFFER_BUDGET,
    MiB,
    Settings,
)
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.bucket import bucket_region
from ecr_backup.storage.deletions import DynamoDeletionLog
from ecr_backup.storage.index import DynamoIndex, Location
from ecr_backup.storage.ledger import Ledger
from ecr_backup.storage.objectlock import S3ObjectLocks
from ecr_backup.storage.reader import BucketReader
from ecr_backup.storage.runs import RunLog
from ecr_backup.storage.sources import SourceLog

if TYPE_CHECKING:
    import boto3
    import urllib3
    from botocore.config import Config

    from ecr_backup.stack.aws import StackReader
    from ecr_backup.stack.organizations import OrganizationListing


def parts_in_flight(settings: Settings) -> int:
    """Multipart parts buffered at once. Part buffers are the copy's memory, so they are
    capped in bytes whatever the concurrency and part size: peak RSS stays near
    80 MiB (interpreter, imports) + PART_BUFFER_BUDGET + a part or two in transit."""
    part_size = settings.part_size_mib * MiB
    return max(2, min(2 * settings.concurrency, PART_BUFFER_BUDGET // part_size))


@dataclass(frozen=True)
class Adapters:
    """Adapters to use instead of the ones built from settings (tests pass fakes here).

    `sources`: (account, region) -> what a backup reads from; `locks`: the bucket's object
    locks."""

    sources: Callable[[str, str], SourceRegistry] | None = None
    locks: S3ObjectLocks | None = None


class AwsServices(MaintenanceServices):
    """Adapters built lazily and reused: a warm Lambda keeps its clients and ECR tokens.

    `session` reads and writes the backup (bucket, table) and reads ECR sources;
    `target_session` administers and authenticates to an ECR restore target, which may be
    another account (defaults to `session`). Registry connections use `tls`. S3 is called
    in the bucket's own region, whatever the session's.
    """

    def __init__(
        self,
        settings: Settings,
        session: boto3.Session | None = None,
        *,
        target_session: boto3.Session | None = None,
        tls: TlsOptions | None = None,
        clock: Clock = system_clock,
        adapters: Adapters | None = None,
    ) -> None:
        self.settings = settings
        self._session = session or open_session()
        self._target_session = target_session
        self.tls = tls or TlsOptions()
        self.adapters = adapters or Adapters()
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._registries: dict[tuple[str, str], RegistryClient] = {}
        self._sources: dict[tuple[str, str], SourceRegistry] = {}
        self._listings: dict[tuple[str, str, str | None], EcrListing] = {}
        self._lock = threading.RLock()
        self.clock = clock  # injectable: tests move time to exercise locks and retention
        self.surges_recorded: list[Surge] = []  # by this process, for the handlers' metric

    @property
    def session(self) -> boto3.Session:
        """The boto3 session of the backup side (bucket, table, ECR sources)."""
        return self._session

    @property
    def target_session(self) -> boto3.Session:
        """The boto3 session an ECR restore target is reached with."""
        return self._target_session or self._session

    def client(
        self, service: str, config: Config | None = None, *, region: str | None = None
    ) -> Any:
        """A boto3 client with client_config() (merged with `config`), in `region` (else
        the session's); kept, one per service and region, unless `config` is given."""
        from botocore.config import Config  # kept off the handlers' cold import

        region = region or self._session.region_name
        merged = client_config().merge(Config(region_name=region))
        if config is not None:
            return self._new_client(service, merged.merge(config))
        with self._lock:
            client = self._clients.get((service, region))
            if client is None:
                client = self._clients[(service, region)] = self._new_client(service, merged)
            return client

    def _new_client(self, service: str, config: Config) -> Any:
        try:
            return self._session.client(service, config=config)  # type: ignore[call-overload]
        except BotoCoreError as e:
            raise translate(e, f"create the {service} client", ConfigurationError) from e

    @cached_property
    def bucket_region(self) -> str | None:
        """The bucket's own region (HeadBucket), None when it does not exist (yet)."""
        return bucket_region(self.client("s3"), self.settings.bucket)

    @cached_property
    def region(self) -> str:
        """Where the backup lives: its bucket's region, else (no bucket yet) the session's.
        The index's location record names it (a read the index's check makes anyway, the
        index living in its bucket's region); HeadBucket asks S3 when no record says."""
        if self.settings.table is not None:
            try:
                recorded = self._table.location()
            except EcrBackupError as e:
                if e.exit_code == ExitCode.REMOTE:
                    raise  # DynamoDB unreachable or silent: S3 would only make it wait twice
                recorded = None  # no table here, or not readable: S3 answers instead
            if recorded is not None and recorded.bucket == self.settings.bucket and recorded.region:
                return recorded.region
        return self.bucket_region or str(self._session.region_name)

    @cached_property
    def store(self) -> S3BlobStore:
        from botocore.config import Config

        in_flight = parts_in_flight(self.settings)
        return S3BlobStore(
            self.settings.bucket,
            self.settings.prefix,
            # SigV4 also for presigned URLs (serve): SSE-KMS objects refuse other signatures.
            # No SigV4 hash of bodies over plain HTTP either (over HTTPS botocore skips it):
            # each body's signed checksum header (SHA-256, CRC32) already binds it.
            client=self.client(
                "s3",
                Config(
                    max_pool_connections=in_flight * 2,
                    signature_version="s3v4",
                    s3={"payload_signing_enabled": False},
                ),
                region=self.region,
            ),
            patient_client=self.client(
                "s3", Config(read_timeout=AWS_PATIENT_READ_TIMEOUT_SECONDS), region=self.region
            ),
            part_size=self.settings.part_size_mib * MiB,
            parts_in_flight=in_flight,
        )

    @property
    def has_index(self) -> bool:
        return self.settings.table is not None

    @cached_property
    def location(self) -> Location:
        """This backup's bucket, prefix and region (the bucket's: its index belongs there)."""
        return Location(self.settings.bucket, self.settings.prefix, self.region)

    @cached_property
    def _table(self) -> DynamoIndex:
        """The index table, before it knows this backup's location (the region needs it)."""
        assert self.settings.table is not None  # callers check
        return DynamoIndex(
            self.settings.table,
            client=self.client("dynamodb"),
            account=lambda: self._identity[0],
        )

    @cached_property
    def index(self) -> DynamoIndex:
        """The index, refused here if it indexes another bucket or prefix or sits in
        another region than its backup; its first write records the location."""
        if self.settings.table is None:
            raise InvalidInputError(f"name the index table: --table or {ENV_PREFIX}TABLE")
        index = self._table
        index.here = self.location
        # A table missing where it belongs is the catalog's to handle: it answers from the
        # bucket, and says so; writes fail with the fix.
        with contextlib.suppress(IndexMissingError):
            index.check_location()
        return index

    @cached_property
    def _bucket_catalog(self) -> Catalog:
        return Catalog(self.store, None)

    @cached_property
    def _index_catalog(self) -> Catalog:
        return Catalog(self.store, self.index) if self.has_index else self._bucket_catalog

    def catalog(self, *, from_bucket: bool = False) -> Catalog:
        """Lookups from the index, or from the bucket's push records alone."""
        return self._bucket_catalog if from_bucket else self._index_catalog

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
        be) created. Targets that speak ECR's API must have their repository before
        anything is pushed, and are administered with `target_session`; every target is
        reached with the TLS options. A dry run checks first what the real run meets first
        (restore.target.preflight)."""
        http = self.tls.pool_manager()
        credentials = target_credentials(
            target,
            auth=auth,
            session=self.target_session,
            username=username,
            password=password,
            mount_from=mount_from,
            http=http,
        )
        created = False
        if speaks_ecr(target, auth):
            created = ensure_ecr_repository(
                target, self.target_session, create=create_repository, dry_run=dry_run
            )
        registry = RegistryClient(target.url, credentials, http=http)
        if dry_run:
            preflight(registry, target, created=created)
        return registry, created

    @property
    def ledger(self) -> Ledger:
        """Built once, by the index (one table, one client)."""
        return self.index.ledger

    @cached_property
    def locks(self) -> S3ObjectLocks:
        if self.adapters.locks is not None:
            return self.adapters.locks
        s3 = self.client("s3", region=self.region)
        return S3ObjectLocks(self.settings.bucket, self.settings.prefix, s3)

    def maintained(self) -> Maintained:
        return Maintained(self.store, self.index, self.ledger, self.locks)

    @cached_property
    def surge_watch(self) -> SurgeWatch:
        rules = SurgeRules(self.settings.surge_images, self.settings.surge_percent)
        deletions = DynamoDeletionLog(self.index.table, client=self.client("dynamodb"))
        return SurgeWatch(
            deletions, self.index, self.store, rules, clock=self.clock, on_surge=self.on_surge
        )

    def run_drill(self) -> DrillReport:
        """A restore drill with this process's settings (the command and the function run
        the same one; each records it for `status` and `stats`)."""
        settings = self.settings
        return drill(
            self.ledger,
            self.index,
            self.graph(),
            BucketReader(self.store),
            self.rules,
            surges=self.surges(),
            now=self.clock(),
            sample=settings.drill_sample,
            scrub_days=settings.scrub_days,
            concurrency=settings.concurrency,
            restore=self.restore_check if settings.drill_restore else None,
        )

    def restore_check(self, repository: str, digest: Digest) -> RestoreCheck:
        """DrillRestore: the image restored into a scratch ECR repository and read back."""
        host = self.settings.drill_registry or ecr_registry_url(*self.caller_source())
        return restore_check(
            self.catalog(),
            repository,
            digest,
            registry_host=host,
            open_target=lambda t: self.target_registry(t, auth="ecr", create_repository=True)[0],
            delete_target=lambda t: delete_ecr_repository(t, self.target_session),
        )

    def on_surge(self, surge: Surge) -> None:
        """Called once for each surge this process records; the handlers publish a metric."""
        self.surges_recorded.append(surge)

    def take_surges_recorded(self) -> list[Surge]:
        """The surges recorded since the last call (a warm Lambda reuses these services)."""
        taken, self.surges_recorded = self.surges_recorded, []
        return taken

    def registry(self, account: str, region: str) -> RegistryClient:
        """The source registry of an event's account and region (or the configured override)."""
        with self._lock:
            client = self._registries.get((account, region))
            if client is None:
                url = self._source_url(account, region)
                http = self.tls.pool_manager()
                credentials: Credentials = (
                    Anonymous()
                    if self.settings.source_auth == "none"
                    else TokenCredentials(EcrTokenSource(self._session, account, region))
                )
                if self.settings.source_auth == "config":
                    credentials = self._logged_in(url, (), http)
                client = RegistryClient(url, credentials, http=http)
                self._registries[(account, region)] = client
            return client

    def _source_url(self, account: str, region: str) -> str:
        return self.settings.source_registry or ecr_registry_url(account, region)

    def _logged_in(
        self, url: str, repositories: Sequence[str], http: urllib3.PoolManager
    ) -> Credentials:
        """A registry other than ECR, with the login docker, podman or skopeo saved (for
        one repository, the login kept for it or its namespace wins over the host's)."""
        host = url.split("://", 1)[1]
        login = find_login(f"{host}/{repositories[0]}" if len(repositories) == 1 else host)
        return ChallengeCredentials(
            url,
            login.username if login else None,
            login.password if login else None,
            repositories,
            push=False,
            identity_token=login.identity_token if login else None,
            http=http,
        )

    def source(self, account: str, region: str) -> SourceRegistry:
        """What a backup reads from: with registry logins, one client (and bearer token)
        per repository, since token registries scope each token to repositories."""
        if self.adapters.sources is not None:
            return self.adapters.sources(account, region)
        if self.settings.source_auth != "config":
            return self.registry(account, region)
        with self._lock:
            source = self._sources.get((account, region))
            if source is None:
                url, http = self._source_url(account, region), self.tls.pool_manager()
                source = PerRepository(
                    lambda repository: RegistryClient(
                        url, self._logged_in(url, [repository], http), http=http
                    )
                )
                self._sources[(account, region)] = source
            return source

    def replicator(
        self,
        account: str,
        region: str,
        progress: ProgressFactory = no_progress,
        deadline: Deadline | None = None,
    ) -> Replicator:
        """The backup engine (a dry run writes nothing, so it records no location either)."""
        return Replicator(
            self.source(account, region),
            self.store,
            self.index,
            concurrency=self.settings.concurrency,
            progress=progress,
            clock=self.clock,
            locks=self.keeper,
            deadline=deadline,
            deletions=self.surge_watch,
        )

    @cached_property
    def _identity(self) -> tuple[str, str]:
        return caller_identity(self._session)

    def caller_source(self) -> tuple[str, str]:
        """This session's account and region (asked of STS once): the default source."""
        return self._identity

    def listing(self, account: str, region: str, role_arn: str | None = None) -> EcrListing:
        """ECR's control plane of a source registry: this session's, or through `role_arn`
        (the source account's read-only role) in the separate backup account mode."""
        with self._lock:
            listing = self._listings.get((account, region, role_arn))
            if listing is None:
                if role_arn is None:
                    client = self.client("ecr", region=region)
                else:
                    session = open_session(region=region, role_arn=role_arn, base=self._session)
                    client = session.client("ecr")
                listing = EcrListing(client, account)
                self._listings[(account, region, role_arn)] = listing
            return listing

    def queue(self, url: str) -> MessageQueue:
        return MessageQueue(self.client("sqs"), url)

    def secret_text(self, secret_id: str) -> str:
        """A Secrets Manager secret's string (serve's users: htpasswd lines)."""
        from botocore.exceptions import ClientError

        try:
            answer = self.client("secretsmanager").get_secret_value(SecretId=secret_id)
        except (BotoCoreError, ClientError) as e:
            raise translate(e, f"read secret {secret_id}", ConfigurationError) from e
        return str(answer.get("SecretString") or "")

    @cached_property
    def run_log(self) -> RunLog:
        """The scheduled jobs' last runs, in the index table (status reads them)."""
        return RunLog(self.index.table, client=self.client("dynamodb"))

    @cached_property
    def source_log(self) -> SourceLog:
        """The source registries whose events arrived (reconcile and coverage read them)."""
        return SourceLog(self.index.table, client=self.client("dynamodb"))

    def organization(self, role_arn: str) -> OrganizationListing:
        """The Organization's accounts, read through `role_arn` (management or delegated
        administrator account)."""
        from ecr_backup.stack.organizations import OrganizationListing

        session = open_session(role_arn=role_arn, base=self._session)
        return OrganizationListing(session.client("organizations", config=client_config()))


def stack_reader(session: boto3.Session) -> StackReader:
    """The deployed stack (CloudFormation, CloudWatch, SQS) in the session's region."""
    from ecr_backup.stack.aws import StackReader  # only `status` reads a stack

    def client(service: str) -> Any:
        try:
            return session.client(service, config=client_config())  # type: ignore[call-overload]
        except BotoCoreError as e:
            raise translate(e, f"create the {service} client", ConfigurationError) from e

    return StackReader(
        client("cloudformation"), client("cloudwatch"), client("sqs"), str(session.region_name)
    )


@lru_cache(maxsize=1)
def services_for(settings: Settings) -> AwsServices:
    """The Lambda handlers' services: one per process (warm invocations keep connections,
    ECR tokens and the checked index), keyed by settings so that a changed configuration
    never reuses stale clients."""
    return AwsServices(settings)
