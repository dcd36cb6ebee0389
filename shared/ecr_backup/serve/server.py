"""The registry over HTTP(S) with the standard library: a bounded pool of worker threads,
HTTP/1.1 keep-alive, TLS handshakes done by the workers (never the accepting thread)."""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import logging
import socket
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ecr_backup.errors import InvalidInputError
from ecr_backup.serve.messages import Request
from ecr_backup.serve.registry import Registry
from ecr_backup.settings import SERVE_IDLE_TIMEOUT_SECONDS, SERVE_WORKERS

log = logging.getLogger(__name__)


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT (or [IPv6]:PORT) to (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise InvalidInputError(f"invalid --listen {text!r}: use HOST:PORT, e.g. 127.0.0.1:5000")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, *, users: bool, tls: bool) -> None:
    """Safe by default: off loopback only with users and TLS, so that neither the images
    nor passwords travel unauthenticated or in clear."""
    if is_loopback(host):
        return
    if not users:
        raise InvalidInputError(
            f"refusing to listen on {host} without --htpasswd: without users, serve listens "
            "on loopback only (127.0.0.1)"
        )
    if not tls:
        raise InvalidInputError(
            f"refusing basic auth over plain HTTP on {host}: pass --tls-cert and --tls-key"
        )


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a pull makes many requests
    server_version = "ecr-backup"
    timeout = SERVE_IDLE_TIMEOUT_SECONDS  # an idle keep-alive connection frees its worker
    server: RegistryServer

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)  # a stalled handshake frees its worker
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _answer(self) -> None:
        request = Request.of(self.command, self.path, dict(self.headers.items()))
        if request.method not in ("GET", "HEAD"):
            # The body of a write is never read: the connection ends with the answer.
            self.close_connection = True
        response = self.server.registry.handle(request)
        try:
            self.send_response(response.status)
            for name, value in response.headers:
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if response.stream is not None:
                for chunk in response.stream:
                    self.wfile.write(chunk)
            elif response.body:
                self.wfile.write(response.body)
        except Exception as e:
            # Mid-body (the client left, or the blob failed its digest): the connection is
            # cut, so the client never takes a short body as complete.
            log.warning("%s %s: response cut: %s", request.method, request.path, e)
            self.close_connection = True
        finally:
            response.close()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _answer


class RegistryServer(http.server.HTTPServer):
    """An HTTPServer whose connections are served by at most `workers` threads."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        registry: Registry,
        *,
        tls: ssl.SSLContext | None = None,
        workers: int = SERVE_WORKERS,
    ) -> None:
        self.registry = registry
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="serve")
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.scheme = "https" if tls else "http"

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        return f"{self.scheme}://{f'[{host}]' if ':' in host else host}:{port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        self._pool.submit(self._work, request, client_address)

    def _work(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._open.add(request)
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._lock:
                self._open.discard(request)
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s failed", client_address, exc_info=True)

    def server_close(self) -> None:
        """Stop listening and end every connection, so that the workers (which the
        interpreter waits for at exit) return at once, even from idle keep-alives."""
        super().server_close()
        with self._lock:
            for connection in self._open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        self._pool.shutdown(wait=True, cancel_futures=True)


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise InvalidInputError(f"cannot load --tls-cert {cert} / --tls-key {key}: {e}") from e
    return context
