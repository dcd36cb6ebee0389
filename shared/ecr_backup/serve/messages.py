"""Requests and responses as plain values, so one application runs under any transport
(the CLI's HTTP server, a Lambda Function URL), and the registry's error answers."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

API_VERSION_HEADER = ("Docker-Distribution-API-Version", "registry/2.0")
JSON = "application/json"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # names in lower case

    @classmethod
    def of(cls, method: str, target: str, headers: Mapping[str, str] | None = None) -> Request:
        """From a request line's target (path and query) and its headers."""
        parts = urlsplit(target)
        return cls(
            method.upper(),
            parts.path,
            parse_qs(parts.query, keep_blank_values=True),
            {k.lower(): v for k, v in (headers or {}).items()},
        )

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


class BodyStream:
    """Chunks of a body read while it is sent; `close` releases what it reads from."""

    def __init__(self, chunks: Iterator[bytes], resources: ExitStack) -> None:
        self._chunks = chunks
        self._resources = resources

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        self._resources.close()


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: BodyStream | None = None  # sent instead of `body`, Content-Length set already

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()


def json_response(
    status: int, document: object, headers: list[tuple[str, str]] | None = None
) -> Response:
    body = json.dumps(document, separators=(",", ":")).encode()
    return Response(
        status,
        [("Content-Type", JSON), ("Content-Length", str(len(body))), *(headers or [])],
        body,
    )


# The distribution spec's error codes (and CNCF distribution's for pagination and for
# failures of its own), each with the status the spec gives it.
STATUS_OF = {
    "BLOB_UNKNOWN": 404,
    "DIGEST_INVALID": 400,
    "MANIFEST_UNKNOWN": 404,
    "NAME_INVALID": 400,
    "NAME_UNKNOWN": 404,
    "UNAUTHORIZED": 401,
    "DENIED": 403,
    "UNSUPPORTED": 405,
    "PAGINATION_NUMBER_INVALID": 400,
    "UNKNOWN": 500,
}


class RegistryProblem(Exception):
    """A request the registry answers with an error document (the spec's JSON body)."""

    def __init__(
        self, code: str, message: str, *, headers: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = STATUS_OF[code]
        self.headers = headers or []

    def response(self) -> Response:
        document = {"errors": [{"code": self.code, "message": str(self), "detail": None}]}
        return json_response(self.status, document, self.headers)
