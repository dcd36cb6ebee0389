"""The stdlib HTTP server under the registry: bodies whole, HEAD bare, writes end their
connection, and stopping ends idle keep-alive connections at once."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any, cast

import pytest

from ecr_backup.serve.messages import BodyStream, Request, Response
from ecr_backup.serve.registry import Registry
from ecr_backup.serve.server import RegistryServer

BLOB = bytes(range(256)) * 4096  # 1 MiB, sent in chunks


class Answers:
    """A stand-in for the registry: a streamed blob, a JSON body, and what it was asked."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.closed = 0

    def handle(self, request: Request) -> Response:
        self.requests.append(request)
        if request.path == "/blob":
            resources = ExitStack()
            resources.callback(self._close)
            chunks = iter([BLOB[:1000], BLOB[1000:]])
            headers = [("Content-Length", str(len(BLOB)))]
            response = Response(200, headers, stream=BodyStream(chunks, resources))
            if request.method == "HEAD":
                response.close()
                response.stream = None
            return response
        status = 405 if request.method not in ("GET", "HEAD") else 200
        body = b"" if request.method == "HEAD" else b'{"ok":true}'
        return Response(status, [("Content-Length", "11")], body)

    def _close(self) -> None:
        self.closed += 1


@pytest.fixture
def served() -> Iterator[tuple[RegistryServer, Answers]]:
    answers = Answers()
    server = RegistryServer(("127.0.0.1", 0), cast(Registry, answers), workers=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, answers
    server.shutdown()
    server.server_close()
    thread.join(5)


def connect(server: RegistryServer) -> http.client.HTTPConnection:
    host, port = server.server_address[:2]
    return http.client.HTTPConnection(str(host), int(port), timeout=10)


def test_streamed_bodies_arrive_whole_on_one_kept_alive_connection(
    served: tuple[RegistryServer, Any],
) -> None:
    server, answers = served
    connection = connect(server)
    for _ in range(2):
        connection.request("GET", "/blob?x=1", headers={"Range": "bytes=0-"})
        response = connection.getresponse()
        assert response.status == 200 and response.read() == BLOB
    connection.request("HEAD", "/blob")
    head = connection.getresponse()
    assert head.getheader("Content-Length") == str(len(BLOB)) and head.read() == b""
    assert answers.closed == 3
    request = answers.requests[0]
    assert (request.path, request.param("x"), request.header("range")) == ("/blob", "1", "bytes=0-")


def test_a_write_ends_its_connection(served: tuple[RegistryServer, Any]) -> None:
    server, _ = served
    connection = connect(server)
    connection.request("PUT", "/v2/a/manifests/b", body=b"x" * 100)
    response = connection.getresponse()
    assert response.status == 405 and response.getheader("Connection") == "close"


def test_stopping_ends_idle_keep_alive_connections(served: tuple[RegistryServer, Any]) -> None:
    server, _ = served
    connection = connect(server)
    connection.request("GET", "/v2/")
    assert connection.getresponse().read() == b'{"ok":true}'
    started = time.monotonic()
    server.shutdown()
    server.server_close()  # waits for the workers: the idle connection must not hold one
    assert time.monotonic() - started < 5
