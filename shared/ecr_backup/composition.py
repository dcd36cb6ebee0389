"""Wiring: builds the S3, DynamoDB and registry adapters from settings, once per process."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from datetime import timedelta
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, NoRegionError

from ecr_backup.awserrors import translate
from ecr_backup.backup.deadline import Deadline
from ecr_backup.backup.ports import SourceRegistry
from ecr_backup.backup.queue import MessageQueue
from ecr_backup.backup.replicator import Replicator
from ecr_backup.catalog.catalog import Catalog
from ecr_backup.catalog.surges import Surge, SurgeBook, SurgeRules, SurgeWatch, read_surges
from ecr_backup.errors import ConfigurationError, IndexMissingError, InvalidInputError
from ecr_backup.maintenance.graph import ObjectGraph
from ecr_backup.maintenance.holds import Holds
from ecr_backup.maintenance.locks import Clock, LockKeeper, LockPolicy, system_clock
from ecr_backup.maintenance.prune import Pruner
from ecr_backup.maintenance.retention import RetentionRules
from ecr_backup.progress import ProgressFactory, no_progress
from ecr_backup.registry.auth import Anonymous, ChallengeCredentials, Credentials, TokenCredentials
from ecr_backup.registry.client import RegistryClient
from ecr_backup.registry.credentials import find_login
from ecr_backup.registry.ecr import EcrTokenSource, caller_identity, ecr_registry_url
from ecr_backup.registry.ecr_listing import EcrListing
from ecr_backup.registry.scoped import PerRepository
from ecr_backup.registry.tls import TlsOptions
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
from ecr_backup.storage.deletions import DynamoDeletionLog
from ecr_backup.storage.index import DynamoIndex, Location
from ecr_backup.storage.ledger import Ledger
from ecr_backup.storage.objectlock import S3ObjectLocks
from ecr_backup.storage.runs import RunLog
from ecr_backup.storage.sources import SourceLog

if TYPE_CHECKING:
    import boto3
    import urllib3
    from botocore.config import Config

    from ecr_backup.stack.aws import StackReader
    from ecr_backup.stack.organizations import OrganizationListing


@cache
def client_config() -> Config:
    """Every AWS client's timeouts and retries (the budget is written next to the numbers in
    settings.py): an unreachable endpoint fails in seconds, a throttled call is retried."""
    # Imported here, not at module level: botocore.config pulls in most of botocore
    # (about 150 ms), which the Lambda handler's cold import should not pay before the
    # first invocation builds its clients.
    from botocore.config import Config

    return Config(
        connect_timeout=AWS_CONNECT_TIMEOUT_SECONDS,
        read_timeout=AWS_READ_TIMEOUT_SECONDS,
        retries={"mode": "standard", "total_max_attempts": AWS_MAX_ATTEMPTS},
    )


ASSUMED_ROLE_SESSION = "ecr-backup-restore"


def open_session(
    profile: str | None = None,
    region: str | None = None,
    *,
    role_arn: str | None = None,
    base: boto3.Session | None = None,
) -> boto3.Session:
    """A session from the environment (profile, region, credentials chain), or the named
    profile and region, whose clients all get client_config(). With `role_arn`, that role is
    assumed with the profile's (or `base`'s) credentials and refreshed before it expires.
    A missing region is refused here rather than guessed."""
    import boto3
    import botocore.session

    try:
        core = botocore.session.Session(profile=profile)
        core.set_default_client_config(client_config())
        if base is not None and profile is None:
            # The base's loader, whose cache holds the service models already read: a
            # reconcile assumes one role per source registry, thousands in an
            # organization, and each new session would otherwise read them from disk.
            # (A named profile gets its own: its configuration may point elsewhere.)
            core.register_component("data_loader", base._session.get_component("data_loader"))
        if role_arn is not None:
            source = (
                base
                if base is not None and profile is None
                else boto3.Session(botocore_session=core)
            )
            region = region or source.region_name
            _assume(core, source, role_arn, region)
        session = boto3.Session(botocore_session=core, region_name=region)
        if session.region_name is None:
            raise NoRegionError()
    except BotoCoreError as e:
        raise translate(e, "open the AWS session", ConfigurationError) from e
    return session


def _assume(core: Any, source: boto3.Session, role_arn: str, region: str | None) -> None:
    """Give `core` the role's credentials, refreshed by botocore before they expire."""
    from botocore.credentials import RefreshableCredentials
    from botocore.exceptions import ClientError

    sts = source.client("sts", region_name=region or "us-east-1", config=client_config())

    def refresh() -> dict[str, str]:
        try:
            answer = sts.assume_role(RoleArn=role_arn, RoleSessionName=ASSUMED_ROLE_SESSION)
        except (BotoCoreError, ClientError) as e:
            raise translate(e, f"assume {role_arn}", ConfigurationError) from e
        creds = answer["Credentials"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    # botocore has no public setter for a session's credential provider.
    core._credentials = RefreshableCredentials.create_from_metadata(
        refresh(), refresh, "assume-role"
    )


def parts_in_flight(settings: Settings) -> int:
    """Multipart parts buffered at once. Part buffers are the copy's memory, so they are
    capped in bytes whatever the concurrency and part size: peak RSS stays near
    80 MiB (interpreter, imports) + PART_BUFFER_BUDGET + a part or two in transit."""
    part_size = settings.part_size_mib * MiB
    return max(2, min(2 * settings.concurrency, PART_BUFFER_BUDGET // part_size))


class AwsServices:
    """Adapters built lazily and reused: a warm Lambda keeps its clients and ECR tokens.

    `session` reads and writes the backup (bucket, table) and reads ECR sources;
    `target_session` administers and authenticates to an ECR restore target, which may be
    another account (defaults to `session`). Registry connections use `tls`.
    """

    def __init__(
        self,
        settings: Settings,
        session: boto3.Session | None = None,
        *,
        target_session: boto3.Session | None = None,
        tls: TlsOptions | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.settings = settings
        self._session = session or open_session()
        self._target_session = target_session
        self.tls = tls or TlsOptions()
        self._registries: dict[tuple[str, str], RegistryClient] = {}
        self._scoped: dict[tuple[str, str], PerRepository] = {}
        self._listings: dict[tuple[str, str, str | None], EcrListing] = {}
        self._lock = threading.Lock()
        self._location_claimed = False
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

    def client(self, service: str, config: Config | None = None) -> Any:
        """A boto3 client with client_config() (merged with `config`)."""
        merged = client_config().merge(config) if config else client_config()
        try:
            return self._session.client(service, config=merged)  # type: ignore[call-overload]
        except BotoCoreError as e:
            raise translate(e, f"create the {service} client", ConfigurationError) from e

    @cached_property
    def store(self) -> S3BlobStore:
        from botocore.config import Config

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
        be) created. ECR targets must have their repository before anything is pushed.
        ECR targets are reached with `target_session`; every target with the TLS options."""
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
        if target.is_ecr:
            created = ensure_ecr_repository(
                target, self.target_session, create=create_repository, dry_run=dry_run
            )
        return RegistryClient(target.url, credentials, http=http), created

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.index.table, client=self.client("dynamodb"))

    @cached_property
    def locks(self) -> S3ObjectLocks:
        return S3ObjectLocks(self.settings.bucket, self.settings.prefix, self.client("s3"))

    @cached_property
    def keeper(self) -> LockKeeper:
        policy = LockPolicy(self.settings.lock_days, self.settings.lock_mode)
        return LockKeeper(self.locks, self.ledger, policy, self.clock)

    @property
    def rules(self) -> RetentionRules:
        return RetentionRules(self.settings.keep_deleted_days, self.settings.keep_per_tag)

    def graph(self) -> ObjectGraph:
        """A fresh cache of manifests for one maintenance run."""
        return ObjectGraph(self.store, self.index)

    def pruner(self) -> Pruner:
        grace = timedelta(hours=self.settings.prune_grace_hours)
        return Pruner(
            self.ledger,
            self.locks,
            self.index,
            self.graph(),
            self.rules,
            grace,
            self.surges,
            self.clock,
        )

    def surges(self) -> SurgeBook:
        """Every recorded deletion surge and acknowledgement, read from the bucket now."""
        return read_surges(self.store)

    @cached_property
    def surge_watch(self) -> SurgeWatch:
        rules = SurgeRules(self.settings.surge_images, self.settings.surge_percent)
        deletions = DynamoDeletionLog(self.index.table, client=self.client("dynamodb"))
        return SurgeWatch(
            deletions, self.index, self.store, rules, clock=self.clock, on_surge=self.on_surge
        )

    def on_surge(self, surge: Surge) -> None:
        """Called once for each surge this process records; the handlers publish a metric."""
        self.surges_recorded.append(surge)

    def take_surges_recorded(self) -> list[Surge]:
        """The surges recorded since the last call (a warm Lambda reuses these services)."""
        taken, self.surges_recorded = self.surges_recorded, []
        return taken

    def holds(self) -> Holds:
        return Holds(self.ledger, self.locks, self.graph())

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
        """A registry other than ECR, with the login docker, podman or skopeo saved."""
        login = find_login(url.split("://", 1)[1])
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
        if self.settings.source_auth != "config":
            return self.registry(account, region)
        with self._lock:
            source = self._scoped.get((account, region))
            if source is None:
                url, http = self._source_url(account, region), self.tls.pool_manager()
                source = PerRepository(
                    lambda repository: RegistryClient(
                        url, self._logged_in(url, [repository], http), http=http
                    )
                )
                self._scoped[(account, region)] = source
            return source

    def replicator(
        self,
        account: str,
        region: str,
        progress: ProgressFactory = no_progress,
        deadline: Deadline | None = None,
        *,
        dry_run: bool = False,
    ) -> Replicator:
        """The backup engine; a dry run (which copies nothing) only checks the index's
        location, so that it writes nothing either."""
        if dry_run:
            self.checked_index()
        else:
            self.claim_index()
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
                    from botocore.config import Config  # kept off the handlers' cold import

                    client = self.client("ecr", Config(region_name=region))
                else:
                    session = open_session(region=region, role_arn=role_arn, base=self._session)
                    client = session.client("ecr")
                listing = EcrListing(client, account)
                self._listings[(account, region, role_arn)] = listing
            return listing

    def queue(self, url: str) -> MessageQueue:
        return MessageQueue(self.client("sqs"), url)

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
