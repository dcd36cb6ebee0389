"""Throwaway local servers: moto (AWS APIs) and CNCF distribution (OCI registry).

Both bind 127.0.0.1 on a free port and are always stopped when their context
manager exits, so a test run never leaves processes behind.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Protocol, Self

import bcrypt
import boto3
import botocore.config
import urllib3

from devkit.ecr_control import EcrControlPlane
from devkit.net import free_port, self_signed_certificate

if TYPE_CHECKING:
    from devkit.token_auth import TokenServer

REGION = "us-east-1"
DUMMY_ACCESS_KEY = "testing"
DUMMY_SECRET_KEY = "testing"
REGISTRY_BINARY = "/usr/bin/docker-registry"

# Short timeouts: everything is local, a hang means a bug.
_HTTP = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2.0, read=30.0), retries=False)


def local_client(service: str, endpoint: str, region: str, config: Any = None) -> Any:
    """A boto3 client for `service` at a local endpoint, with the dummy credentials."""
    return boto3.client(
        service,  # type: ignore[call-overload]  # boto3-stubs only types literal names
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=DUMMY_ACCESS_KEY,
        aws_secret_access_key=DUMMY_SECRET_KEY,
        config=config,
    )


def _stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def _tail(path: Path, max_chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-max_chars:]
    except OSError:
        return "<no log>"


class _ManagedProcess:
    """Shared start/wait/stop plumbing for a server process logging to a file."""

    name = "server"

    def __init__(self, startup_timeout: float) -> None:
        self.startup_timeout = startup_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        if self._workdir is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._workdir / f"{self.name}.log"

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self._log_file = self.log_path.open("wb")
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self._workdir,
        )

    def _is_ready(self) -> bool:
        raise NotImplementedError

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode} during startup:\n"
                    f"{_tail(self.log_path)}"
                )
            try:
                if self._is_ready():
                    return
            except urllib3.exceptions.HTTPError:
                pass  # not listening yet
            time.sleep(0.1)
        raise TimeoutError(
            f"{self.name} not ready after {self.startup_timeout}s:\n{_tail(self.log_path)}"
        )

    def stop(self) -> None:
        _stop_process(self.process)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _cleanup_workdir(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self._cleanup_workdir()


class MotoServer(_ManagedProcess):
    """`python -m moto.server` on 127.0.0.1:<free port>, patched by devkit/moto_server.py
    (its disk use bounded; `put_generated` objects).

    Note: `reset()` wipes *all* moto state, including buckets other users of this
    server (e.g. a LocalRegistry's storage) rely on. Give the registry its own
    MotoServer if tests reset moto.
    """

    name = "moto"
    region = REGION

    def __init__(self, *, startup_timeout: float = 30.0) -> None:
        super().__init__(startup_timeout)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self._workdir = Path(tempfile.mkdtemp(prefix="devkit-moto-"))
        self.port = free_port()
        try:
            # moto.server with the devkit's patches (devkit/moto_server.py: disk bound,
            # generated objects); run as a file, it needs nothing but moto.
            launcher = str(Path(__file__).with_name("moto_server.py"))
            self._spawn([sys.executable, launcher, "-H", "127.0.0.1", "-p", str(self.port)])
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _is_ready(self) -> bool:
        # Any HTTP answer means werkzeug is serving.
        _HTTP.request("GET", f"{self.endpoint}/moto-api/data.json")
        return True

    def client(self, service: str) -> Any:
        """A boto3 client for `service` talking to this server with dummy credentials."""
        return local_client(service, self.endpoint, self.region)

    def put_generated(self, bucket: str, key: str, size: int, seed: int) -> None:
        """Store `size` generated bytes (devkit.moto_server.generated_chunks) under `key`
        without sending them (their digest: devkit.moto_server.generated_digest)."""
        from devkit.moto_server import GENERATE_METADATA

        # No checksum of the empty body is stored (it would be served with the generated
        # bytes); Content-MD5 is what an Object Lock bucket then requires.
        config = botocore.config.Config(request_checksum_calculation="when_required")
        s3 = local_client("s3", self.endpoint, self.region, config)
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=b"",
            ContentMD5=base64.b64encode(hashlib.md5(b"").digest()).decode(),
            Metadata={GENERATE_METADATA: f"{size}:{seed}"},
        )

    def reset(self) -> None:
        """Drop all moto state (every service, every account)."""
        response = _HTTP.request("POST", f"{self.endpoint}/moto-api/reset")
        if response.status != 200:
            raise RuntimeError(f"moto reset failed: {response.status} {response.data!r}")


def ecr_password_from_moto(moto: MotoServer, registry_id: str | None = None) -> str:
    """The registry password moto's ECR GetAuthorizationToken hands out.

    moto builds it as f"{registry_id}-auth-token" (registry id defaults to the
    caller's account, 123456789012), so it is stable across calls.
    """
    ecr = moto.client("ecr")
    kwargs: dict[str, Any] = {"registryIds": [registry_id]} if registry_id else {}
    token: str = ecr.get_authorization_token(**kwargs)["authorizationData"][0]["authorizationToken"]
    username, _, password = base64.b64decode(token).decode().partition(":")
    if username != "AWS":
        raise ValueError(f"unexpected ECR token user {username!r}")
    return password


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    uri: str  # as logged, including any query string
    status: int

    @property
    def path(self) -> str:
        return self.uri.partition("?")[0]


# logrus text format: key=value or key="quoted value" (Go-quoted, JSON-compatible
# for what the registry logs).
_LOGFMT_FIELD = re.compile(r'([\w.]+)=("(?:[^"\\]|\\.)*"|\S*)')


def _parse_logfmt(line: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for key, raw in _LOGFMT_FIELD.findall(line):
        fields[key] = json.loads(raw) if raw.startswith('"') else raw
    return fields


class Registry(Protocol):
    """What tests, the demo and the benchmarks use of a registry: a LocalRegistry, or the
    ECR-faithful proxy in front of one (devkit.ecr_proxy.EcrRegistry)."""

    @property
    def host(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def username(self) -> str: ...
    @property
    def password(self) -> str | None: ...
    @property
    def auth_headers(self) -> dict[str, str]: ...
    @property
    def storage(self) -> MotoServer: ...
    @property
    def storage_bucket(self) -> str: ...
    def ensure_repository(self, name: str) -> None: ...
    def blob_data_key(self, digest: str) -> str: ...
    def overwrite_blob_data(self, digest: str, data: bytes) -> None: ...
    def logged_requests(self) -> list[LoggedRequest]: ...
    def count_requests(self, method: str, path_regex: str, *, status: int | None = None) -> int: ...
    def wait_for_request_count(
        self,
        method: str,
        path_regex: str,
        expected: int,
        *,
        status: int | None = None,
        timeout: float = 5.0,
    ) -> int: ...


class RequestCounting:
    """Counting of a registry's logged requests, for whatever keeps the log."""

    def logged_requests(self) -> list[LoggedRequest]:
        raise NotImplementedError

    def count_requests(self, method: str, path_regex: str, *, status: int | None = None) -> int:
        """Completed requests with `method` whose path (query stripped) matches
        `path_regex` (re.search: anchor it yourself), optionally with `status`."""
        pattern = re.compile(path_regex)
        return sum(
            1
            for r in self.logged_requests()
            if r.method == method
            and pattern.search(r.path)
            and (status is None or r.status == status)
        )

    def wait_for_request_count(
        self,
        method: str,
        path_regex: str,
        expected: int,
        *,
        status: int | None = None,
        timeout: float = 5.0,
    ) -> int:
        """Poll until at least `expected` matching requests are logged (the log line
        may land just after the client saw the response); returns the last count."""
        deadline = time.monotonic() + timeout
        while True:
            count = self.count_requests(method, path_regex, status=status)
            if count >= expected or time.monotonic() >= deadline:
                return count
            time.sleep(0.05)


class LocalRegistry(RequestCounting, _ManagedProcess):
    """Debian's docker-registry (distribution 2.8) with S3 storage on a MotoServer.

    Blob GETs answer 307 to a presigned moto URL (like ECR redirecting to S3)
    unless `redirect=False`. With `password`, the registry requires HTTP basic
    auth for `username`; with `token_server` (devkit/token_auth.py), bearer tokens from it
    instead, as Docker Hub, Harbor or ACR hand out. With `tls`, it serves HTTPS with a
    self-signed certificate for 127.0.0.1 (`ca_path` is the certificate to trust). With
    `ecr`, every image the devkit pushes is also registered with that ECR control plane
    (moto), so DescribeImages lists what this registry serves.
    """

    name = "registry"

    def __init__(
        self,
        storage: MotoServer,
        *,
        password: str | None = None,
        username: str = "AWS",
        redirect: bool = True,
        tls: bool = False,
        binary: str = REGISTRY_BINARY,
        startup_timeout: float = 30.0,
        ecr: EcrControlPlane | None = None,
        token_server: TokenServer | None = None,
    ) -> None:
        super().__init__(startup_timeout)
        self.storage = storage
        self.ecr = ecr
        self.token_server = token_server
        # With a token server, its user logs in (skopeo fetches tokens with these).
        self.username = token_server.username if token_server else username
        self.password = token_server.password if token_server else password
        self.redirect = redirect
        self.tls = tls
        self.binary = binary
        self.storage_bucket = f"registry-{secrets.token_hex(4)}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def ca_path(self) -> Path:
        assert self._workdir is not None and self.tls
        return self._workdir / "registry.crt"

    @property
    def config_path(self) -> Path:
        assert self._workdir is not None
        return self._workdir / "config.yml"

    def __enter__(self) -> Self:
        self._workdir = Path(tempfile.mkdtemp(prefix="devkit-registry-"))
        self.port = free_port()
        try:
            self.storage.client("s3").create_bucket(Bucket=self.storage_bucket)
            self.config_path.write_text(json.dumps(self.config(), indent=2))
            # AWS_CA_BUNDLE makes the Go AWS SDK fail at startup when it can't use
            # it; REGISTRY_* variables would silently override our config.
            env = {
                k: v
                for k, v in os.environ.items()
                if k != "AWS_CA_BUNDLE" and not k.startswith("REGISTRY_")
            }
            self._spawn([self.binary, "serve", str(self.config_path)], env=env)
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def config(self) -> dict[str, Any]:
        """The registry configuration (JSON is valid YAML, so no YAML dependency)."""
        assert self._workdir is not None
        config: dict[str, Any] = {
            "version": "0.1",
            # accesslog off: the "response completed" lines carry everything and
            # the combined-format duplicates would only confuse request counting.
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": True}},
            "http": {"addr": self.host, "secret": secrets.token_hex(16), **self._tls_config()},
            "storage": {
                "s3": {
                    "accesskey": DUMMY_ACCESS_KEY,
                    "secretkey": DUMMY_SECRET_KEY,
                    "region": self.storage.region,
                    # distribution 2.8 switches to path-style addressing when
                    # regionendpoint is set (it has no forcepathstyle option).
                    "regionendpoint": self.storage.endpoint,
                    "bucket": self.storage_bucket,
                    "secure": False,
                    "v4auth": True,
                },
                "redirect": {"disable": not self.redirect},
                "delete": {"enabled": True},
                # No "cache" section: blob descriptors are always read from S3, so
                # what a test writes into the bucket is what the registry serves.
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
        }
        if self.token_server is not None:
            config["auth"] = self.token_server.registry_auth_config()
        elif self.password is not None:
            htpasswd = self._workdir / "htpasswd"
            hashed = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=4))
            htpasswd.write_text(f"{self.username}:{hashed.decode()}\n")
            config["auth"] = {"htpasswd": {"realm": "devkit", "path": str(htpasswd)}}
        return config

    def _tls_config(self) -> dict[str, Any]:
        if not self.tls:
            return {}
        key_path = self.ca_path.with_suffix(".key")
        certificate, key = self_signed_certificate("127.0.0.1")
        self.ca_path.write_bytes(certificate)
        key_path.write_bytes(key)
        return {"tls": {"certificate": str(self.ca_path), "key": str(key_path)}}

    def _is_ready(self) -> bool:
        http = urllib3.PoolManager(ca_certs=str(self.ca_path)) if self.tls else _HTTP
        response = http.request("GET", f"{self.url}/v2/", timeout=2.0, retries=False)
        return response.status in (200, 401)

    def ensure_repository(self, name: str) -> None:
        """Nothing to do: distribution creates repositories on first push."""

    @property
    def auth_headers(self) -> dict[str, str]:
        """Basic-auth headers for this registry ({} when auth is off)."""
        if self.token_server is not None:
            raise NotImplementedError("a token-auth registry takes bearer tokens only")
        if self.password is None:
            return {}
        return urllib3.make_headers(basic_auth=f"{self.username}:{self.password}")

    def blob_data_key(self, digest: str) -> str:
        """S3 key of a blob's bytes; `digest` is "sha256:<hex>" or just "<hex>"."""
        hex_ = digest.removeprefix("sha256:")
        return f"docker/registry/v2/blobs/sha256/{hex_[:2]}/{hex_}/data"

    def overwrite_blob_data(self, digest: str, data: bytes) -> None:
        """Replace a blob's stored bytes behind the registry's back (corruption tests)."""
        self.storage.client("s3").put_object(
            Bucket=self.storage_bucket, Key=self.blob_data_key(digest), Body=data
        )

    def logged_requests(self) -> list[LoggedRequest]:
        requests: list[LoggedRequest] = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            # Served requests log 'response completed' (or '... with error');
            # auth failures only log 'error authorizing context' before the 401.
            if 'msg="response completed' in line:
                fields = _parse_logfmt(line)
                status = int(fields["http.response.status"])
            elif 'msg="error authorizing context' in line:
                fields = _parse_logfmt(line)
                status = 401
            else:
                continue
            requests.append(
                LoggedRequest(
                    method=fields["http.request.method"],
                    uri=fields["http.request.uri"],
                    status=status,
                )
            )
        return requests
