"""The one backoff policy: jittered, capped, Retry-After first; botocore set deliberately."""

from __future__ import annotations

import http.server
import json
import threading
from datetime import UTC, datetime

import boto3
import pytest
from botocore.exceptions import ClientError

from ecr_backup.awssession import client_config
from ecr_backup.retry import RetryPolicy, parse_retry_after
from ecr_backup.settings import AWS_MAX_ATTEMPTS


def test_full_jitter_stays_under_the_capped_exponential() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    for attempt in range(10):
        ceiling = min(4.0, 0.5 * 2**attempt)
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # spread over the range, not a fixed sleep


def test_retry_after_wins_and_is_capped() -> None:
    policy = RetryPolicy(max_retry_after=30.0)
    assert policy.delay(5, retry_after=1.0) == 1.0
    assert policy.delay(0, retry_after=3600.0) == 30.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1", 1.0),
        ("120", 120.0),
        ("Sat, 28 Nov 2026 00:00:10 GMT", 10.0),
        ("Fri, 27 Nov 2026 23:00:00 GMT", 0.0),  # in the past: no wait
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_as_seconds_or_http_date(header: str | None, seconds: float | None) -> None:
    now = datetime(2026, 11, 28, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == seconds


@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "SlowDown"), (400, "ThrottlingException"), (429, "TooManyRequestsException")],
)
def test_aws_calls_retry_throttling_within_the_stated_budget(
    monkeypatch: pytest.MonkeyPatch, status: int, code: str
) -> None:
    """botocore in standard mode, as awssession.client_config() sets it: throttling is retried,
    AWS_MAX_ATTEMPTS calls in all, with a jittered wait before each retry."""
    seen: list[str] = []

    class Throttling(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            body = json.dumps({"__type": code, "message": "Rate exceeded"}).encode()
            if code == "SlowDown":
                body = f"<Error><Code>{code}</Code><Message>slow</Message></Error>".encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    waits: list[float] = []
    # botocore.endpoint sleeps with time.sleep between attempts: record instead of waiting.
    monkeypatch.setattr("botocore.endpoint.time.sleep", waits.append)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Throttling)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        session = boto3.Session(
            aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
        )
        if code == "SlowDown":
            s3 = session.client("s3", endpoint_url=url, config=client_config())
            with pytest.raises(ClientError, match=code):
                s3.get_object(Bucket="b", Key="k")
        else:
            ecr = session.client("ecr", endpoint_url=url, config=client_config())
            with pytest.raises(ClientError, match=code):
                ecr.describe_repositories()
    finally:
        server.shutdown()
        server.server_close()
    assert len(seen) == AWS_MAX_ATTEMPTS
    assert len(waits) == AWS_MAX_ATTEMPTS - 1


def test_other_aws_client_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.path)
            body = json.dumps({"__type": "RepositoryNotFoundException", "message": "no"}).encode()
            self.send_response(400)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        ecr = boto3.client(
            "ecr",
            endpoint_url=url,
            config=client_config(),
            aws_access_key_id="k",
            aws_secret_access_key="s",
            region_name="us-east-1",
        )
        with pytest.raises(ClientError, match="RepositoryNotFoundException"):
            ecr.describe_repositories()
    finally:
        server.shutdown()
        server.server_close()
    assert len(seen) == 1
