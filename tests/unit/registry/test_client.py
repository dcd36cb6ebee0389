"""The registry client against a scripted HTTP server on loopback."""

from __future__ import annotations

import base64
import http.server
import io
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from devkit.servers import free_port
from ecr_backup.errors import (
    BlobNotFoundError,
    DigestMismatchError,
    ExitCode,
    ManifestNotFoundError,
    RegistryAuthError,
    RegistryError,
    RepositoryNotFoundError,
)
from ecr_backup.oci import mediatypes
from ecr_backup.oci.digest import Digest
from ecr_backup.registry.auth import Credentials, TokenCredentials
from ecr_backup.registry.client import RegistryClient, RetryPolicy

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
            if length:
                self.rfile.read(length)
            headers = {k: v for k, v in self.headers.items()}
            script.seen.append(Seen(self.command, self.path, headers))
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


def test_chunked_upload_sends_ranges_and_the_digest(server: tuple[str, Script]) -> None:
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
    client(url).upload_blob("team/app", Digest.of(data), len(data), io.BytesIO(data), 10_000)
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
