"""An ECR-faithful registry: a small proxy in front of Debian's docker-registry.

distribution follows the OCI spec more closely than ECR does, so code proven against it
alone can still fail on ECR. The proxy adds ECR's known departures, every one on by default
and switchable in `EcrQuirks`:

* a chunk PATCH answered 201 Created, not 202 (openai/tart#273, kitops-ml/kitops#821,
  fixed for ECR in jdx/mise#11376);
* a second PATCH in one upload session dropped: body discarded, still 201, Range not
  advancing (aws/containers-roadmap#2831 as first reported; its author later traced it to
  a stale Range header only, and crashappsec/chalk#682 works around that; either way a
  spec client cannot send several chunks, so the stricter reading is reproduced);
* intermediate parts under 5 MiB refused (LayerPartTooSmallException, "All layer parts
  except the last part should be at least 5MB", dotnet/sdk-container-builds#424);
* cross-repository mount off unless ECR's BLOB_MOUNTING setting is on: the mount POST
  then opens an upload session (202);
* a push to a repository that does not exist refused (404 NAME_UNKNOWN). Repositories
  exist when created through ECR's API (moto's CreateRepository, whether through this
  proxy or not) or named in `repositories`;
* manifests over 4 MiB refused;
* 429 TOOMANYREQUESTS with Retry-After above a request rate (token bucket), or on every
  Nth request (`throttle_every`, for deterministic tests);
* ThrottlingException (HTTP 400, ECR's JSON error) on ECR's API: GetAuthorizationToken
  above 20 calls a second with bursts of 200, the throttle AWS documents for it ("HTTP
  429: Too Many Requests or ThrottleException" in the ECR user guide's troubleshooting
  page), or every Nth API call (`api_throttle_every`, for deterministic tests);
* tokens that expire: GetAuthorizationToken (ECR's API, answered here; every other ECR
  API call goes on to moto) hands out a fresh password valid for `token_lifetime` seconds.
  A stale one is refused with 403 DENIED "Your authorization token has expired", as ECR
  does (awslabs/amazon-ecr-credential-helper#7, deis/builder#426); 401 is the other choice.

Besides, as ECR's API and registry agree:

* every manifest pushed through the proxy (skopeo, podman, the devkit's helpers) is
  registered with moto's ECR (PutImage with the exact bytes, digest and tag), so
  DescribeImages, `backfill` and reconcile see it; a manifest DELETE removes the image;
* the OCI referrers API (`GET /v2/<name>/referrers/<digest>`, distribution-spec 1.1),
  which ECR has answered since June 2024 ("Amazon ECR supports OCI Image and
  Distribution specification version 1.1", AWS What's New, 2024-06-27) and Debian's
  distribution 2.8 lacks: an image index of the manifests whose `subject` is the digest,
  from what ECR's API holds, filtered by `artifactType` (with `OCI-Filters-Applied`); a
  manifest PUT with a subject is answered with `OCI-Subject`, as the spec asks of a
  registry with the API.

Point the AWS SDK's ECR client at `url` (AWS_ENDPOINT_URL_ECR) so tokens come from here.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import http.client
import http.server
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode, urlsplit

from botocore.exceptions import ClientError

from devkit.ecr_control import EcrControlPlane
from devkit.net import ServedInThread, decode_basic
from devkit.servers import LocalRegistry, LoggedRequest, MotoServer, RequestCounting, local_client

MiB = 1024 * 1024
ACCOUNT = "123456789012"
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "authorization", "te"}
)
_REPOSITORY = re.compile(r"^/v2/(?P<name>.+?)/(?:blobs|manifests|tags|referrers)/")
_SESSION = re.compile(r"^/v2/.+/blobs/uploads/(?P<uuid>[^/?]+)")
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/?]+)$")
_REFERRERS = re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>sha256:[0-9a-f]{64})$")
_OCI_INDEX = "application/vnd.oci.image.index.v1+json"

_EXPIRED = "Your authorization token has expired. Reauthenticate and try again."


@dataclass
class EcrQuirks:
    """What the proxy does differently from the spec; each switch on (ECR's way) by default."""

    patch_answers_201: bool = True
    drop_later_patches: bool = True
    min_part_size: int = 5 * MiB  # 0: any size
    blob_mounting: bool = False
    known_repositories_only: bool = True
    max_manifest_size: int = 4 * MiB
    requests_per_second: float = 200.0  # 0: no rate limit
    throttle_every: int = 0  # N > 0: every Nth registry request gets 429
    retry_after_s: int = 1
    # ECR's API: GetAuthorizationToken's documented throttle, and a deterministic switch.
    token_api_per_second: float = 20.0  # 0: no rate limit
    token_api_burst: int = 200
    api_throttle_every: int = 0  # N > 0: every Nth ECR API call gets ThrottlingException
    # ECR's tokens last 12 hours; two minutes lets a test run see them expire.
    token_lifetime_s: float = 120.0
    expired_token_status: int = 403
    # ECR answers the OCI referrers API since June 2024; off, the proxy passes the request
    # to the registry, as Debian's distribution 2.x answers it: 404.
    referrers_api: bool = True


@dataclass
class _Session:
    patches: int = 0
    short_part: bool = False
    location: str = ""
    range_end: int = -1


@dataclass
class _TokenBucket:
    """`rate` requests a second on average, `burst` at once; callers hold the state's lock."""

    level: float = -1.0  # -1: full at the first request
    refilled: float = field(default_factory=time.monotonic)

    def take(self, rate: float, burst: float) -> bool:
        now = time.monotonic()
        if self.level < 0:
            self.level = burst
        self.level = min(burst, self.level + (now - self.refilled) * rate)
        self.refilled = now
        if self.level < 1:
            return False
        self.level -= 1
        return True


@dataclass
class _State:
    """What the proxy remembers, shared by its request threads under one lock."""

    quirks: EcrQuirks
    repositories: set[str]
    tokens: dict[str, float] = field(default_factory=dict)  # password -> expiry (monotonic)
    sessions: dict[str, _Session] = field(default_factory=dict)
    log: list[LoggedRequest] = field(default_factory=list)
    requests: int = 0
    api_requests: int = 0
    api_throttled: int = 0
    registry_bucket: _TokenBucket = field(default_factory=_TokenBucket)
    token_api_bucket: _TokenBucket = field(default_factory=_TokenBucket)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue_token(self) -> str:
        password = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[password] = time.monotonic() + self.quirks.token_lifetime_s
        return password

    def token_state(self, password: str) -> str:
        with self.lock:
            expiry = self.tokens.get(password)
        if expiry is None:
            return "unknown"
        return "valid" if time.monotonic() < expiry else "expired"

    def throttled(self) -> bool:
        quirks = self.quirks
        with self.lock:
            self.requests += 1
            if quirks.throttle_every and self.requests % quirks.throttle_every == 0:
                return True
            if not quirks.requests_per_second:
                return False
            # A second's worth of burst, as the proxy always allowed.
            rate = quirks.requests_per_second
            return not self.registry_bucket.take(rate, rate)

    def api_throttled_now(self, action: str) -> bool:
        """Whether this call to ECR's API is throttled (counted when it is)."""
        quirks = self.quirks
        with self.lock:
            self.api_requests += 1
            throttled = bool(
                quirks.api_throttle_every and self.api_requests % quirks.api_throttle_every == 0
            )
            if not throttled and action == "GetAuthorizationToken" and quirks.token_api_per_second:
                throttled = not self.token_api_bucket.take(
                    quirks.token_api_per_second, quirks.token_api_burst
                )
            self.api_throttled += throttled
            return throttled


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: EcrRegistry  # set on the subclass each proxy makes

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the proxy keeps its own request log

    def handle(self) -> None:
        # A client that goes away mid-request (an interrupted upload) is not the proxy's error.
        with contextlib.suppress(ConnectionError):
            super().handle()

    def _dispatch(self) -> None:
        if not self.path.startswith("/v2"):
            self._ecr_api()
            return
        proxy = self.proxy
        refusal = proxy.refusal(self)
        if refusal is None:
            status = self._registry_request()
        else:
            for _ in self._body():
                pass  # a refused body is read and dropped, so the client sees our answer
            status = self._refuse(*refusal)
        with proxy.state.lock:
            proxy.state.log.append(LoggedRequest(self.command, self.path, status))

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    # -- answering ---------------------------------------------------------------------

    def _answer(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers:  # a HEAD keeps the registry's
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _refuse(self, status: int, code: str, message: str, extra: dict[str, str]) -> int:
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self._answer(status, {"Content-Type": "application/json", **extra}, body)
        return status

    def _body(self) -> Iterator[bytes]:
        """The request body as it arrives: Content-Length or chunked framing."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            # Go sends 32 KiB chunks: gathered into MiB pieces, so the proxy costs a
            # chunked upload (skopeo's) no more than a sized one.
            pending: list[bytes] = []
            gathered = 0
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                pending.append(self.rfile.read(size))
                gathered += size
                self.rfile.readline()
                if gathered >= MiB:
                    yield b"".join(pending)
                    pending, gathered = [], 0
            while self.rfile.readline().strip():
                pass  # trailers
            if pending:
                yield b"".join(pending)
            return
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            data = self.rfile.read(min(left, MiB))
            if not data:
                return
            left -= len(data)
            yield data

    def _has_body(self) -> bool:
        chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
        return chunked or int(self.headers.get("Content-Length") or 0) > 0

    # -- the registry API ----------------------------------------------------------------

    def _registry_request(self) -> int:
        proxy, quirks = self.proxy, self.proxy.state.quirks
        path, body = self.path, self._body()
        session = self._session()
        if self.command == "POST" and "mount=" in path and not quirks.blob_mounting:
            parts = urlsplit(path)
            query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("mount", "from")]
            path = parts.path + (f"?{urlencode(query)}" if query else "")
        if self.command == "PATCH" and session is not None:
            if session.patches and quirks.drop_later_patches:
                for _ in body:
                    pass
                status = 201 if quirks.patch_answers_201 else 202
                headers = {"Location": session.location, "Range": f"0-{session.range_end}"}
                self._answer(status, headers)
                return status
            body = self._measured(body, session)
        referrers = _REFERRERS.match(urlsplit(path).path) if self.command == "GET" else None
        if referrers is not None and quirks.referrers_api:
            return self._referrers(referrers["name"], referrers["digest"])
        manifest: bytes | None = None
        if self.command == "PUT" and _MANIFEST.match(path):
            manifest = b"".join(self._body_upto(quirks.max_manifest_size + 1))
            if len(manifest) > quirks.max_manifest_size:
                message = f"manifest is over the {quirks.max_manifest_size} bytes limit"
                return self._refuse(400, "MANIFEST_INVALID", message, {})
            body = iter([manifest])
        status, headers, answer = proxy.forward(self, path, body)
        target = _MANIFEST.match(path)
        if target is not None and manifest is not None and status == 201:
            try:
                subject = proxy.registered(target["name"], target["reference"], manifest, self)
            except ClientError as e:  # loudly: a push ECR's API does not list misleads tests
                return self._refuse(500, "UNKNOWN", f"registering with ECR's API: {e}", {})
            if subject:
                headers["OCI-Subject"] = subject
        elif target is not None and self.command == "DELETE" and status == 202:
            proxy.deregistered(target["name"], target["reference"])
        if self.command == "PATCH" and session is not None and status == 202:
            session.patches += 1
            session.location = headers.get("Location", session.location)
            session.range_end = int(headers.get("Range", "0--1").rpartition("-")[2])
            status = 201 if quirks.patch_answers_201 else 202
        self._answer(status, headers, answer)
        return status

    def _referrers(self, repository: str, digest: str) -> int:
        wanted = dict(parse_qsl(urlsplit(self.path).query)).get("artifactType")
        found = self.proxy.referrers(repository, digest)
        headers = {"Content-Type": _OCI_INDEX}
        if wanted is not None:
            found = [d for d in found if d.get("artifactType") == wanted]
            headers["OCI-Filters-Applied"] = "artifactType"
        index = {"schemaVersion": 2, "mediaType": _OCI_INDEX, "manifests": found}
        self._answer(200, headers, json.dumps(index).encode())
        return 200

    def _session(self) -> _Session | None:
        match = _SESSION.match(self.path)
        if match is None:
            return None
        with self.proxy.state.lock:
            return self.proxy.state.sessions.setdefault(match["uuid"], _Session())

    def _measured(self, body: Iterator[bytes], session: _Session) -> Iterator[bytes]:
        size = 0
        for data in body:
            size += len(data)
            yield data
        session.short_part = size < self.proxy.state.quirks.min_part_size

    def _body_upto(self, limit: int) -> Iterator[bytes]:
        taken = 0
        for data in self._body():
            if taken < limit:
                yield data[: limit - taken]
            taken += len(data)

    # -- ECR's API ---------------------------------------------------------------------------

    def _ecr_api(self) -> None:
        body = b"".join(self._body())
        action = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
        if self.proxy.state.api_throttled_now(action):
            # ECR's JSON protocol: status 400, the error's type in __type.
            error = {"__type": "ThrottlingException", "message": "Rate exceeded"}
            self._answer(
                400, {"Content-Type": "application/x-amz-json-1.1"}, json.dumps(error).encode()
            )
            return
        if action == "GetAuthorizationToken":
            self._answer(200, {"Content-Type": "application/x-amz-json-1.1"}, self._token(body))
            return
        status, headers, answer = self.proxy.forward(self, self.path, iter([body]), aws=True)
        self._answer(status, headers, answer)

    def _token(self, request: bytes) -> bytes:
        proxy = self.proxy
        ids = json.loads(request or b"{}").get("registryIds") or [ACCOUNT]
        expires = time.time() + proxy.state.quirks.token_lifetime_s
        data = []
        for registry_id in ids:
            password = proxy.state.issue_token()
            token = base64.b64encode(f"AWS:{password}".encode()).decode()
            endpoint = f"https://{registry_id}.dkr.ecr.{proxy.aws.region}.amazonaws.com"
            data.append(
                {"authorizationToken": token, "expiresAt": expires, "proxyEndpoint": endpoint}
            )
        return json.dumps({"authorizationData": data}).encode()


class EcrRegistry(RequestCounting):
    """Debian's registry (S3 on `storage`, 307 redirects) behind the ECR-faithful proxy.

    Offers what tests use of a LocalRegistry: host, url, username, password (a fresh
    token each time it is read), auth_headers, the request log, the storage helpers.
    """

    username = "AWS"

    def __init__(
        self,
        storage: MotoServer,
        aws: MotoServer,
        *,
        quirks: EcrQuirks | None = None,
        repositories: set[str] | None = None,
        tokens: EcrRegistry | None = None,
    ) -> None:
        """`aws` is the moto holding the ECR API (repositories); `tokens` shares another
        proxy's token authority, like two registries of one account."""
        self.upstream = LocalRegistry(storage)
        self.aws = aws
        self.state = _State(quirks or EcrQuirks(), set(repositories or ()))
        if tokens is not None:
            self.state.tokens = tokens.state.tokens
        self._served: ServedInThread | None = None
        self._ecr: Any = None
        self._control: EcrControlPlane | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.upstream.__enter__()
        try:
            self._ecr = self.aws.client("ecr")
            self._control = EcrControlPlane(self.aws)
            handler = type("Handler", (_Handler,), {"proxy": self})
            self._served = ServedInThread(handler, "ecr-proxy")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._served is not None:
            self._served.stop()
            self._served = None
        self.upstream.__exit__(None, None, None)

    # -- what tests see ----------------------------------------------------------------------

    @property
    def quirks(self) -> EcrQuirks:
        return self.state.quirks

    @contextlib.contextmanager
    def quirks_changed(self, **changes: Any) -> Iterator[EcrQuirks]:
        """Switch quirks for the duration of a block (a session-wide proxy stays strict)."""
        before = self.state.quirks
        with self.state.lock:
            # "Every Nth request" counts from here, so a test knows which one is refused.
            self.state.requests = self.state.api_requests = 0
        self.state.quirks = dataclasses.replace(before, **changes)
        try:
            yield self.state.quirks
        finally:
            self.state.quirks = before

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def port(self) -> int:
        assert self._served is not None, "the proxy is not running"
        return self._served.port

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def password(self) -> str:
        """A freshly issued token, valid for quirks.token_lifetime_s."""
        return self.state.issue_token()

    @property
    def auth_headers(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return {"authorization": f"Basic {token}"}

    @property
    def storage(self) -> MotoServer:
        return self.upstream.storage

    @property
    def storage_bucket(self) -> str:
        return self.upstream.storage_bucket

    def blob_data_key(self, digest: str) -> str:
        return self.upstream.blob_data_key(digest)

    def overwrite_blob_data(self, digest: str, data: bytes) -> None:
        self.upstream.overwrite_blob_data(digest, data)

    def ensure_repository(self, name: str) -> None:
        """Create the repository through ECR's API (moto), as an owner would before pushing."""
        with contextlib.suppress(self._ecr.exceptions.RepositoryAlreadyExistsException):
            self._ecr.create_repository(repositoryName=name)
        with self.state.lock:
            self.state.repositories.add(name)

    def logged_requests(self) -> list[LoggedRequest]:
        with self.state.lock:
            return list(self.state.log)

    def api_client(self, config: Any = None) -> Any:
        """A boto3 ECR client whose calls go through this proxy (tokens, throttling)."""
        return local_client("ecr", self.url, self.aws.region, config)

    @property
    def api_throttled(self) -> int:
        """How many ECR API calls were answered ThrottlingException so far."""
        with self.state.lock:
            return self.state.api_throttled

    # -- the proxy's decisions ---------------------------------------------------------------

    def refusal(self, request: _Handler) -> tuple[int, str, str, dict[str, str]] | None:
        """Why a registry request is refused before reaching the registry, or None."""
        quirks = self.state.quirks
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        user, password = (decode_basic(credentials) if scheme == "Basic" else None) or ("", "")
        state = self.state.token_state(password) if user == self.username else "unknown"
        if state == "unknown":
            challenge = {"WWW-Authenticate": 'Basic realm="ecr-proxy"'}
            return 401, "UNAUTHORIZED", "authentication required", challenge
        if state == "expired":
            return quirks.expired_token_status, "DENIED", _EXPIRED, {}
        if self.state.throttled():
            retry = {"Retry-After": str(quirks.retry_after_s)}
            return 429, "TOOMANYREQUESTS", "Rate exceeded", retry
        match = _REPOSITORY.match(request.path)
        if match and quirks.known_repositories_only and not self._known(match["name"]):
            message = (
                f"The repository with name '{match['name']}' does not exist in the registry "
                f"with id '{ACCOUNT}'"
            )
            return 404, "NAME_UNKNOWN", message, {}
        session = request._session() if request.command in ("PATCH", "PUT") else None
        if session is not None and session.short_part and request._has_body():
            message = "All layer parts except the last part should be at least 5MB"
            return 400, "BLOB_UPLOAD_INVALID", message, {}
        return None

    def _known(self, name: str) -> bool:
        with self.state.lock:
            if name in self.state.repositories:
                return True
        try:
            self._ecr.describe_repositories(repositoryNames=[name])
        except self._ecr.exceptions.RepositoryNotFoundException:
            return False
        with self.state.lock:
            self.state.repositories.add(name)
        return True

    # -- ECR's API kept in agreement with the registry -----------------------------------------

    def registered(
        self, repository: str, reference: str, manifest: bytes, request: _Handler
    ) -> str:
        """Register a pushed manifest with moto's ECR, as ECR records a push; the digest of
        its subject, if it has one."""
        document = _json_object(manifest)
        media_type = request.headers.get("Content-Type") or str(document.get("mediaType", ""))
        tag = None if reference.startswith("sha256:") else reference
        self._control_plane().register(repository, manifest, media_type, tag)
        subject = document.get("subject")
        return str(subject.get("digest", "")) if isinstance(subject, dict) else ""

    def _control_plane(self) -> EcrControlPlane:
        assert self._control is not None, "the proxy is not running"
        return self._control

    def deregistered(self, repository: str, reference: str) -> None:
        """A manifest deleted through the registry API leaves ECR's listing too."""
        if reference.startswith("sha256:"):
            with contextlib.suppress(ClientError):
                self._control_plane().delete(repository, reference)

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]]:
        """Descriptors of the manifests in `repository` whose subject is `digest`, from
        ECR's API (moto): what the referrers API lists."""
        found: list[dict[str, Any]] = []
        for image in self._control_plane().images(repository):
            manifest = image["imageManifest"].encode()
            document = _json_object(manifest)
            subject = document.get("subject")
            if not isinstance(subject, dict) or subject.get("digest") != digest:
                continue
            config = document.get("config")
            descriptor: dict[str, Any] = {
                "mediaType": document.get("mediaType") or image.get("imageManifestMediaType"),
                "digest": image["imageId"]["imageDigest"],
                "size": len(manifest),
            }
            artifact_type = document.get("artifactType") or (
                config.get("mediaType") if isinstance(config, dict) else None
            )
            if artifact_type:
                descriptor["artifactType"] = artifact_type
            if document.get("annotations"):
                descriptor["annotations"] = document["annotations"]
            found.append(descriptor)
        return found

    def forward(
        self, request: _Handler, path: str, body: Iterator[bytes], *, aws: bool = False
    ) -> tuple[int, dict[str, str], bytes]:
        """Send the request on (to the registry, or to moto for ECR's API); its answer."""
        port = self.aws.port if aws else self.upstream.port
        # A list, not a dict: clients repeat headers (Go sends one Accept per media type).
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP]
        if aws and "Authorization" in request.headers:
            headers.append(("Authorization", request.headers["Authorization"]))
        chunked = request.headers.get("Transfer-Encoding", "").lower() == "chunked"
        length = request.headers.get("Content-Length")
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        elif length is not None or request.command in ("POST", "PUT", "PATCH"):
            headers.append(("Content-Length", length or "0"))
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        try:
            connection.putrequest(request.command, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                connection.putheader(name, value)
            connection.endheaders()
            try:
                for data in body:
                    connection.send(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
                if chunked:
                    connection.send(b"0\r\n\r\n")
            except BrokenPipeError:
                for _ in body:
                    pass  # the registry answered early (an error): read its answer
            response = connection.getresponse()
            answer = response.read()
            kept = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
            if request.command == "HEAD":
                kept["Content-Length"] = response.getheader("Content-Length") or "0"
            return response.status, kept, answer
        finally:
            connection.close()


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}
