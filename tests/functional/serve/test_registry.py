"""Conformance of `serve`'s application core with the distribution spec's pull side: every
endpoint, every error code and each pagination edge, on Request/Response values (no
sockets), over a backup made by the real engine under moto."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import bcrypt
import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from ecr_backup.catalog.catalog import Catalog
from ecr_backup.errors import DigestMismatchError, StorageError
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Manifest
from ecr_backup.serve.auth import Htpasswd
from ecr_backup.serve.contents import RepositoryContents
from ecr_backup.serve.messages import Request, Response
from ecr_backup.serve.registry import Registry, ServeOptions, byte_range, metrics_of
from ecr_backup.settings import SERVE_LISTING_TTL_SECONDS, MiB
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex
from ecr_backup.storage.ledger import Ledger
from ecr_backup.storage.provision import ensure_bucket
from tests.helpers import BUCKET, TABLE, Backup, minutes

SIGNATURE_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"


@dataclass
class Served:
    backup: Backup
    images: dict[str, Manifest]
    layers: dict[str, bytes]

    @property
    def store(self) -> S3BlobStore:
        assert isinstance(self.backup.store, S3BlobStore)  # the real one, under moto
        return self.backup.store

    def app(self, **options: Any) -> Registry:
        # A catalog of its own: no manifest or version a previous test read is cached.
        return Registry(Catalog(self.store, self.backup.index), self.store, ServeOptions(**options))


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """Built once for the module (moto is slow): app:v1 (moved to a second image at minute
    20), app:old (removed at minute 25), a signed multi-arch base:latest, a docker image
    in other/repo, tags a..e of one image in many, and in victims one image per test
    that tampers with or prunes the bucket."""
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        with mock_aws():
            # SigV4, as the composition root configures it: SSE-KMS objects need it.
            s3 = boto3.client("s3", config=Config(signature_version="s3v4"))
            ensure_bucket(s3, BUCKET, region="us-east-1", tls_only=False)
            store = S3BlobStore(BUCKET, "backup/", client=s3, part_size=5 * MiB)
            index = DynamoIndex(TABLE, client=boto3.client("dynamodb"))
            index.create_if_missing()
            yield _backup(Backup(store, index))
            store.close()


def _backup(backup: Backup) -> Served:
    layers = {name: backup.layer(3000) for name in ("v1", "tampered", "no_intact")}
    v1_first = backup.image("app")
    v1 = backup.image("app", [layers["v1"], backup.layer()])
    old = backup.image("app")
    backup.push("app", v1_first, "v1", minutes(10))
    backup.push("app", v1, "v1", minutes(20))
    backup.push("app", old, "old", minutes(5))
    backup.delete("app", old, "old", minutes(25))
    base = backup.multi_arch("base")
    backup.push("base", base, "latest", minutes(1))
    signature = backup.signature("base", base)
    backup.push("base", signature, None, minutes(2))
    docker = backup.image("other/repo", docker=True)
    backup.push("other/repo", docker, "1.0", minutes(3))
    many = backup.image("many")
    for tag in "edcba":
        backup.push("many", many, tag, minutes(4))
    images = {
        "v1_first": v1_first,
        "v1": v1,
        "old": old,
        "base": base,
        "signature": signature,
        "docker": docker,
    }
    for name in ("manifest", "tampered", "no_intact", "pruned"):
        layer = layers.get(name) or backup.layer()
        images[name] = backup.image("victims", [layer])
        backup.push("victims", images[name], name.replace("_", "-"), minutes(6))
    return Served(backup, images, layers)


def get(app: Registry, path: str, method: str = "GET", **headers: str) -> Response:
    return app.handle(Request.of(method, path, headers))


def error_code(response: Response) -> str:
    document = json.loads(response.body)
    code: str = document["errors"][0]["code"]
    assert document["errors"][0]["message"]
    return code


def body(response: Response) -> bytes:
    if response.stream is None:
        return response.body
    try:
        return b"".join(response.stream)
    finally:
        response.close()


# -- base and writes --------------------------------------------------------------------------


def test_base_answers_with_the_api_version(served: Served) -> None:
    response = get(served.app(), "/v2/")
    assert response.status == 200
    assert response.header("Docker-Distribution-API-Version") == "registry/2.0"
    assert get(served.app(), "/v2").status == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/app/blobs/uploads/"),
        ("PATCH", "/v2/app/blobs/uploads/1234"),
        ("PUT", "/v2/app/manifests/v1"),
        ("DELETE", "/v2/app/manifests/v1"),
        ("DELETE", "/v2/app/blobs/sha256:" + "0" * 64),
    ],
)
def test_every_write_is_unsupported(served: Served, method: str, path: str) -> None:
    response = get(served.app(), path, method)
    assert response.status == 405 and error_code(response) == "UNSUPPORTED"
    assert response.header("Allow") == "GET, HEAD"
    assert response.header("Docker-Distribution-API-Version") == "registry/2.0"


def test_an_unknown_path_is_not_found(served: Served) -> None:
    assert get(served.app(), "/v2/app/nothing/here").status == 404
    assert get(served.app(), "/other").status == 404


# -- manifests --------------------------------------------------------------------------------


def test_a_manifest_by_tag_is_the_stored_bytes_with_their_type_and_digest(served: Served) -> None:
    v1 = served.images["v1"]
    response = get(served.app(), "/v2/app/manifests/v1")
    assert response.status == 200 and response.body == v1.raw
    assert response.header("Content-Type") == v1.media_type
    assert response.header("Docker-Content-Digest") == str(v1.digest)
    assert response.header("Content-Length") == str(len(v1.raw))


def test_head_of_a_manifest_has_the_headers_and_no_body(served: Served) -> None:
    v1 = served.images["v1"]
    response = get(served.app(), "/v2/app/manifests/v1", "HEAD")
    assert response.status == 200 and response.body == b""
    assert response.header("Docker-Content-Digest") == str(v1.digest)
    assert response.header("Content-Length") == str(len(v1.raw))
    missing = get(served.app(), "/v2/app/manifests/nope", "HEAD")
    assert missing.status == 404 and missing.body == b""


def test_manifests_by_digest_include_an_index_children_and_docker_types(served: Served) -> None:
    app = served.app()
    base = served.images["base"]
    index = get(app, f"/v2/base/manifests/{base.digest}")
    assert index.status == 200 and index.body == base.raw
    for child in base.children:
        response = get(app, f"/v2/base/manifests/{child.digest}")
        assert response.status == 200 and Digest.of(response.body) == child.digest
        assert response.header("Content-Type") == child.media_type
    docker = get(app, "/v2/other/repo/manifests/1.0")
    assert docker.header("Content-Type") == served.images["docker"].media_type
    assert docker.body == served.images["docker"].raw


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v2/nope/manifests/v1", "NAME_UNKNOWN"),
        ("/v2/app/manifests/nope", "MANIFEST_UNKNOWN"),
        ("/v2/app/manifests/old", "MANIFEST_UNKNOWN"),  # removed at minute 25
        ("/v2/app/manifests/sha256:" + "0" * 64, "MANIFEST_UNKNOWN"),
        ("/v2/app/manifests/sha512:" + "0" * 128, "MANIFEST_UNKNOWN"),
        ("/v2/app/manifests/sha256:xyz", "DIGEST_INVALID"),
        ("/v2/app/manifests/not%20a%20tag", "MANIFEST_UNKNOWN"),
    ],
)
def test_manifest_errors(served: Served, path: str, code: str) -> None:
    response = get(served.app(), path)
    assert response.status == (400 if code == "DIGEST_INVALID" else 404)
    assert error_code(response) == code


def test_a_digest_is_served_only_through_a_repository_that_holds_it(served: Served) -> None:
    app = served.app()
    base = served.images["base"]
    response = get(app, f"/v2/app/manifests/{base.digest}")
    assert response.status == 404 and error_code(response) == "MANIFEST_UNKNOWN"
    blob = base.children[0].digest
    assert error_code(get(app, f"/v2/app/blobs/{blob}")) == "BLOB_UNKNOWN"


def test_at_serves_tags_as_they_were(served: Served) -> None:
    first, v1 = served.images["v1_first"], served.images["v1"]
    assert get(served.app(at=minutes(15)), "/v2/app/manifests/v1").body == first.raw
    assert get(served.app(at=minutes(20)), "/v2/app/manifests/v1").body == v1.raw
    old = served.images["old"]
    assert get(served.app(at=minutes(24)), "/v2/app/manifests/old").body == old.raw
    before = get(served.app(at=minutes(9)), "/v2/app/manifests/v1")
    assert before.status == 404 and error_code(before) == "MANIFEST_UNKNOWN"
    assert "at 2026-01-01T00:09:00Z" in json.loads(before.body)["errors"][0]["message"]
    tags = json.loads(get(served.app(at=minutes(9)), "/v2/app/tags/list").body)
    assert tags == {"name": "app", "tags": ["old"]}


def test_a_repository_prefix_hides_the_others(served: Served) -> None:
    app = served.app(repository_prefix="other/")
    assert json.loads(get(app, "/v2/_catalog").body) == {"repositories": ["other/repo"]}
    hidden = get(app, "/v2/app/manifests/v1")
    assert hidden.status == 404 and error_code(hidden) == "NAME_UNKNOWN"
    assert get(app, "/v2/other/repo/manifests/1.0").status == 200


def test_a_pruned_image_is_gone(served: Served) -> None:
    """What prune leaves: every version of the image's objects deleted, the image marked."""
    s3 = served.store._s3
    pruned = served.images["pruned"]
    for digest in [pruned.digest, *(b.digest for b in pruned.blobs)]:
        key = served.store.blob_key(digest)
        for version in s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]:
            s3.delete_object(
                Bucket=BUCKET,
                Key=key,
                VersionId=version["VersionId"],
                BypassGovernanceRetention=True,
            )
    ledger = Ledger(TABLE, client=boto3.client("dynamodb"))
    ledger.mark_pruned("victims", pruned.digest, minutes(30))
    app = served.app()
    assert error_code(get(app, "/v2/victims/manifests/pruned")) == "MANIFEST_UNKNOWN"
    assert error_code(get(app, f"/v2/victims/manifests/{pruned.digest}")) == "MANIFEST_UNKNOWN"
    assert error_code(get(app, f"/v2/victims/blobs/{pruned.blobs[1].digest}")) == "BLOB_UNKNOWN"


def test_a_tampered_manifest_is_served_from_its_intact_version(served: Served) -> None:
    image = served.images["manifest"]
    served.backup.tamper(
        served.store._s3, image.digest, image.raw.replace(b"schemaVersion", b"schemaversion")
    )
    response = get(served.app(), "/v2/victims/manifests/manifest")
    assert response.status == 200 and response.body == image.raw


# -- blobs ------------------------------------------------------------------------------------


def test_a_blob_redirects_to_a_presigned_get_of_its_object(served: Served) -> None:
    v1 = served.images["v1"]
    digest = v1.blobs[1].digest
    response = get(served.app(), f"/v2/app/blobs/{digest}")
    assert response.status == 307 and response.body == b""
    assert response.header("Docker-Content-Digest") == str(digest)
    location = urlsplit(response.header("Location") or "")
    assert location.path.endswith(served.store.blob_key(digest))
    query = parse_qs(location.query)
    assert "X-Amz-Signature" in query and query["X-Amz-Expires"] == ["900"]


def test_a_tampered_blob_redirects_to_the_version_that_hashes_to_its_digest(
    served: Served,
) -> None:
    s3, layer = served.store._s3, served.layers["tampered"]
    digest = Digest.of(layer)
    key = served.store.blob_key(digest)
    original = s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"][0]["VersionId"]
    served.backup.tamper(s3, digest, b"x" * len(layer))
    response = get(served.app(), f"/v2/victims/blobs/{digest}")
    assert response.status == 307
    assert parse_qs(urlsplit(response.header("Location") or "").query)["versionId"] == [original]
    streamed = get(served.app(blobs="stream"), f"/v2/victims/blobs/{digest}")
    assert body(streamed) == layer


def test_a_blob_with_no_intact_version_is_refused(served: Served) -> None:
    s3, layer = served.store._s3, served.layers["no_intact"]
    digest = Digest.of(layer)
    key = served.store.blob_key(digest)
    original = s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"][0]["VersionId"]
    served.backup.tamper(s3, digest, b"x" * len(layer))
    s3.delete_object(Bucket=BUCKET, Key=key, VersionId=original, BypassGovernanceRetention=True)
    # One version left: the reader trusts a single version (the backup writes each object
    # once) and checks it while it streams, so the stream fails before its end, and the
    # server cuts the connection. A redirected client checks the digest itself.
    streamed = get(served.app(blobs="stream"), f"/v2/victims/blobs/{digest}")
    assert streamed.status == 200
    with pytest.raises(DigestMismatchError):
        body(streamed)
    # Several versions, none intact: refused before a byte is sent.
    served.backup.tamper(s3, digest, b"y" * len(layer))
    for mode in ("redirect", "stream"):
        response = get(served.app(blobs=mode), f"/v2/victims/blobs/{digest}")
        assert response.status == 403 and error_code(response) == "DENIED"
        assert response.stream is None


def test_head_of_a_blob_gives_its_size_without_redirecting(served: Served) -> None:
    layer = served.layers["v1"]
    digest = Digest.of(layer)
    for mode in ("redirect", "stream"):
        response = get(served.app(blobs=mode), f"/v2/app/blobs/{digest}", "HEAD")
        assert response.status == 200 and response.body == b"" and response.stream is None
        assert response.header("Content-Length") == str(len(layer))
        assert response.header("Docker-Content-Digest") == str(digest)
    assert (
        get(served.app(blobs="stream"), f"/v2/app/blobs/{digest}", "HEAD").header("Accept-Ranges")
        == "bytes"
    )


def test_streamed_blobs_and_ranges(served: Served) -> None:
    app = served.app(blobs="stream")
    layer = served.layers["v1"]
    digest = Digest.of(layer)
    path = f"/v2/app/blobs/{digest}"
    whole = get(app, path)
    assert whole.status == 200 and body(whole) == layer
    assert whole.header("Content-Length") == str(len(layer))
    part = get(app, path, Range="bytes=10-19")
    assert part.status == 206 and body(part) == layer[10:20]
    assert part.header("Content-Range") == f"bytes 10-19/{len(layer)}"
    assert part.header("Content-Length") == "10"
    assert body(get(app, path, Range="bytes=-5")) == layer[-5:]
    assert body(get(app, path, Range="bytes=2990-")) == layer[2990:]
    assert body(get(app, path, Range=f"bytes=0-{10 * len(layer)}")) == layer
    unsatisfiable = get(app, path, Range=f"bytes={len(layer)}-")
    assert unsatisfiable.status == 416
    assert unsatisfiable.header("Content-Range") == f"bytes */{len(layer)}"
    several = get(app, path, Range="bytes=0-1,5-6")
    assert several.status == 200 and body(several) == layer


def test_a_manifest_is_also_a_blob(served: Served) -> None:
    v1 = served.images["v1"]
    response = get(served.app(blobs="stream"), f"/v2/app/blobs/{v1.digest}")
    assert body(response) == v1.raw


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v2/nope/blobs/sha256:" + "0" * 64, 404, "NAME_UNKNOWN"),
        ("/v2/app/blobs/sha256:" + "0" * 64, 404, "BLOB_UNKNOWN"),
        ("/v2/app/blobs/sha512:" + "0" * 128, 404, "BLOB_UNKNOWN"),
        ("/v2/app/blobs/sha256:ABC", 400, "DIGEST_INVALID"),
        ("/v2/app/blobs/nodigest", 400, "DIGEST_INVALID"),
    ],
)
def test_blob_errors(served: Served, path: str, status: int, code: str) -> None:
    response = get(served.app(), path)
    assert response.status == status and error_code(response) == code


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-0", (0, 0)),
        ("bytes=5-", (5, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-1000", (0, 99)),
        ("bytes=50-20", None),
        ("bytes=-", None),
        ("items=0-5", None),
    ],
)
def test_byte_ranges(header: str | None, expected: tuple[int, int] | None) -> None:
    assert byte_range(header, 100) == expected


# -- tags and catalog -------------------------------------------------------------------------


def test_tags_list_has_live_tags_in_lexical_order(served: Served) -> None:
    response = get(served.app(), "/v2/app/tags/list")
    assert response.status == 200 and response.header("Content-Type") == "application/json"
    assert json.loads(response.body) == {"name": "app", "tags": ["v1"]}
    assert json.loads(get(served.app(), "/v2/many/tags/list").body)["tags"] == list("abcde")
    missing = get(served.app(), "/v2/nope/tags/list")
    assert missing.status == 404 and error_code(missing) == "NAME_UNKNOWN"


@pytest.mark.parametrize(
    ("query", "tags", "link"),
    [
        ("", list("abcde"), None),
        ("?n=2", ["a", "b"], '</v2/many/tags/list?n=2&last=b>; rel="next"'),
        ("?n=2&last=b", ["c", "d"], '</v2/many/tags/list?n=2&last=d>; rel="next"'),
        ("?n=2&last=d", ["e"], None),
        ("?n=5", list("abcde"), None),
        ("?n=10", list("abcde"), None),
        ("?n=0", [], None),
        ("?last=c", ["d", "e"], None),
        ("?last=e", [], None),
        ("?last=0", list("abcde"), None),
        ("?n=3&last=zzz", [], None),
    ],
)
def test_tags_list_pagination(
    served: Served, query: str, tags: list[str], link: str | None
) -> None:
    response = get(served.app(), f"/v2/many/tags/list{query}")
    assert response.status == 200
    assert json.loads(response.body) == {"name": "many", "tags": tags}
    assert response.header("Link") == link


def test_following_links_lists_every_tag_once(served: Served) -> None:
    seen: list[str] = []
    path: str | None = "/v2/many/tags/list?n=2"
    while path:
        response = get(served.app(), path)
        seen += json.loads(response.body)["tags"]
        link = response.header("Link")
        path = link[1 : link.index(">")] if link else None
    assert seen == list("abcde")


@pytest.mark.parametrize("n", ["-1", "x", "1.5"])
def test_a_bad_page_size_is_refused(served: Served, n: str) -> None:
    for path in ("/v2/many/tags/list", "/v2/_catalog"):
        response = get(served.app(), f"{path}?n={n}")
        assert response.status == 400 and error_code(response) == "PAGINATION_NUMBER_INVALID"


def test_catalog_lists_repositories_with_pagination(served: Served) -> None:
    everything = ["app", "base", "many", "other/repo", "victims"]
    assert json.loads(get(served.app(), "/v2/_catalog").body) == {"repositories": everything}
    first = get(served.app(), "/v2/_catalog?n=3")
    assert json.loads(first.body)["repositories"] == everything[:3]
    assert first.header("Link") == '</v2/_catalog?n=3&last=many>; rel="next"'
    rest = get(served.app(), "/v2/_catalog?n=3&last=many")
    assert json.loads(rest.body)["repositories"] == ["other/repo", "victims"]
    assert rest.header("Link") is None


def test_a_link_escapes_the_last_name(served: Served) -> None:
    response = get(served.app(), "/v2/_catalog?n=1&last=many")
    assert response.header("Link") == '</v2/_catalog?n=1&last=other%2Frepo>; rel="next"'


# -- referrers --------------------------------------------------------------------------------


def test_referrers_list_the_subject_artifacts(served: Served) -> None:
    base, signature = served.images["base"], served.images["signature"]
    response = get(served.app(), f"/v2/base/referrers/{base.digest}")
    assert response.status == 200
    assert response.header("Content-Type") == "application/vnd.oci.image.index.v1+json"
    assert response.header("OCI-Filters-Applied") is None
    assert json.loads(response.body) == {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": signature.media_type,
                "digest": str(signature.digest),
                "size": signature.size,
                "artifactType": SIGNATURE_TYPE,
            }
        ],
    }


def test_referrers_filter_by_artifact_type(served: Served) -> None:
    base = served.images["base"]
    path = f"/v2/base/referrers/{base.digest}?artifactType="
    matching = get(served.app(), path + quote(SIGNATURE_TYPE, safe=""))
    assert len(json.loads(matching.body)["manifests"]) == 1
    assert matching.header("OCI-Filters-Applied") == "artifactType"
    other = get(served.app(), path + "application/spdx%2Bjson")
    assert json.loads(other.body)["manifests"] == []
    assert other.header("OCI-Filters-Applied") == "artifactType"


def test_referrers_of_an_unknown_subject_are_an_empty_index(served: Served) -> None:
    response = get(served.app(), "/v2/base/referrers/sha256:" + "1" * 64)
    assert response.status == 200 and json.loads(response.body)["manifests"] == []
    bad = get(served.app(), "/v2/base/referrers/sha256:zz")
    assert bad.status == 400 and error_code(bad) == "DIGEST_INVALID"
    unknown = get(served.app(), "/v2/nope/referrers/sha256:" + "1" * 64)
    assert unknown.status == 404 and error_code(unknown) == "NAME_UNKNOWN"


# -- authentication ---------------------------------------------------------------------------


@pytest.fixture
def users() -> Htpasswd:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    return Htpasswd.parse(f"# users\nalice:{hashed.replace('$2b$', '$2y$', 1)}\n")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "path", ["/v2/", "/v2/_catalog", "/v2/app/manifests/v1", "/v2/app/tags/list"]
)
def test_every_path_asks_for_credentials(served: Served, users: Htpasswd, path: str) -> None:
    app = served.app(htpasswd=users)
    for authorization in (None, basic("alice", "wrong"), basic("bob", "s3cret"), "Bearer x"):
        headers = {"Authorization": authorization} if authorization else {}
        response = get(app, path, **headers)
        assert response.status == 401 and error_code(response) == "UNAUTHORIZED"
        assert response.header("WWW-Authenticate") == 'Basic realm="ecr-backup"'
    assert get(app, path, Authorization=basic("alice", "s3cret")).status == 200


def test_htpasswd_takes_only_bcrypt() -> None:
    with pytest.raises(ValueError, match="line 2: bob's password is not a bcrypt hash"):
        Htpasswd.parse("alice:$2y$05$abcdefghijklmnopqrstuu\nbob:{SHA}abc=\n")
    with pytest.raises(ValueError, match="names no users"):
        Htpasswd.parse("# nobody\n")
    with pytest.raises(ValueError, match="line 1: expected USER:HASH"):
        Htpasswd.parse("alice\n")


# -- metrics ----------------------------------------------------------------------------------


def test_metrics_count_pulls_manifests_redirects_and_errors(served: Served) -> None:
    app = served.app()
    v1 = served.images["v1"]

    def counted(path: str, method: str = "GET") -> list[str]:
        request = Request.of(method, path)
        names = metrics_of(request, app.handle(request))
        assert names[0] == "Requests"
        return names[1:]

    assert counted("/v2/app/manifests/v1") == ["ManifestsServed", "Pulls"]
    assert counted("/v2/app/manifests/v1", "HEAD") == ["Pulls"]
    assert counted(f"/v2/app/manifests/{v1.digest}") == ["ManifestsServed"]
    assert counted(f"/v2/app/blobs/{v1.blobs[0].digest}") == ["Redirects"]
    assert counted("/v2/app/manifests/nope") == ["ClientErrors"]
    assert metrics_of(Request.of("GET", "/v2/"), Response(503)) == ["Requests", "ServerErrors"]


def test_a_storage_failure_is_a_server_error(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail() -> list[str]:
        raise StorageError("GET failed", code="InternalError")

    app = served.app()
    monkeypatch.setattr(app.catalog, "repositories", fail)
    response = get(app, "/v2/_catalog")
    assert response.status == 500 and error_code(response) == "UNKNOWN"


def test_the_bucket_alone_serves_the_same(served: Served) -> None:
    """--from-bucket: tags and referrers from the push records, not the index."""
    app = Registry(Catalog(served.store, None), served.store, ServeOptions(at=minutes(15)))
    assert get(app, "/v2/app/manifests/v1").body == served.images["v1_first"].raw
    assert json.loads(get(app, "/v2/app/tags/list").body)["tags"] == ["old", "v1"]
    base = served.images["base"]
    referrers = json.loads(get(app, f"/v2/base/referrers/{base.digest}").body)["manifests"]
    assert [r["digest"] for r in referrers] == [str(served.images["signature"].digest)]


def test_new_backups_appear_once_the_image_list_is_read_again(served: Served) -> None:
    now = [0.0]
    contents = RepositoryContents(Catalog(served.store, served.backup.index), clock=lambda: now[0])
    assert contents.manifest_size("victims", served.images["manifest"].digest) is not None
    late = served.backup.image("victims")
    served.backup.push("victims", late, None, minutes(40))  # untagged: no tag list changes
    assert contents.manifest_size("victims", late.digest) is None  # the list read at 0 s
    now[0] = SERVE_LISTING_TTL_SECONDS
    assert contents.manifest_size("victims", late.digest) == late.size
    assert contents.blob_size("victims", late.blobs[1].digest) == late.blobs[1].size
