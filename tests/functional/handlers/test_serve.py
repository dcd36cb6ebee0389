"""handlers/serve.py: Function URL events in, the registry's answers out (moto's mock_aws)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import bcrypt
import boto3
import pytest

from ecr_backup.serve.messages import Request, Response
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex
from tests.functional.handlers.test_replicate import Context
from tests.functional.handlers.test_scheduled import BACKUP_ENV, load
from tests.helpers import Backup

AUTHORIZATION = "Basic " + base64.b64encode(b"puller:pull-pass").decode()


@pytest.fixture(scope="module")
def serve_module() -> Iterator[ModuleType]:
    yield from load("serve")


def url_event(method: str, path: str, query: str = "", **headers: str) -> dict[str, Any]:
    return {
        "version": "2.0",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {"http": {"method": method, "path": path}},
        "isBase64Encoded": False,
    }


@pytest.fixture
def backed_up(
    store: S3BlobStore, index: DynamoIndex, monkeypatch: pytest.MonkeyPatch, serve_module: Any
) -> Iterator[Backup]:
    for name, value in BACKUP_ENV.items():
        monkeypatch.setenv(name, value)
    hashed = bcrypt.hashpw(b"pull-pass", bcrypt.gensalt(rounds=4)).decode()
    secret = boto3.client("secretsmanager").create_secret(
        Name="serve-users", SecretString=f"puller:{hashed}\n"
    )
    monkeypatch.setenv("ECR_BACKUP_SERVE_USERS_SECRET", secret["ARN"])
    backup = Backup(store, index)
    for tag in ("b", "a", "c"):
        backup.push("app", backup.image("app"), tag, backup.clock())
    serve_module.registry.cache_clear()  # built once per container: this test is a new one
    yield backup
    serve_module.registry.cache_clear()


def test_function_url_events_are_requests(serve_module: Any) -> None:
    request: Request = serve_module.request_of(
        url_event("GET", "/v2/app/tags/list", "n=1&last=a", Authorization="Basic x")
    )
    assert (request.method, request.path) == ("GET", "/v2/app/tags/list")
    assert (request.param("n"), request.param("last")) == ("1", "a")
    assert request.header("authorization") == "Basic x"


def test_answers_carry_text_or_base64(serve_module: Any) -> None:
    text = serve_module.answer_of(Response(200, [("Content-Type", "application/json")], b"{}"))
    assert text == {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": "{}",
        "isBase64Encoded": False,
    }
    binary = serve_module.answer_of(Response(200, [], b"\xff\x00"))
    assert binary["isBase64Encoded"] and base64.b64decode(binary["body"]) == b"\xff\x00"


def test_the_handler_serves_with_the_secret_users(serve_module: Any, backed_up: Backup) -> None:
    context = Context(function_name="serve")
    refused = serve_module.handler(url_event("GET", "/v2/_catalog"), context)
    assert refused["statusCode"] == 401
    tags = serve_module.handler(
        url_event("GET", "/v2/app/tags/list", "n=2", authorization=AUTHORIZATION), context
    )
    assert tags["statusCode"] == 200
    assert json.loads(tags["body"]) == {"name": "app", "tags": ["a", "b"]}
    assert tags["headers"]["Link"] == '</v2/app/tags/list?n=2&last=b>; rel="next"'
    manifest = serve_module.handler(
        url_event("HEAD", "/v2/app/manifests/a", authorization=AUTHORIZATION), context
    )
    assert manifest["statusCode"] == 200 and manifest["body"] == ""
    assert manifest["headers"]["Docker-Content-Digest"].startswith("sha256:")


def test_without_users_nothing_is_served(
    serve_module: Any, backed_up: Backup, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = boto3.client("secretsmanager").create_secret(
        Name="no-users", SecretString="# htpasswd -B lines\n"
    )
    monkeypatch.setenv("ECR_BACKUP_SERVE_USERS_SECRET", empty["ARN"])
    answer = serve_module.handler(
        url_event("GET", "/v2/app/tags/list", authorization=AUTHORIZATION),
        Context(function_name="serve"),
    )
    assert answer["statusCode"] == 500
    assert json.loads(answer["body"])["errors"][0]["code"] == "UNKNOWN"
