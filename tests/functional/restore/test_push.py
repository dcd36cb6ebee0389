"""Restore: targets, ECR wiring, planning from the bucket, and the push order into a registry."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import boto3
import pytest

from ecr_backup.catalog.catalog import Catalog
from ecr_backup.errors import (
    BlobNotFoundError,
    DigestMismatchError,
    InvalidInputError,
    NotFoundError,
    RegistryAuthError,
    RegistryError,
    RegistryThrottledError,
    RepositoryNotFoundError,
)
from ecr_backup.oci.reference import ImageRef
from ecr_backup.registry.auth import ChallengeCredentials, TokenCredentials
from ecr_backup.restore.plan import RestoreRequest, plan_restore
from ecr_backup.restore.push import Restorer
from ecr_backup.restore.target import (
    Target,
    ensure_ecr_repository,
    parse_target,
    target_credentials,
)
from ecr_backup.settings import MiB
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex
from tests.helpers import BUCKET, Backup, FakeTarget, ProgressRecorder, TargetError, minutes

ECR_HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


@pytest.fixture
def backup(store: S3BlobStore, index: DynamoIndex) -> Backup:
    return Backup(store, index)


def run(
    backup: Backup,
    ref: str,
    to: str,
    target: FakeTarget,
    *,
    dry_run: bool = False,
    chunk_size: int | None = None,
    mount_from: tuple[str, ...] = (),
    sleep: Callable[[float], None] = time.sleep,
    **request: Any,
) -> Any:
    catalog = Catalog(backup.store, backup.index)
    parsed_ref = ImageRef.parse(ref, default_tag=None if request.get("all_tags") else "latest")
    plan = plan_restore(catalog, RestoreRequest(parsed_ref, **request), parse_target(to))
    restorer = Restorer(
        catalog.reader,
        target,
        chunk_size=chunk_size,
        mount_from=mount_from,
        progress=ProgressRecorder(),
        sleep=sleep,
    )
    return plan, (restorer.preview(plan) if dry_run else restorer.run(plan))


# -- targets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "url", "repository", "tag", "ecr"),
    [
        (f"{ECR_HOST}/team/app:v2", f"https://{ECR_HOST}", "team/app", "v2", "123456789012"),
        ("127.0.0.1:5000/app", "http://127.0.0.1:5000", "app", None, None),
        ("localhost:5000/app:v1", "http://localhost:5000", "app", "v1", None),
        ("https://127.0.0.1:5443/app", "https://127.0.0.1:5443", "app", None, None),
        (
            "registry.example.com/a/b/c:latest",
            "https://registry.example.com",
            "a/b/c",
            "latest",
            None,
        ),
    ],
)
def test_parse_target(
    text: str, url: str, repository: str, tag: str | None, ecr: str | None
) -> None:
    target = parse_target(text)
    assert (target.url, target.repository, target.tag, target.ecr_account) == (
        url,
        repository,
        tag,
        ecr,
    )


@pytest.mark.parametrize(
    "text",
    ["registry.example.com", "ftp://host/app", "host/app@sha256:" + "a" * 64, "host/App", "host/"],
)
def test_parse_target_refuses(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_target(text)


def test_endpoint_override_keeps_ecr_identity() -> None:
    target = parse_target(f"{ECR_HOST}/app", endpoint="http://127.0.0.1:9000")
    assert target.url == "http://127.0.0.1:9000" and target.is_ecr
    assert target.ecr_region == "eu-west-1"


def test_ecr_target_gets_ecr_token_auth(aws: None) -> None:
    credentials = target_credentials(parse_target(f"{ECR_HOST}/app"), session=boto3.Session())
    assert isinstance(credentials, TokenCredentials)
    header = credentials.authorization()
    assert header is not None and header.startswith("Basic ")
    user, _, password = base64.b64decode(header.split()[1]).decode().partition(":")
    assert user == "AWS" and password == "123456789012-auth-token"  # moto's ECR token


def test_ecr_repository_is_created_only_when_asked(aws: None) -> None:
    session = boto3.Session()
    target = parse_target(f"{ECR_HOST}/team/app")
    with pytest.raises(RepositoryNotFoundError, match="pass --create-repository"):
        ensure_ecr_repository(target, session, create=False)
    assert ensure_ecr_repository(target, session, create=True, dry_run=True) is True
    assert ensure_ecr_repository(target, session, create=True) is True
    assert ensure_ecr_repository(target, session, create=False) is False
    names = [
        r["repositoryName"]
        for r in boto3.client("ecr", region_name="eu-west-1").describe_repositories()[
            "repositories"
        ]
    ]
    assert names == ["team/app"]


class ScriptedHttp:
    """Answers the /v2/ probe and the token endpoint as a token-auth registry does."""

    def __init__(self, challenge: str, token: dict[str, Any] | None = None) -> None:
        self.challenge = challenge
        self.token = token or {}
        self.methods: list[str] = []
        self.urls: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.bodies: list[str | None] = []

    def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        body: str | None = None,
        **_: Any,
    ) -> Any:
        self.methods.append(method)
        self.urls.append(url)
        self.headers.append(headers or {})
        self.bodies.append(body)

        class Answer:
            status = 401 if url.endswith("/v2/") else 200
            data = json.dumps(self.token).encode()

        Answer.headers = {"WWW-Authenticate": self.challenge}  # type: ignore[attr-defined]
        return Answer


def test_bearer_challenge_gets_one_token_for_every_repository() -> None:
    http = ScriptedHttp(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com"',
        {"token": "tok", "expires_in": 300},
    )
    credentials = ChallengeCredentials(
        "https://registry.example.com",
        "me",
        "pw",
        ["app", "base"],
        http=http,  # type: ignore[arg-type]
    )
    assert credentials.authorization() == "Bearer tok"
    assert credentials.authorization() == "Bearer tok"  # cached
    token_url = http.urls[1]
    assert "service=registry.example.com" in token_url
    assert "scope=repository%3Aapp%3Apull%2Cpush" in token_url
    assert "scope=repository%3Abase%3Apull" in token_url
    assert http.headers[1]["Authorization"].startswith("Basic ")
    assert len(http.urls) == 2


def test_an_identity_token_is_exchanged_for_a_token_by_an_oauth2_post() -> None:
    http = ScriptedHttp(
        'Bearer realm="https://auth.example.com/oauth2/token",service="registry.example.com"',
        {"access_token": "acc", "expires_in": 300},
    )
    credentials = ChallengeCredentials(
        "https://registry.example.com",
        "<token>",
        "",
        ["app", "base"],
        identity_token="refresh-1",
        http=http,  # type: ignore[arg-type]
    )
    assert credentials.authorization() == "Bearer acc"
    assert http.methods == ["GET", "POST"]
    assert http.urls[1] == "https://auth.example.com/oauth2/token"
    assert http.headers[1] == {"Content-Type": "application/x-www-form-urlencoded"}
    assert dict(parse_qsl(http.bodies[1] or "")) == {
        "grant_type": "refresh_token",
        "refresh_token": "refresh-1",
        "client_id": "ecr-backup",
        "service": "registry.example.com",
        "scope": "repository:app:pull,push repository:base:pull",
    }
    assert credentials.authorization() == "Bearer acc"  # cached
    assert len(http.urls) == 2

    basic = ScriptedHttp('Basic realm="registry"')
    with_token = ChallengeCredentials(
        "http://r",
        "<token>",
        "",
        ["app"],
        identity_token="refresh-1",
        http=basic,  # type: ignore[arg-type]
    )
    with pytest.raises(RegistryAuthError, match="identity token"):
        with_token.authorization()


def test_basic_challenge_without_a_user_is_a_clear_error() -> None:
    http = ScriptedHttp('Basic realm="registry"')
    credentials = ChallengeCredentials("http://r", None, None, ["app"], http=http)  # type: ignore[arg-type]
    with pytest.raises(RegistryAuthError, match="--to-username"):
        credentials.authorization()


# -- planning and pushing -------------------------------------------------------------------


def test_restore_pushes_children_first_and_tags_last(backup: Backup) -> None:
    index = backup.multi_arch("base", shared=backup.layer())
    backup.push("base", index, "v1", minutes(1))
    target = FakeTarget()
    plan, report = run(backup, "base:v1", "registry.example.com/restored", target)
    assert target.manifests["restored"]["v1"] == index.raw  # exact bytes: same digest
    kinds = [c[0] for c in target.calls]
    # every blob before any manifest, children before the index, the tag last
    assert kinds.index("manifest") > max(i for i, k in enumerate(kinds) if k == "upload")
    manifests = [c[2] for c in target.calls if c[0] == "manifest"]
    assert manifests[-1] == "v1" and manifests[-2] == str(index.digest)
    assert set(manifests[:2]) == {str(c.digest) for c in index.children}
    assert len(report.blobs_uploaded) == 5 and report.tags_set == ["v1"]
    assert report.bytes_uploaded == plan.total_bytes


def test_nothing_is_tagged_when_a_blob_fails(backup: Backup) -> None:
    image = backup.image("app")
    backup.push("app", image, "v1", minutes(1))
    target = FakeTarget(fail_upload_of=image.blobs[-1].digest)
    with pytest.raises(TargetError):
        run(backup, "app:v1", "registry.example.com/app", target)
    assert target.tags("app") == {}
    assert not any(c[0] == "manifest" for c in target.calls)


def test_missing_blob_fails_before_the_target_is_touched(backup: Backup, s3: Any) -> None:
    image = backup.image("app")
    backup.push("app", image, "v1", minutes(1))
    layer = image.blobs[1]
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=backup.store.blob_key(layer.digest))
    for version in versions["Versions"]:  # moto has no Object Lock enforcement on delete
        s3.delete_object(
            Bucket=BUCKET,
            Key=version["Key"],
            VersionId=version["VersionId"],
            BypassGovernanceRetention=True,
        )
    target = FakeTarget()
    with pytest.raises(BlobNotFoundError, match=str(layer.digest)):
        run(backup, "app:v1", "registry.example.com/app", target)
    assert target.calls == [] and target.requests["HEAD blob"] == 0


def test_present_blobs_are_skipped_and_siblings_mounted(backup: Backup) -> None:
    base = backup.layer()
    first = backup.image("one", [base, backup.layer()])
    second = backup.image("two", [base, backup.layer()])
    backup.push("one", first, "v1", minutes(1))
    backup.push("two", second, "v1", minutes(2))
    target = FakeTarget()
    run(backup, "one:v1", "registry.example.com/one", target)
    # Restoring "two" next to "one": the shared layer is mounted, not uploaded.
    _, report = run(backup, "two:v1", "registry.example.com/two", target, mount_from=("one",))
    assert report.blobs_mounted == [second.blobs[1].digest]
    assert len(report.blobs_uploaded) == 2
    # Again: everything is there, nothing moves, the tag is already right.
    _, again = run(backup, "two:v1", "registry.example.com/two", target)
    assert again.blobs_uploaded == [] and again.manifests_pushed == []
    assert len(again.blobs_present) == 3 and again.tags_unchanged == ["v1"]


def test_large_blobs_go_in_chunks_of_the_chunk_size(backup: Backup) -> None:
    big = backup.layer(11 * MiB + 5)
    image = backup.image("app", [big])
    backup.push("app", image, "v1", minutes(1))
    target = FakeTarget()
    run(backup, "app:v1", "registry.example.com/app", target, chunk_size=5 * MiB)
    assert target.chunks.count(5 * MiB) == 2 and len(big) - 10 * MiB in target.chunks


def count_gets(s3: Any) -> Callable[[], int]:
    """A counter of the GetObject calls the bucket's client makes from now on."""
    calls: list[str] = []
    s3.meta.events.register("before-call.s3.GetObject", lambda **_: calls.append("get"))
    return lambda: len(calls)


def test_by_default_each_blob_goes_up_in_one_request(backup: Backup) -> None:
    big = backup.layer(11 * MiB + 5)
    image = backup.image("app", [big])
    backup.push("app", image, "v1", minutes(1))
    target = FakeTarget()
    run(backup, "app:v1", "registry.example.com/app", target)
    assert len(big) in target.chunks and 5 * MiB not in target.chunks


def test_an_interrupted_upload_starts_over_from_the_bucket_after_the_backoff(
    backup: Backup, s3: Any
) -> None:
    big = backup.layer(6 * MiB)
    image = backup.image("app", [big])
    backup.push("app", image, "v1", minutes(1))
    throttled = RegistryThrottledError("HTTP 429 (TOOMANYREQUESTS)", status=429, retry_after=1.0)
    dropped = RegistryError("PATCH failed: connection reset", retryable=True)
    layer = image.blobs[-1].digest
    target = FakeTarget(upload_errors={layer: [throttled, dropped]})
    slept: list[float] = []
    reads = count_gets(s3)
    _, report = run(backup, "app:v1", "registry.example.com/app", target, sleep=slept.append)
    assert target.upload_attempts[layer] == 3 and target.blobs["app"][layer] == big
    assert slept[0] == 1.0 and len(slept) == 2  # Retry-After first, then jittered backoff
    assert reads() >= 3  # every attempt read the bucket again (and was verified again)
    assert target.tags("app") == {"v1": image.digest} and layer in report.blobs_uploaded


def test_a_refused_upload_fails_at_once(backup: Backup) -> None:
    image = backup.image("app")
    backup.push("app", image, "v1", minutes(1))
    refused = RegistryError("HTTP 400 (BLOB_UPLOAD_INVALID)", code="BLOB_UPLOAD_INVALID")
    target = FakeTarget(upload_errors={image.blobs[-1].digest: [refused]})
    with pytest.raises(RegistryError, match="BLOB_UPLOAD_INVALID"):
        run(backup, "app:v1", "registry.example.com/app", target)
    assert max(target.upload_attempts.values()) == 1 and target.tags("app") == {}


def test_point_in_time_all_tags_and_removed_tags(backup: Backup) -> None:
    first, second = backup.image("app"), backup.image("app")
    backup.push("app", first, "v1", minutes(1))
    backup.push("app", second, "v1", minutes(5))
    backup.push("app", second, "v2", minutes(6))
    backup.delete("app", second, "v2", minutes(7))
    target = FakeTarget()
    run(backup, "app", "registry.example.com/app", target, all_tags=True, at=minutes(6))
    assert target.tags("app") == {"v1": second.digest, "v2": second.digest}
    target = FakeTarget()
    plan, _ = run(backup, "app", "registry.example.com/app", target, all_tags=True)
    assert target.tags("app") == {"v1": second.digest}
    assert [t.tag for t in plan.removed_tags] == ["v2"]
    target = FakeTarget()
    run(backup, "app:v1", "registry.example.com/app:restored", target, at=minutes(2))
    assert target.tags("app") == {"restored": first.digest}
    with pytest.raises(NotFoundError, match="no tags of app at 2026-01-01T00:00:00Z"):
        run(backup, "app", "registry.example.com/app", FakeTarget(), all_tags=True, at=minutes(0))
    with pytest.raises(InvalidInputError, match="without a tag"):
        run(backup, "app", "registry.example.com/app:x", FakeTarget(), all_tags=True)


def test_by_digest_needs_no_index_and_sets_no_tag(backup: Backup) -> None:
    image = backup.image("app")
    backup.push("app", image, "v1", minutes(1))
    catalog = Catalog(backup.store, None)
    target = FakeTarget()
    plan = plan_restore(
        catalog,
        RestoreRequest(ImageRef.parse(f"app@{image.digest}")),
        parse_target("registry.example.com/app"),
    )
    Restorer(catalog.reader, target, progress=ProgressRecorder()).run(plan)
    assert target.tags("app") == {}
    assert target.manifests["app"][str(image.digest)] == image.raw


def test_with_referrers_pushes_the_signature_after_its_subject(backup: Backup) -> None:
    image = backup.image("app")
    backup.push("app", image, "v1", minutes(1))
    signature = backup.signature("app", image)
    backup.push("app", signature, None, minutes(2))
    target = FakeTarget()
    plan, _ = run(backup, "app:v1", "registry.example.com/app", target, with_referrers=True)
    manifests = [c[2] for c in target.calls if c[0] == "manifest"]
    # Last, the referrers tag schema's index: this target has no referrers API.
    tag = f"sha256-{image.digest.hex}"
    assert manifests == [str(image.digest), str(signature.digest), "v1", tag]
    assert [r.digest for r in plan.referrers] == [signature.digest]


def test_dry_run_writes_nothing(backup: Backup) -> None:
    image = backup.image("app")
    backup.push("app", image, "v1", minutes(1))
    target = FakeTarget()
    _, report = run(backup, "app:v1", "registry.example.com/app", target, dry_run=True)
    assert target.calls == []
    assert report.dry_run and len(report.blobs_uploaded) == 3 and report.tags_set == ["v1"]


def test_tampered_blob_is_restored_from_its_intact_version(backup: Backup, s3: Any) -> None:
    image = backup.image("app")
    backup.push("app", image, "v1", minutes(1))
    layer = image.blobs[1]
    backup.tamper(s3, layer.digest, bytes(layer.size))
    target = FakeTarget()
    _, report = run(backup, "app:v1", "registry.example.com/app", target)
    assert target.blobs["app"][layer.digest] == backup.source.blobs[layer.digest]
    assert str(layer.digest) in report.recovered_versions


def test_target_repr() -> None:
    assert str(Target("https://h", "h", "r", "t")) == "h/r:t"


def test_a_blob_with_no_intact_version_fails_the_restore_untagged(backup: Backup, s3: Any) -> None:
    image = backup.image("app", [backup.layer(6 * MiB)])  # two chunks: the last one is held back
    backup.push("app", image, "v1", minutes(1))
    layer = image.blobs[1]
    original = s3.list_object_versions(Bucket=BUCKET, Prefix=backup.store.blob_key(layer.digest))
    backup.tamper(s3, layer.digest, bytes(layer.size))
    s3.delete_object(
        Bucket=BUCKET,
        Key=backup.store.blob_key(layer.digest),
        VersionId=original["Versions"][0]["VersionId"],
        BypassGovernanceRetention=True,
    )
    target = FakeTarget()
    with pytest.raises(DigestMismatchError, match=f"{layer.digest}.*no version"):
        run(backup, "app:v1", "registry.example.com/app", target)
    assert layer.digest not in target.blobs.get("app", {})
    assert target.manifests == {}
