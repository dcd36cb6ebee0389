"""Small network utilities of the devkit's servers: free loopback ports, threaded HTTP
servers, Basic credentials and a self-signed certificate. They import no other devkit
module, so every server module can use them."""

from __future__ import annotations

import base64
import http.server
import socket
import threading


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (racy, but fine locally)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def decode_basic(credentials: str) -> tuple[str, str] | None:
    """(user, password) from the credentials of an `Authorization: Basic` header, or None
    when they are not base64 of UTF-8 text."""
    try:
        user, _, password = base64.b64decode(credentials).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


class ServedInThread:
    """An http.server on 127.0.0.1 and a free port, serving from a thread until stop()."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler], name: str) -> None:
        self.port = free_port()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def self_signed_certificate(ip: str) -> tuple[bytes, bytes]:
    """A one-day certificate (PEM) for an IP address, and its key (PEM)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return (
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


class SilentListener:
    """A TCP listener on 127.0.0.1 that accepts every connection and never answers: an
    endpoint gone silent. Connections are held open until stop()."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._socket.settimeout(0.1)  # closing a socket does not wake a blocked accept()
        self.port: int = self._socket.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            self.accepted.append(connection)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        self._socket.close()
        for connection in self.accepted:
            connection.close()

    def __enter__(self) -> SilentListener:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
