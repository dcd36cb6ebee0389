"""A token server for the devkit registry: the bearer auth of Docker Hub, Harbor or ACR.

Debian's registry (distribution 2.8) is configured with `auth: token` and trusts the
certificate this server signs its JWTs with (ES256, the certificate in the `x5c` header).
The server answers both ways the distribution token spec allows:

* GET /token?service=..&scope=.. with the user's basic credentials ("token.md");
* POST /token with a form ("oauth.md"): grant_type=password (user and password; with
  access_type=offline the answer carries a refresh token, which docker saves as its
  "identitytoken"), or grant_type=refresh_token. client_id is REQUIRED there, so a POST
  without it is refused, as strict as the spec.

Every scope asked for is granted to a valid login (no per-repository ACL); each request is
recorded (`requests`) for tests to look at.
"""

from __future__ import annotations

import base64
import http.server
import json
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, parse_qsl, urlsplit

from devkit.net import ServedInThread, decode_basic, self_signed_certificate

TOKEN_LIFETIME_S = 300


@dataclass(frozen=True)
class TokenRequest:
    method: str
    grant_type: str  # "basic" for a GET with credentials, "" for an anonymous GET
    scopes: tuple[str, ...]


class TokenServer:
    """Issues registry tokens for one user; `identity_token()` is what `docker login` keeps."""

    issuer = "devkit-token-server"
    service = "devkit-registry"

    def __init__(self, username: str = "tokenuser", password: str | None = None) -> None:
        self.username = username
        self.password = password or secrets.token_hex(12)
        self.requests: list[TokenRequest] = []
        self._refresh_tokens: set[str] = set()
        self._lock = threading.Lock()
        self._workdir: Path | None = None
        self._served: ServedInThread | None = None
        self._key: Any = None
        self._certificate_der = b""

    @property
    def realm(self) -> str:
        assert self._served is not None
        return f"http://127.0.0.1:{self._served.port}/token"

    @property
    def certificate_path(self) -> Path:
        assert self._workdir is not None
        return self._workdir / "token-signer.crt"

    def identity_token(self) -> str:
        """A refresh token for the user, as a password login with access_type=offline gets."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._refresh_tokens.add(token)
        return token

    def __enter__(self) -> Self:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        self._workdir = Path(tempfile.mkdtemp(prefix="devkit-token-"))
        certificate_pem, key_pem = self_signed_certificate("127.0.0.1")
        self.certificate_path.write_bytes(certificate_pem)
        self._key = serialization.load_pem_private_key(key_pem, password=None)
        certificate = x509.load_pem_x509_certificate(certificate_pem)
        self._certificate_der = certificate.public_bytes(serialization.Encoding.DER)
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._served = ServedInThread(handler, "token-server")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._served is not None:
            self._served.stop()
            self._served = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def registry_auth_config(self) -> dict[str, Any]:
        """The `auth` section of the registry's configuration."""
        return {
            "token": {
                "realm": self.realm,
                "service": self.service,
                "issuer": self.issuer,
                "rootcertbundle": str(self.certificate_path),
            }
        }

    # -- issuing -------------------------------------------------------------------------

    def answer(
        self, method: str, query: str, body: str, authorization: str
    ) -> tuple[int, dict[str, Any]]:
        """(status, JSON document) for one request to the token endpoint."""
        if method == "GET":
            params = parse_qs(query)
            scopes = tuple(params.get("scope", []))
            user = self._basic_user(authorization)
            self._record("GET", "basic" if user else "", scopes)
            if authorization and user is None:
                return 401, {"details": "incorrect username or password"}
            return 200, self._token(user or "", scopes)
        form = dict(parse_qsl(body))
        scopes = tuple(form.get("scope", "").split())
        grant = form.get("grant_type", "")
        self._record("POST", grant, scopes)
        if not form.get("client_id"):
            return 400, {"error": "invalid_request", "error_description": "client_id missing"}
        if grant == "password":
            if (form.get("username"), form.get("password")) != (self.username, self.password):
                return 401, {"error": "invalid_grant"}
            document = self._token(self.username, scopes)
            if form.get("access_type") == "offline":
                document["refresh_token"] = self.identity_token()
            return 200, document
        if grant == "refresh_token":
            with self._lock:
                known = form.get("refresh_token") in self._refresh_tokens
            if not known:
                return 401, {"error": "invalid_grant"}
            return 200, self._token(self.username, scopes)
        return 400, {"error": "unsupported_grant_type"}

    def _record(self, method: str, grant: str, scopes: tuple[str, ...]) -> None:
        with self._lock:
            self.requests.append(TokenRequest(method, grant, scopes))

    def _basic_user(self, authorization: str) -> str | None:
        scheme, _, encoded = authorization.partition(" ")
        credentials = decode_basic(encoded) if scheme.lower() == "basic" else None
        return self.username if credentials == (self.username, self.password) else None

    def _token(self, subject: str, scopes: tuple[str, ...]) -> dict[str, Any]:
        now = int(time.time())
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind and name:
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + TOKEN_LIFETIME_S,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        jwt = self._sign(claims)
        return {"token": jwt, "access_token": jwt, "expires_in": TOKEN_LIFETIME_S}

    def _sign(self, claims: dict[str, Any]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64.b64encode(self._certificate_der).decode()],
        }
        signing_input = f"{_b64url(json.dumps(header))}.{_b64url(json.dumps(claims))}"
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        # JWS wants the raw r || s, 32 bytes each for P-256, not the DER sequence.
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signing_input}.{_b64url(signature)}"


def _b64url(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class _Handler(http.server.BaseHTTPRequestHandler):
    server_state: TokenServer  # set on the subclass each server makes

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve("")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._serve(self.rfile.read(length).decode(errors="replace"))

    def _serve(self, body: str) -> None:
        parts = urlsplit(self.path)
        if parts.path != "/token":
            self.send_error(404)
            return
        status, document = self.server_state.answer(
            self.command, parts.query, body, self.headers.get("Authorization", "")
        )
        payload = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
