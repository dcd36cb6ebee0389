"""How a registry client authenticates: anonymous, basic, bearer (challenge) and ECR tokens."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol
from urllib.parse import urlencode

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from ecr_backup.errors import RegistryAuthError, RegistryError, registry_unreachable
from ecr_backup.registry.tls import TlsOptions


class Credentials(Protocol):
    def authorization(self, *, refresh: bool = False) -> str | None:
        """The Authorization header value, or None for anonymous access."""
        ...


class Anonymous:
    def authorization(self, *, refresh: bool = False) -> str | None:
        return None


class TokenCredentials:
    """Basic auth from a token source (ECR's GetAuthorizationToken), cached until it expires.

    The token source returns the base64 "AWS:<password>" token and its expiry.
    """

    _EARLY = timedelta(minutes=5)
    # A token whose stated expiry is already near (clock skew) is still used for a minute;
    # a 401 refreshes it sooner.
    _MINIMUM = timedelta(minutes=1)

    def __init__(
        self,
        fetch: Callable[[], tuple[str, datetime]],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = datetime.min.replace(tzinfo=UTC)

    def authorization(self, *, refresh: bool = False) -> str | None:
        with self._lock:
            now = self._clock()
            if refresh or self._token is None or now >= self._expires:
                self._token, stated_expiry = self._fetch()
                self._expires = max(stated_expiry - self._EARLY, now + self._MINIMUM)
            return f"Basic {self._token}"


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
    registry client asks for credentials without saying for which request. A login saved as
    an identity token (what `docker login` keeps for Azure Container Registry, for one)
    is an OAuth2 refresh token: it is exchanged at the realm by POST, as the distribution
    token spec's OAuth2 flow says, instead of the GET with the user and password.
    """

    CLIENT_ID = "ecr-backup"  # the OAuth2 flow asks clients to name themselves

    def __init__(
        self,
        base_url: str,
        username: str | None,
        password: str | None,
        repositories: Sequence[str],
        *,
        push: bool = True,
        identity_token: str | None = None,
        http: urllib3.PoolManager | None = None,
    ) -> None:
        self._base_url = base_url
        self._username = username
        self._password = password or ""
        self._identity_token = identity_token
        # The first repository is the one written to (when pushing); the others are read.
        self._scopes = [
            f"repository:{r}:{'pull,push' if push and i == 0 else 'pull'}"
            for i, r in enumerate(repositories)
        ]
        self._http = http or TlsOptions().pool_manager()
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
        probe = self._request("GET", f"{self._base_url}/v2/", {}, redirect=False)
        if probe.status != 401:
            return self._basic() if self._username and not self._identity_token else None
        challenge = probe.headers.get("WWW-Authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if self._identity_token:
                raise RegistryAuthError(
                    f"{self._base_url} wants a user name and password, and the saved login "
                    "is an identity token: pass --to-username with ECR_BACKUP_TARGET_PASSWORD"
                )
            if not self._username:
                raise RegistryAuthError(
                    f"{self._base_url} wants a user name and password: log in with docker, "
                    "podman or skopeo, or pass --to-username with ECR_BACKUP_TARGET_PASSWORD"
                )
            return self._basic()
        if scheme != "bearer":
            raise RegistryAuthError(f"{self._base_url}: unsupported auth challenge {challenge!r}")
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.get("realm")
        if not realm:
            raise RegistryError(f"{self._base_url}: bearer challenge without a realm")
        service = params.get("service")
        if self._identity_token:
            answer = self._exchange_refresh_token(realm, service, self._identity_token)
        else:
            query = [("scope", s) for s in self._scopes]
            if service:
                query.insert(0, ("service", service))
            headers = {"Authorization": self._basic()} if self._username else {}
            answer = self._request("GET", f"{realm}?{urlencode(query)}", headers)
        return self._bearer(realm, answer)

    def _exchange_refresh_token(
        self, realm: str, service: str | None, refresh_token: str
    ) -> urllib3.BaseHTTPResponse:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": self.CLIENT_ID,
            "scope": " ".join(self._scopes),
            **({"service": service} if service else {}),
        }
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return self._request("POST", realm, headers, body=urlencode(form))

    def _bearer(self, realm: str, answer: urllib3.BaseHTTPResponse) -> str:
        """The Authorization header from a token endpoint's answer (GET or OAuth2 POST)."""
        if answer.status != 200:
            # Refused credentials are the person's to fix; anything else is the service's.
            kind = RegistryAuthError if answer.status in (401, 403) else RegistryError
            raise kind(
                f"{realm}: token request refused (HTTP {answer.status})",
                status=answer.status,
                retryable=answer.status >= 500 or answer.status == 429,
            )
        try:
            document = json.loads(answer.data)
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError both
            raise RegistryError(f"{realm}: the token answer is not JSON") from e
        if not isinstance(document, dict):
            raise RegistryError(f"{realm}: the token answer is not a JSON object")
        token = document.get("token") or document.get("access_token")
        if not token:
            raise RegistryError(f"{realm}: no token in the answer")
        expires_in = document.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 60.0
        self._expires = time.monotonic() + max(lifetime - 10, 10)
        return f"Bearer {token}"

    def _request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        *,
        body: str | None = None,
        redirect: bool = True,
    ) -> urllib3.BaseHTTPResponse:
        try:
            return self._http.request(method, url, headers=headers, body=body, redirect=redirect)
        except Urllib3Error as e:
            raise registry_unreachable(f"log in to {self._base_url}", url, e) from e

    def _basic(self) -> str:
        token = base64.b64encode(f"{self._username}:{self._password}".encode()).decode()
        return f"Basic {token}"
