"""A reverse proxy on 127.0.0.1 that counts the AWS requests passing through it, by service
and operation, read from the request as AWS reads it (SigV4 credential scope, X-Amz-Target,
the Query API's Action, S3's method and sub-resources). Put it in front of moto (as
AWS_ENDPOINT_URL) to count what one CLI process or one Lambda invocation asks of AWS.
"""

from __future__ import annotations

import http.server
import re
import socket
import ssl
import tempfile
import threading
import urllib.parse
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import urllib3

from devkit.net import self_signed_certificate

MiB = 1024 * 1024

_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")
# S3 sub-resources that name the operation (query keys), for each method.
_S3_SUBRESOURCES = {
    ("GET", "retention"): "GetObjectRetention",
    ("PUT", "retention"): "PutObjectRetention",
    ("GET", "legal-hold"): "GetObjectLegalHold",
    ("PUT", "legal-hold"): "PutObjectLegalHold",
    ("GET", "versions"): "ListObjectVersions",
    ("GET", "list-type"): "ListObjectsV2",
    ("POST", "uploads"): "CreateMultipartUpload",
    ("PUT", "partNumber"): "UploadPart",
    ("POST", "uploadId"): "CompleteMultipartUpload",
    ("DELETE", "uploadId"): "AbortMultipartUpload",
    ("POST", "delete"): "DeleteObjects",
}
_S3_PLAIN = {
    "GET": "GetObject",
    "HEAD": "HeadObject",
    "PUT": "PutObject",
    "DELETE": "DeleteObject",
}
# Hop-by-hop headers are the proxy's own business (RFC 9110, 7.6.1).
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


def operation_of(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[str, str]:
    """(service, operation) of one AWS request, as the service itself would name them."""
    lowered = {k.lower(): v for k, v in headers.items()}
    scope = _SCOPE.search(lowered.get("authorization", ""))
    service = scope.group(1) if scope else "unsigned"
    target = lowered.get("x-amz-target")
    if target:
        return service, target.rsplit(".", 1)[-1]
    query = urllib.parse.urlsplit(path).query
    if service == "s3":
        keys = {k for k, _ in urllib.parse.parse_qsl(query, keep_blank_values=True)}
        for (verb, key), name in _S3_SUBRESOURCES.items():
            if verb == method and key in keys:
                return service, name
        return service, _S3_PLAIN.get(method, method)
    form = dict(urllib.parse.parse_qsl(query or body.decode("latin-1", "replace")))
    return service, form.get("Action", method)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    tls: ssl.SSLContext | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        if self.tls is not None:
            # The handshake happens on the handler's thread, at its first read.
            connection = self.tls.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
        return connection, address


class CountingProxy:
    """Forwards every request to `upstream` and counts it; `counts()` and `reset()`.
    With `tls`, it answers HTTPS with a self-signed certificate for 127.0.0.1 (`ca_path`
    is the file to trust, as AWS_CA_BUNDLE): AWS as clients meet it, always over TLS."""

    def __init__(self, upstream: str, *, tls: bool = False) -> None:
        self.upstream = upstream.rstrip("/")
        self.tls = tls
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._http = urllib3.PoolManager(maxsize=32, retries=False, timeout=300.0)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "use CountingProxy as a context manager"
        port = self._server.server_address[1]
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"

    @property
    def ca_path(self) -> Path:
        assert self._workdir is not None and self.tls
        return Path(self._workdir.name) / "ca.pem"

    def counts(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def _count(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._counts[key] += 1

    def __enter__(self) -> Self:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                body = self._body()
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                proxy._count(operation_of(self.command, self.path, headers, body))
                answer = proxy._http.request(
                    self.command,
                    proxy.upstream + self.path,
                    body=body if body or self.command in ("PUT", "POST") else None,
                    headers=headers,
                    redirect=False,
                    preload_content=False,
                    decode_content=False,
                )
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        if name.lower() not in _HOP:
                            self.send_header(name, value)
                    if "content-length" not in {k.lower() for k in answer.headers}:
                        # Read whole only when the upstream did not say how long it is.
                        data = answer.read()
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        if self.command != "HEAD":
                            self.wfile.write(data)
                        return
                    self.end_headers()
                    if self.command != "HEAD":
                        # Streamed: a GiB object passes through in constant memory.
                        for chunk in answer.stream(MiB):
                            self.wfile.write(chunk)
                finally:
                    answer.release_conn()

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks: list[bytes] = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self._server = _Server(("127.0.0.1", 0), Handler)
        if self.tls:
            self._workdir = tempfile.TemporaryDirectory(prefix="counting-proxy-")
            certificate, key = self_signed_certificate("127.0.0.1")
            self.ca_path.write_bytes(certificate)
            key_path = Path(self._workdir.name) / "key.pem"
            key_path.write_bytes(key)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.ca_path, key_path)
            self._server.tls = context
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="counting-proxy", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        if self._workdir is not None:
            self._workdir.cleanup()
        self._http.clear()
