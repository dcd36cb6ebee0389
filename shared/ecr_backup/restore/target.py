"""Where a restore goes: the target registry, its credentials and, for ECR, its repository."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import urllib3
from botocore.exceptions import BotoCoreError, ClientError

from ecr_backup.awserrors import error_code, translate
from ecr_backup.errors import (
    InvalidInputError,
    RegistryError,
    RepositoryNotFoundError,
)
from ecr_backup.oci.reference import validate_oci_repository, validate_repository, validate_tag
from ecr_backup.registry.auth import (
    Anonymous,
    BasicCredentials,
    ChallengeCredentials,
    Credentials,
    TokenCredentials,
)
from ecr_backup.registry.client import RegistryClient
from ecr_backup.registry.credentials import RegistryLogin, find_login
from ecr_backup.registry.ecr import EcrTokenSource, caller_identity

if TYPE_CHECKING:
    import boto3

log = logging.getLogger(__name__)


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
    ecr = _ECR_HOST.fullmatch(host)
    # ECR's own rules only where ECR is the target; any OCI name elsewhere.
    (validate_repository if ecr else validate_oci_repository)(repository)
    if not scheme:
        scheme = "http" if host.startswith(_LOOPBACK) else "https"
    url = f"{scheme}://{host}"
    if endpoint:
        if not re.fullmatch(r"https?://[^/\s]+/?", endpoint):
            raise InvalidInputError(f"invalid endpoint {endpoint!r}: use http(s)://HOST[:PORT]")
        url = endpoint.rstrip("/")
    return Target(
        url=url,
        host=host,
        repository=repository,
        tag=tag,
        ecr_account=ecr["account"] if ecr else None,
        ecr_region=ecr["region"] if ecr else None,
    )


def target_credentials(
    target: Target,
    *,
    auth: AuthMode = "auto",
    session: boto3.Session | None = None,
    username: str | None = None,
    password: str | None = None,
    mount_from: Sequence[str] = (),
    http: urllib3.PoolManager | None = None,
    login_finder: Callable[[str], RegistryLogin | None] = find_login,
) -> Credentials:
    """Explicit credentials win; ECR hosts get an ECR token; other registries the login
    found in the ecosystem's auth files (registry/credentials.py), answering whatever
    their challenge asks."""
    if auth == "none":
        return Anonymous()
    explicit = bool(username)
    if auth == "ecr" or (auth == "auto" and target.is_ecr and not explicit):
        if session is None:
            raise InvalidInputError("ECR auth needs an AWS session")
        account, region = ecr_identity(target, session)
        return TokenCredentials(EcrTokenSource(session, account, region))
    identity_token = None
    if not explicit:
        login = login_finder(f"{target.host}/{target.repository}")
        if login is not None:
            username, password = login.username, login.password
            identity_token = login.identity_token
    if auth == "basic":
        if not username or identity_token:
            raise InvalidInputError(
                f"--to-auth basic needs --to-username or a login with a user name and "
                f"password for {target.host} in the registry auth files"
            )
        return BasicCredentials(username, password or "")
    return ChallengeCredentials(
        target.url,
        username,
        password,
        [target.repository, *mount_from],
        identity_token=identity_token,
        http=http,
    )


def speaks_ecr(target: Target, auth: AuthMode) -> bool:
    """Whether the target is administered through ECR's API: an ECR host (whatever
    --to-endpoint the requests go to), or any host reached with --to-auth ecr."""
    return target.is_ecr or auth == "ecr"


def preflight(registry: RegistryClient, target: Target, *, created: bool) -> None:
    """What a restore meets first, checked for a dry run without leaving anything behind:
    the target answers and accepts the credentials for pushing into the repository,
    which exists. A repository that --create-repository would create cannot be pushed
    to yet: then only the registry and the credentials are checked."""
    if created:
        registry.ping()
    else:
        registry.check_push(target.repository)


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
    try:
        ecr = session.client("ecr", region_name=region)
        ecr.describe_repositories(registryId=account, repositoryNames=[target.repository])
        return False
    except (ClientError, BotoCoreError) as e:
        if error_code(e) != "RepositoryNotFoundException":
            what = f"look up {target.repository} in {target.host}"
            raise translate(e, what, RegistryError) from e
    if not create:
        raise RepositoryNotFoundError(
            f"repository {target.repository} does not exist in {target.host}: pass "
            "--create-repository to create it"
        )
    if dry_run:
        return True
    try:
        ecr.create_repository(registryId=account, repositoryName=target.repository)
    except (ClientError, BotoCoreError) as e:
        if error_code(e) != "RepositoryAlreadyExistsException":
            what = f"create {target.repository} in {target.host}"
            raise translate(e, what, RegistryError) from e
        return False
    return True


def delete_ecr_repository(target: Target, session: boto3.Session) -> None:
    """Delete an ECR repository and its images (a drill's scratch repository)."""
    account, region = ecr_identity(target, session)
    try:
        ecr = session.client("ecr", region_name=region)
        ecr.delete_repository(registryId=account, repositoryName=target.repository, force=True)
    except (ClientError, BotoCoreError) as e:
        if error_code(e) != "RepositoryNotFoundException":
            what = f"delete {target.repository} in {target.host}"
            raise translate(e, what, RegistryError) from e
