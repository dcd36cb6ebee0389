"""The registry client against a scripted HTTP server on loopback."""

from __future__ import annotations

import base64
import http.server
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest
import urllib3

from devkit.net import SilentListener, free_port
from ecr_backup.errors import (
    BlobNotFoundError,
    DigestMismatchError,
    ExitCode,
    ManifestNotFoundError,
    RegistryAuthError,
    RegistryError,
    RegistryThrottledError,
    RepositoryNotFoundError,
)
from ecr_backup.oci import mediatypes
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import parse_manifest
from ecr_backup.registry.auth import Credentials, TokenCredentials
from ecr_backup.registry.client import RegistryClient
from ecr_backup.retry import RetryPolicy
from ecr_backup.settings import REGISTRY_SILENT_ATTEMPTS

LAYER = b"layer-bytes" * 1000
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": str(Digest.of(b"{}")), "size": 2},
        "layers": [
            {"mediaType": mediatypes.OCI_LAYER_GZIP, "digest": str(Digest.of(LAYER)), "size": 10}
        ],
    }
).encode()


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body_size: int = 0


@dataclass
class Script:
    """The server's answers: (method, path, headers) -> (status, headers, body)."""

    handler: Callable[[str, str, dict[str, str]], tuple[int, dict[str, str], bytes]]
    seen: list[Seen] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script(lambda m, p, h: (404, {}, b""))

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received = len(self.rfile.read(length)) if length else 0
            headers = {k: v for k, v in self.headers.items()}
            script.seen.append(Seen(self.command, self.path, headers, received))
            status, extra, body = script.handler(self.command, self.path, headers)
            if status == 0:  # drop the connection without answering
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.send_response(status)
            for k, v in extra.items():
                if k != "X-Truncate-At":
                    self.send_header(k, v)
            # "X-Truncate-At" makes the server promise the whole body but drop mid-way.
            cut = extra.pop("X-Truncate-At", None)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if cut is not None:
                self.wfile.write(body[: int(cut)])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _answer

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def client(url: str, credentials: Credentials | None = None) -> RegistryClient:
    no_wait = RetryPolicy(attempts=4, base_delay=0)
    return RegistryClient(url, credentials, retry=no_wait, sleep=lambda _: None)


def test_manifest_by_tag_sends_accept_for_all_four_types(server: tuple[str, Script]) -> None:
    url, script = server
    script.handler = lambda m, p, h: (200, {"Content-Type": mediatypes.OCI_MANIFEST}, MANIFEST)
    manifest = client(url).get_manifest("team/app", "v1")
    assert manifest.raw == MANIFEST
    accept = script.seen[0].headers["Accept"]
    for media_type in sorted(mediatypes.MANIFESTS):
        assert media_type in accept
    assert mediatypes.DOCKER_SCHEMA1 not in accept


def test_manifest_by_digest_must_hash_to_it(server: tuple[str, Script]) -> None:
    url, script = server
    script.handler = lambda m, p, h: (200, {}, MANIFEST)
    wanted = Digest.of(MANIFEST + b" ")
    with pytest.raises(DigestMismatchError, match=wanted.hex):
        client(url).get_manifest("team/app", str(wanted))
    assert client(url).get_manifest("team/app", str(Digest.of(MANIFEST))).raw == MANIFEST


def test_not_found_errors_name_the_manifest_or_repository(server: tuple[str, Script]) -> None:
    url, script = server
    unknown_repo = json.dumps({"errors": [{"code": "NAME_UNKNOWN"}]}).encode()
    script.handler = lambda m, p, h: (404, {}, unknown_repo if "gone" in p else b"")
    with pytest.raises(RepositoryNotFoundError, match="gone"):
        client(url).get_manifest("gone", "v1")
    with pytest.raises(ManifestNotFoundError, match="team/app:v9"):
        client(url).get_manifest("team/app", "v9")


def test_blob_redirect_is_followed_without_our_credentials(server: tuple[str, Script]) -> None:
    url, script = server

    def answer(
        method: str, path: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if path.startswith("/v2/"):
            return 307, {"Location": f"{url}/storage/blob?X-Amz-Signature=secret"}, b""
        return 200, {}, LAYER

    script.handler = answer
    credentials = TokenCredentials(lambda: ("dG9rZW4=", datetime.now(UTC) + timedelta(hours=12)))
    with client(url, credentials=credentials).open_blob("team/app", Digest.of(LAYER)) as stream:
        assert stream.read() == LAYER
    registry_request, storage_request = script.seen
    assert registry_request.headers["Authorization"] == "Basic dG9rZW4="
    assert storage_request.path.startswith("/storage/blob")
    assert "Authorization" not in storage_request.headers


def test_token_is_cached_and_refreshed_once_on_401(server: tuple[str, Script]) -> None:
    url, script = server
    fetched: list[str] = []

    def fetch() -> tuple[str, datetime]:
        fetched.append("x")
        token = base64.b64encode(f"AWS:password-{len(fetched)}".encode()).decode()
        return token, datetime.now(UTC) + timedelta(hours=12)

    valid = base64.b64encode(b"AWS:password-2").decode()
    script.handler = lambda m, p, h: (
        (200, {}, MANIFEST) if h.get("Authorization") == f"Basic {valid}" else (401, {}, b"")
    )
    registry = client(url, credentials=TokenCredentials(fetch))
    registry.get_manifest("team/app", "v1")  # token 1 refused, token 2 accepted
    registry.get_manifest("team/app", "v1")  # token 2 reused
    assert len(fetched) == 2
    script.handler = lambda m, p, h: (401, {}, b"")
    with pytest.raises(RegistryAuthError, match="refused our credentials"):
        registry.get_manifest("team/app", "v1")


def test_retries_throttling_server_errors_and_dropped_connections(
    server: tuple[str, Script],
) -> None:
    url, script = server
    answers: Iterator[tuple[int, dict[str, str], bytes]] = iter(
        [(429, {}, b""), (503, {}, b""), (0, {}, b""), (200, {}, MANIFEST)]
    )
    script.handler = lambda m, p, h: next(answers)
    assert client(url).get_manifest("team/app", "v1").raw == MANIFEST
    assert len(script.seen) == 4


def test_gives_up_after_the_retry_budget(server: tuple[str, Script]) -> None:
    url, script = server
    script.handler = lambda m, p, h: (503, {}, b"")
    with pytest.raises(Exception, match="HTTP 503"):
        client(url).get_manifest("team/app", "v1")
    assert len(script.seen) == 4


def test_missing_blob_is_a_clear_error(server: tuple[str, Script]) -> None:
    url, _ = server
    with (
        pytest.raises(BlobNotFoundError, match=Digest.of(LAYER).hex),
        client(url).open_blob("team/app", Digest.of(LAYER)),
    ):
        pass


def test_chunked_upload_only_when_asked_sends_ranges_and_the_digest(
    server: tuple[str, Script],
) -> None:
    url, script = server

    def answer(
        method: str, path: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if method == "POST":
            return 202, {"Location": "/v2/team/app/blobs/uploads/u1?state=a"}, b""
        if method == "PATCH":
            return 202, {"Location": "/v2/team/app/blobs/uploads/u1?state=b"}, b""
        return 201, {}, b""

    script.handler = answer
    data = bytes(range(256)) * 100  # 25,600 bytes in chunks of 10,000
    client(url).upload_blob(
        "team/app", Digest.of(data), len(data), io.BytesIO(data), chunk_size=10_000
    )
    methods = [(s.method, s.headers.get("Content-Range")) for s in script.seen]
    assert methods == [
        ("POST", None),
        ("PATCH", "0-9999"),
        ("PATCH", "10000-19999"),
        ("PUT", "20000-25599"),
    ]
    assert f"digest=sha256%3A{Digest.of(data).hex}" in script.seen[-1].path


def test_blob_stream_resumes_after_a_dropped_connection(server: tuple[str, Script]) -> None:
    url, script = server

    def answer(
        method: str, path: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if path.startswith("/v2/"):
            return 307, {"Location": f"{url}/storage/blob"}, b""
        if "Range" in headers:
            start = int(headers["Range"].removeprefix("bytes=").removesuffix("-"))
            return 206, {}, LAYER[start:]
        return 200, {"X-Truncate-At": "4000"}, LAYER

    script.handler = answer
    with client(url).open_blob("team/app", Digest.of(LAYER)) as stream:
        received = b"".join(iter(lambda: stream.read(1024), b""))
    assert received == LAYER
    ranges = [s.headers.get("Range") for s in script.seen if s.path.startswith("/v2/")]
    # Three 1024-byte reads were delivered before the drop; the partial fourth is read again.
    assert ranges == [None, "bytes=3072-"]


def test_an_unreachable_registry_is_a_retryable_error_naming_the_address() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    slept: list[float] = []
    client = RegistryClient(url, retry=RetryPolicy(attempts=2), sleep=slept.append)
    with pytest.raises(RegistryError) as raised:
        client.get_manifest("team/app", "v1")
    error = raised.value
    assert f"cannot reach {url}: connection refused" in str(error)
    assert error.retryable and error.hint and error.exit_code == ExitCode.REMOTE
    assert len(slept) == 1  # tried twice


class _Trickle:
    """A source that hands out small pieces, as a network stream does."""

    def __init__(self, data: bytes, piece: int = 1000) -> None:
        self._data = io.BytesIO(data)
        self._piece = piece

    def read(self, amt: int = -1, /) -> bytes:
        return self._data.read(min(self._piece, amt) if amt >= 0 else self._piece)


def upload_session(
    location: str, patch_status: int
) -> Callable[..., tuple[int, dict[str, str], bytes]]:
    def answer(
        method: str, path: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if method == "POST":
            return 202, {"Location": location}, b""
        if method == "PATCH":
            return patch_status, {"Location": location}, b""
        return 201, {}, b""

    return answer


@pytest.mark.parametrize("patch_status", [201, 202, 204])
def test_one_streamed_patch_per_upload_session_whatever_the_registry(
    server: tuple[str, Script], patch_status: int
) -> None:
    """ECR answers a PATCH with 201 (openai/tart#273) and is reported to drop a second
    PATCH's body (aws/containers-roadmap#2831): the default upload sends exactly one."""
    url, script = server
    script.handler = upload_session("/v2/team/app/blobs/uploads/u1?state=a", patch_status)
    data = bytes(range(256)) * 400  # 102,400 bytes read 1,000 at a time
    client(url).upload_blob("team/app", Digest.of(data), len(data), _Trickle(data))
    sent = [(s.method, s.headers.get("Content-Range"), s.body_size) for s in script.seen]
    assert sent == [("POST", None, 0), ("PATCH", None, len(data)), ("PUT", None, 0)]
    assert script.seen[1].headers["Content-Length"] == str(len(data))
    assert f"digest=sha256%3A{Digest.of(data).hex}" in script.seen[2].path


def test_throttled_patch_cancels_the_session_and_says_when_to_come_back(
    server: tuple[str, Script],
) -> None:
    url, script = server
    session = "/v2/team/app/blobs/uploads/u1"
    throttled = json.dumps({"errors": [{"code": "TOOMANYREQUESTS"}]}).encode()

    def answer(
        method: str, path: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if method == "PATCH":
            return 429, {"Retry-After": "3"}, throttled
        return (202 if method == "POST" else 204), {"Location": session}, b""

    script.handler = answer
    data = b"x" * 5000
    with pytest.raises(RegistryThrottledError, match="TOOMANYREQUESTS") as caught:
        client(url).upload_blob("team/app", Digest.of(data), len(data), io.BytesIO(data))
    assert caught.value.retry_after == 3.0 and caught.value.retryable
    # The streamed PATCH is not sent twice by the client; its session is given back.
    assert [s.method for s in script.seen] == ["POST", "PATCH", "DELETE"]


def test_retry_after_is_honoured(server: tuple[str, Script]) -> None:
    url, script = server
    answers = iter([(429, {"Retry-After": "1"}, b""), (200, {}, MANIFEST)])
    script.handler = lambda m, p, h: next(answers)
    slept: list[float] = []
    registry = RegistryClient(url, retry=RetryPolicy(attempts=3), sleep=slept.append)
    assert registry.get_manifest("team/app", "v1").raw == MANIFEST
    assert slept == [1.0]


def test_other_client_errors_fail_at_once_with_the_registry_code(
    server: tuple[str, Script],
) -> None:
    url, script = server
    invalid = json.dumps({"errors": [{"code": "MANIFEST_INVALID", "message": "no"}]}).encode()
    script.handler = lambda m, p, h: (400, {}, invalid)
    manifest = parse_manifest(MANIFEST)
    with pytest.raises(RegistryError, match="HTTP 400 \\(MANIFEST_INVALID\\)") as caught:
        client(url).put_manifest("team/app", "v1", manifest)
    assert caught.value.code == "MANIFEST_INVALID" and not caught.value.retryable
    assert len(script.seen) == 1


def test_ecr_403_denied_for_an_expired_token_is_refreshed_once(
    server: tuple[str, Script],
) -> None:
    """ECR answers an expired token with 403 DENIED, "Your authorization token has expired"
    (awslabs/amazon-ecr-credential-helper#7), not only with 401."""
    url, script = server
    fetched: list[str] = []

    def fetch() -> tuple[str, datetime]:
        fetched.append("x")
        token = base64.b64encode(f"AWS:password-{len(fetched)}".encode()).decode()
        return token, datetime.now(UTC) + timedelta(hours=12)

    expired = json.dumps({"errors": [{"code": "DENIED"}]}).encode()
    valid = base64.b64encode(b"AWS:password-2").decode()
    script.handler = lambda m, p, h: (
        (200, {}, MANIFEST) if h.get("Authorization") == f"Basic {valid}" else (403, {}, expired)
    )
    client(url, credentials=TokenCredentials(fetch)).get_manifest("team/app", "v1")
    assert len(fetched) == 2 and len(script.seen) == 2


def test_a_token_gone_stale_mid_upload_is_renewed_and_the_blob_started_over(
    server: tuple[str, Script],
) -> None:
    """A streamed body cannot be sent again: the client renews the token and says the
    upload may be retried (from its source), rather than failing the restore."""
    url, script = server
    fetched: list[str] = []

    def fetch() -> tuple[str, datetime]:
        fetched.append("x")
        return f"token-{len(fetched)}", datetime.now(UTC) + timedelta(hours=12)

    def answer(
        method: str, path: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if method == "PATCH" and headers["Authorization"] == "Basic token-1":
            return 401, {}, b""
        if method == "POST":
            return 202, {"Location": "/v2/team/app/blobs/uploads/u1"}, b""
        return (
            (202 if method == "PATCH" else 201),
            {"Location": "/v2/team/app/blobs/uploads/u1"},
            b"",
        )

    script.handler = answer
    registry = client(url, credentials=TokenCredentials(fetch))
    data = b"y" * 3000
    with pytest.raises(RegistryAuthError) as caught:
        registry.upload_blob("team/app", Digest.of(data), len(data), io.BytesIO(data))
    assert caught.value.retryable and len(fetched) == 2
    registry.upload_blob("team/app", Digest.of(data), len(data), io.BytesIO(data))
    assert [s.headers["Authorization"] for s in script.seen[-3:]] == ["Basic token-2"] * 3


# -- silence and slowness ----------------------------------------------------------------


class _SlowReader(http.server.BaseHTTPRequestHandler):
    """An upload endpoint that takes a body at about 1 MiB/s, then answers at once."""

    received: ClassVar[list[int]] = []

    def do_POST(self) -> None:
        self._answer(202, "/v2/team/app/blobs/uploads/session")

    def do_PATCH(self) -> None:
        left, got = int(self.headers["Content-Length"]), 0
        while left:
            piece = self.rfile.read(min(left, 16 * 1024))
            left, got = left - len(piece), got + len(piece)
            time.sleep(0.015)
        self.received.append(got)
        self._answer(202, "/v2/team/app/blobs/uploads/session")

    def do_PUT(self) -> None:
        self._answer(201, "/v2/team/app/blobs/" + self.path.rpartition("=")[2])

    def _answer(self, status: int, location: str) -> None:
        self.send_response(status)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


class _SmallBuffers(http.server.ThreadingHTTPServer):
    def server_bind(self) -> None:
        # Small kernel buffers: the body is read as it is sent, not absorbed by loopback.
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        super().server_bind()


def test_a_slow_upload_that_progresses_is_not_cut_by_the_timeouts() -> None:
    """Timeouts bound each read and each send of a piece, not a transfer: 2 MiB at about
    1 MiB/s passes timeouts of half a second (the body comes as one 2 MiB chunk)."""
    server = _SmallBuffers(("127.0.0.1", 0), _SlowReader)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    pool = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=0.5, read=0.5),
        retries=False,
        socket_options=[(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)],
    )
    data = bytes(2 * 1024 * 1024)
    client = RegistryClient(f"http://127.0.0.1:{server.server_address[1]}", http=pool)
    try:
        started = time.monotonic()
        client.upload_blob("team/app", Digest.of(data), len(data), io.BytesIO(data))
        elapsed = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    assert _SlowReader.received == [len(data)]
    assert elapsed > 1.0  # longer than any timeout, and not cut


def test_a_registry_that_never_answers_is_asked_twice_and_not_again() -> None:
    """Silence is answered quickly: REGISTRY_SILENT_ATTEMPTS tries, then an error the
    restore does not start over (not retryable), naming the address."""
    slept: list[float] = []
    pool = urllib3.PoolManager(timeout=urllib3.Timeout(connect=0.5, read=0.2), retries=False)
    with SilentListener() as silent:
        client = RegistryClient(silent.url, http=pool, sleep=slept.append)
        with pytest.raises(RegistryError) as raised:
            client.get_manifest("team/app", "v1")
        assert len(silent.accepted) == REGISTRY_SILENT_ATTEMPTS == 2
    error = raised.value
    assert f"cannot reach {silent.url}: timed out" in str(error)
    assert not error.retryable and error.exit_code == ExitCode.REMOTE
    assert len(slept) == 1
