"""The devkit itself works: servers, image building, pushing, redirects, logs."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import urllib3
from botocore.config import Config
from botocore.exceptions import ClientError

from devkit import (
    EcrRegistry,
    LocalRegistry,
    MotoServer,
    OciLayoutBuilder,
    TokenServer,
    ecr_password_from_moto,
    http_push,
    http_push_manifest,
    random_layer,
    sha256_digest,
    skopeo_inspect_raw,
    skopeo_push,
    write_random_layer,
)
from devkit.images import COSIGN_SIGNATURE_ARTIFACT, OCI_INDEX
from devkit.moto_server import generated_chunks, generated_digest
from devkit.servers import local_client

MiB = 1024 * 1024

pytestmark = pytest.mark.integration

BLOB_GET = r"^/v2/.+/blobs/sha256:[0-9a-f]{64}$"


def get(url: str, headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
    # No redirect following: tests look at the 307 themselves.
    return urllib3.request("GET", url, headers=headers, redirect=False, retries=False)


def assert_served_as_built(registry: EcrRegistry, repo: str, ref: str, digest: str) -> None:
    raw = skopeo_inspect_raw(registry, repo, ref)
    assert sha256_digest(raw) == digest


# --- servers ------------------------------------------------------------------------


def test_moto_ecr_password_is_stable(moto_server: MotoServer) -> None:
    # The library caches this token; moto derives it from the registry id only.
    assert ecr_password_from_moto(moto_server) == ecr_password_from_moto(moto_server)
    assert ecr_password_from_moto(moto_server) == "123456789012-auth-token"
    assert ecr_password_from_moto(moto_server, "111122223333") == "111122223333-auth-token"


def test_registry_requires_basic_auth(registry: EcrRegistry) -> None:
    anonymous = get(f"{registry.url}/v2/")
    assert anonymous.status == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic ")
    wrong = urllib3.make_headers(basic_auth="AWS:wrong")
    assert get(f"{registry.url}/v2/", wrong).status == 401
    assert get(f"{registry.url}/v2/", registry.auth_headers).status == 200


def test_registry_stores_blobs_in_moto_s3(
    registry: EcrRegistry, oci_images: OciLayoutBuilder
) -> None:
    image = oci_images.simple_image(seed=100)
    skopeo_push(oci_images.path, image.ref, registry, "devkit/s3", "v1")
    s3 = registry.storage.client("s3")
    for blob in image.blobs:
        stored = s3.get_object(
            Bucket=registry.storage_bucket, Key=registry.blob_data_key(blob.digest)
        )
        assert stored["Body"].read() == oci_images.read_blob(blob.digest)


def test_servers_are_stopped_on_exit() -> None:
    with MotoServer() as moto, LocalRegistry(moto, password="pw") as reg:
        processes = [moto.process, reg.process]
        ports = [moto.port, reg.port]
        assert all(p is not None and p.poll() is None for p in processes)
        log_dir = reg.log_path.parent
    assert all(p is not None and p.poll() is not None for p in processes)
    for port in ports:
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
            pass
    assert not log_dir.exists()


def deleted_open_files(pid: int) -> int:
    """How many files the process holds open that are already deleted (temporary files)."""
    fds = Path(f"/proc/{pid}/fd")
    return sum(1 for fd in fds.iterdir() if "(deleted)" in str(fd.readlink()))


def test_moto_listing_versions_leaves_no_temporary_files(moto_server: MotoServer) -> None:
    # Plain moto 5 copies every stored version into a new temporary file on each
    # ListObjectVersions and never frees the copies (devkit/moto_server.py says why).
    s3 = moto_server.client("s3")
    bucket = f"devkit-versions-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    big = os.urandom(8 * MiB)  # above moto's in-memory threshold: on disk
    for body in (big, big[::-1]):
        s3.put_object(Bucket=bucket, Key="blobs/big", Body=body)
    assert moto_server.process is not None
    before = deleted_open_files(moto_server.process.pid)
    for _ in range(5):
        listed = s3.list_object_versions(Bucket=bucket, Prefix="blobs/")
        assert [v["Size"] for v in listed["Versions"]] == [8 * MiB, 8 * MiB]
        assert [v["IsLatest"] for v in listed["Versions"]] == [True, False]
    assert deleted_open_files(moto_server.process.pid) == before
    # The listed versions still read back whole, both of them.
    versions = [v["VersionId"] for v in listed["Versions"]]
    bodies = [
        s3.get_object(Bucket=bucket, Key="blobs/big", VersionId=v)["Body"].read() for v in versions
    ]
    assert bodies == [big[::-1], big]


def test_moto_generated_object_serves_its_bytes(moto_server: MotoServer) -> None:
    s3 = moto_server.client("s3")
    bucket = f"devkit-generated-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    size = 3 * MiB + 5  # not a whole number of the generator's blocks
    moto_server.put_generated(bucket, "layer", size, seed=9)
    digest = generated_digest(size, seed=9)
    data = s3.get_object(Bucket=bucket, Key="layer")["Body"].read()
    assert len(data) == size == s3.head_object(Bucket=bucket, Key="layer")["ContentLength"]
    assert sha256_digest(data) == digest
    assert data == b"".join(generated_chunks(size, seed=9))
    ranged = s3.get_object(Bucket=bucket, Key="layer", Range=f"bytes={MiB - 2}-{MiB + 1}")
    assert ranged["Body"].read() == data[MiB - 2 : MiB + 2]


# --- images -------------------------------------------------------------------------


def test_token_server_answers_both_grants_and_is_strict_about_client_id() -> None:
    with TokenServer(password="pw") as tokens:
        scope = "repository:a/b:pull,push"
        refresh = tokens.identity_token()
        ok, document = tokens.answer(
            "POST",
            "",
            f"grant_type=refresh_token&refresh_token={refresh}&client_id=t&scope={scope}",
            "",
        )
        assert ok == 200 and document["expires_in"] > 0
        claims = json.loads(_b64url_decode(document["access_token"].split(".")[1]))
        assert claims["access"] == [
            {"type": "repository", "name": "a/b", "actions": ["pull", "push"]}
        ]
        assert claims["aud"] == tokens.service and claims["iss"] == tokens.issuer
        no_client, _ = tokens.answer(
            "POST", "", f"grant_type=refresh_token&refresh_token={refresh}", ""
        )
        assert no_client == 400  # the spec makes client_id REQUIRED
        unknown, _ = tokens.answer(
            "POST", "", "grant_type=refresh_token&refresh_token=x&client_id=t", ""
        )
        assert unknown == 401
        offline, document = tokens.answer(
            "POST",
            "",
            "grant_type=password&username=tokenuser&password=pw&client_id=t&access_type=offline",
            "",
        )
        assert offline == 200 and document["refresh_token"]
        basic = "Basic " + base64.b64encode(b"tokenuser:wrong").decode()
        assert tokens.answer("GET", f"scope={scope}", "", basic)[0] == 401


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_random_layer_is_a_deterministic_gzipped_tar(tmp_path: Path) -> None:
    layer = random_layer(10_000, seed=5)
    assert layer == random_layer(10_000, seed=5)
    assert layer != random_layer(10_000, seed=6)
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r:gz") as tar:
        (member,) = tar.getmembers()
        assert member.size == 10_000
    # Streaming to disk produces the same bytes.
    digest, size = write_random_layer(tmp_path / "layer", 10_000, seed=5)
    assert (digest, size) == (sha256_digest(layer), len(layer))
    assert gzip.decompress(layer)  # valid gzip all the way through


def test_skopeo_push_keeps_the_built_digest(
    registry: EcrRegistry, oci_images: OciLayoutBuilder
) -> None:
    image = oci_images.simple_image(seed=200, n_layers=3)
    pushed = skopeo_push(oci_images.path, image.ref, registry, "devkit/single", "v1")
    assert pushed == image.digest
    assert skopeo_inspect_raw(registry, "devkit/single", "v1") == image.manifest
    assert_served_as_built(registry, "devkit/single", image.digest, image.digest)


def test_images_sharing_base_layers(registry: EcrRegistry, oci_images: OciLayoutBuilder) -> None:
    base = oci_images.simple_image(seed=300)
    derived = oci_images.extend(base, seed=310)
    assert derived.layers[:2] == base.layers
    for image, tag in ((base, "base"), (derived, "derived")):
        assert (
            skopeo_push(oci_images.path, image.ref, registry, "devkit/shared", tag) == image.digest
        )
        assert_served_as_built(registry, "devkit/shared", tag, image.digest)


def test_multi_arch_index_keeps_its_digest(
    registry: EcrRegistry, oci_images: OciLayoutBuilder
) -> None:
    index = oci_images.multi_arch_image(seed=400)
    assert [c.platform for c in index.children] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux"},
    ]
    assert skopeo_push(oci_images.path, index.ref, registry, "devkit/multi", "v1") == index.digest
    raw = skopeo_inspect_raw(registry, "devkit/multi", "v1")
    assert sha256_digest(raw) == index.digest
    assert json.loads(raw)["mediaType"] == OCI_INDEX
    for child in index.children:
        assert_served_as_built(registry, "devkit/multi", child.digest, child.digest)


def test_docker_schema2_image_and_list_via_http_push(
    registry: EcrRegistry, oci_images: OciLayoutBuilder
) -> None:
    image = oci_images.simple_image(seed=500, docker=True)
    manifest_list = oci_images.index([image], docker=True)
    with pytest.raises(ValueError, match="http_push"):
        skopeo_push(oci_images.path, image.ref, registry, "devkit/docker", "v1")
    assert (
        http_push(oci_images, manifest_list, registry, "devkit/docker", "list")
        == manifest_list.digest
    )
    assert_served_as_built(registry, "devkit/docker", "list", manifest_list.digest)
    assert_served_as_built(registry, "devkit/docker", image.digest, image.digest)


def test_artifact_with_subject(registry: EcrRegistry, oci_images: OciLayoutBuilder) -> None:
    image = oci_images.simple_image(seed=600)
    signature = oci_images.artifact(image)
    assert signature.subject is not None and signature.subject.digest == image.digest
    skopeo_push(oci_images.path, image.ref, registry, "devkit/signed", "v1")
    # distribution 2.8 stores the manifest verbatim (subject and artifactType
    # included) though it has no referrers API.
    tag = "sha256-" + image.digest.removeprefix("sha256:") + ".sig"
    assert (
        skopeo_push(oci_images.path, signature.ref, registry, "devkit/signed", tag)
        == signature.digest
    )
    served = json.loads(skopeo_inspect_raw(registry, "devkit/signed", tag))
    assert served["subject"]["digest"] == image.digest
    assert served["artifactType"] == COSIGN_SIGNATURE_ARTIFACT
    # Same artifact through the plain HTTP API.
    blobs = {b.digest: oci_images.read_blob(b.digest) for b in signature.blobs}
    http_push_manifest(
        registry,
        "devkit/signed-http",
        image.digest,
        image.manifest,
        image.media_type,
        {b.digest: oci_images.read_blob(b.digest) for b in image.blobs},
    )
    pushed = http_push_manifest(
        registry, "devkit/signed-http", tag, signature.manifest, signature.media_type, blobs
    )
    assert pushed == signature.digest


# --- blob redirects, request log, corruption ------------------------------------------


def test_blob_get_redirects_to_presigned_moto_url(
    registry: EcrRegistry, oci_images: OciLayoutBuilder
) -> None:
    image = oci_images.simple_image(seed=700)
    skopeo_push(oci_images.path, image.ref, registry, "devkit/redirect", "v1")
    layer = image.layers[0].descriptor
    url = f"{registry.url}/v2/devkit/redirect/blobs/{layer.digest}"
    path = f"^/v2/devkit/redirect/blobs/{layer.digest}$"
    assert registry.count_requests("GET", path) == 0

    response = get(url, registry.auth_headers)
    assert response.status == 307
    location = response.headers["Location"]
    assert location.startswith(f"{registry.storage.endpoint}/{registry.storage_bucket}/")
    assert "X-Amz-Signature=" in location
    # The presigned URL needs no registry credentials, like ECR's S3 redirect.
    fetched = get(location)
    assert fetched.status == 200
    assert fetched.data == oci_images.read_blob(layer.digest)

    assert registry.wait_for_request_count("GET", path, 1, status=307) == 1
    get(url, registry.auth_headers)
    assert registry.wait_for_request_count("GET", path, 2) == 2
    assert registry.count_requests("GET", BLOB_GET) >= 2


def test_corrupted_blob_is_served_corrupted(
    registry: EcrRegistry, oci_images: OciLayoutBuilder
) -> None:
    image = oci_images.simple_image(seed=800, layer_size=2048)
    skopeo_push(oci_images.path, image.ref, registry, "devkit/corrupt", "v1")
    layer = image.layers[1].descriptor
    original = oci_images.read_blob(layer.digest)
    corrupted = bytes([original[0] ^ 0xFF]) + original[1:]  # same size, wrong digest
    registry.overwrite_blob_data(layer.digest, corrupted)

    response = get(f"{registry.url}/v2/devkit/corrupt/blobs/{layer.digest}", registry.auth_headers)
    assert response.status == 307
    served = get(response.headers["Location"]).data
    assert served == corrupted
    assert hashlib.sha256(served).hexdigest() != layer.digest.removeprefix("sha256:")


def test_registry_without_redirect_serves_blobs_itself(
    registry_storage: MotoServer, oci_images: OciLayoutBuilder
) -> None:
    image = oci_images.simple_image(seed=900, n_layers=1)
    with LocalRegistry(registry_storage, redirect=False) as plain:
        skopeo_push(oci_images.path, image.ref, plain, "devkit/plain", "v1")
        layer = image.layers[0].descriptor
        response = get(f"{plain.url}/v2/devkit/plain/blobs/{layer.digest}")
        assert response.status == 200
        assert response.data == oci_images.read_blob(layer.digest)


# --- the ECR-faithful proxy ------------------------------------------------------------


def _send(
    registry: EcrRegistry, method: str, path: str, body: bytes = b"", **headers: str
) -> urllib3.BaseHTTPResponse:
    url = path if path.startswith("http") else f"{registry.url}{path}"
    return urllib3.request(
        method,
        url,
        body=body,
        headers={**registry.auth_headers, **headers},
        redirect=False,
        retries=False,
    )


def _codes(response: urllib3.BaseHTTPResponse) -> list[str]:
    return [e["code"] for e in json.loads(response.data)["errors"]]


def test_proxy_answers_patches_like_ecr_and_each_quirk_switches_off(
    registry: EcrRegistry,
) -> None:
    registry.ensure_repository("devkit/quirks")
    five_mib = b"x" * (5 * 1024 * 1024)

    def session() -> str:
        start = _send(registry, "POST", "/v2/devkit/quirks/blobs/uploads/")
        assert start.status == 202
        return str(start.headers["Location"])

    first = _send(registry, "PATCH", session(), five_mib)
    assert first.status == 201  # ECR's answer, not the spec's 202
    accepted = _send(registry, "PATCH", session(), five_mib)
    dropped = _send(registry, "PATCH", accepted.headers["Location"], five_mib)
    assert dropped.status == 201 and dropped.headers["Range"] == f"0-{len(five_mib) - 1}"
    tiny = _send(registry, "PATCH", session(), b"tiny")
    refused = _send(registry, "PATCH", tiny.headers["Location"], five_mib)
    assert refused.status == 400 and _codes(refused) == ["BLOB_UPLOAD_INVALID"]
    with registry.quirks_changed(patch_answers_201=False, drop_later_patches=False):
        spec = _send(registry, "PATCH", session(), five_mib)
        assert spec.status == 202
        second = _send(registry, "PATCH", spec.headers["Location"], five_mib)
        assert second.status == 202 and second.headers["Range"] == f"0-{2 * len(five_mib) - 1}"


def test_proxy_refuses_what_ecr_refuses(registry: EcrRegistry) -> None:
    unknown = _send(registry, "POST", "/v2/devkit/never-created/blobs/uploads/")
    assert unknown.status == 404 and _codes(unknown) == ["NAME_UNKNOWN"]
    with registry.quirks_changed(known_repositories_only=False):
        assert _send(registry, "POST", "/v2/devkit/never-created/blobs/uploads/").status == 202
    registry.ensure_repository("devkit/refusals")
    digest = sha256_digest(b"{}")
    mount = _send(registry, "POST", f"/v2/devkit/refusals/blobs/uploads/?mount={digest}&from=x")
    assert mount.status == 202  # BLOB_MOUNTING off: an upload session instead
    big = b"{" + b" " * (4 * 1024 * 1024) + b"}"
    manifest = _send(
        registry,
        "PUT",
        "/v2/devkit/refusals/manifests/v1",
        big,
        **{"Content-Type": OCI_INDEX},
    )
    assert manifest.status == 400 and _codes(manifest) == ["MANIFEST_INVALID"]
    with registry.quirks_changed(throttle_every=2, retry_after_s=7):
        answers = [_send(registry, "GET", "/v2/") for _ in range(4)]
    throttled = [a for a in answers if a.status == 429]
    assert len(throttled) == 2 and throttled[0].headers["Retry-After"] == "7"
    assert _codes(throttled[0]) == ["TOOMANYREQUESTS"]


def _api_outcomes(registry: EcrRegistry, calls: int, action: str) -> list[str]:
    """Each call's outcome, with botocore's retries off: "ok" or "<code> <status>"."""
    ecr = registry.api_client(Config(retries={"mode": "standard", "total_max_attempts": 1}))
    outcomes = []
    for _ in range(calls):
        try:
            getattr(ecr, action)()
            outcomes.append("ok")
        except ClientError as e:
            status = e.response["ResponseMetadata"]["HTTPStatusCode"]
            outcomes.append(f"{e.response['Error']['Code']} {status}")
    return outcomes


def test_proxy_throttles_ecrs_api_as_ecr_does(registry: EcrRegistry) -> None:
    """ECR's API answers ThrottlingException with HTTP 400 (its JSON protocol), unlike the
    registry's 429; GetAuthorizationToken has a token bucket of its own."""
    before = registry.api_throttled
    with registry.quirks_changed(api_throttle_every=2):
        outcomes = _api_outcomes(registry, 4, "describe_repositories")
    assert outcomes == ["ok", "ThrottlingException 400"] * 2
    with registry.quirks_changed(token_api_per_second=0.001, token_api_burst=2):
        tokens = _api_outcomes(registry, 3, "get_authorization_token")
    assert tokens == ["ok", "ok", "ThrottlingException 400"]
    assert registry.api_throttled == before + 3
    # Back to the documented throttle: 20 a second refill the bucket the block emptied.
    time.sleep(0.2)
    assert _api_outcomes(registry, 3, "get_authorization_token") == ["ok"] * 3


def test_proxy_tokens_expire(registry: EcrRegistry) -> None:
    with registry.quirks_changed(token_lifetime_s=0.5):
        headers = registry.auth_headers
        assert get(f"{registry.url}/v2/", headers).status == 200
        time.sleep(0.7)
        stale = get(f"{registry.url}/v2/", headers)
    assert stale.status == 403 and _codes(stale) == ["DENIED"]
    assert get(f"{registry.url}/v2/", registry.auth_headers).status == 200


# --- the proxy keeps ECR's API in agreement, and answers the referrers API --------------


def ecr_images(registry: EcrRegistry, repository: str) -> dict[str, dict[str, Any]]:
    ecr = registry.aws.client("ecr")
    details = ecr.describe_images(repositoryName=repository)["imageDetails"]
    return {d["imageDigest"]: d for d in details}


def layers_size(built: Any) -> int:
    return sum(layer.descriptor.size for layer in built.layers)


def test_every_push_through_the_proxy_is_registered_with_ecrs_api(
    registry: EcrRegistry, oci_images: OciLayoutBuilder
) -> None:
    # skopeo itself, not a devkit helper that would register by hand.
    index = oci_images.multi_arch_image(ref="multi", layer_size=70_000, seed=1310)
    registry.ensure_repository("devkit/registered")
    password = registry.password
    run = subprocess.run(
        [
            "skopeo", "copy", "--quiet", "--all", "--preserve-digests",
            "--dest-tls-verify=false", "--dest-creds", f"AWS:{password}",
            f"oci:{oci_images.path}:multi", f"docker://{registry.host}/devkit/registered:v1",
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    images = ecr_images(registry, "devkit/registered")
    assert set(images) == {index.digest, *(c.digest for c in index.children)}
    assert images[index.digest]["imageTags"] == ["v1"]
    # ECR's size: the compressed layers; for an index, its largest image.
    for child in index.children:
        assert images[child.digest]["imageSizeInBytes"] == layers_size(child)
    largest = max(layers_size(child) for child in index.children)
    assert images[index.digest]["imageSizeInBytes"] == largest

    # A manifest deleted through the registry API leaves ECR's listing.
    gone = index.children[0].digest
    deleted = urllib3.request(
        "DELETE",
        f"{registry.url}/v2/devkit/registered/manifests/{gone}",
        headers=registry.auth_headers,
        retries=False,
    )
    assert deleted.status == 202
    assert gone not in ecr_images(registry, "devkit/registered")


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
def test_a_podman_push_is_registered_with_its_digest_and_size(
    registry: EcrRegistry,
    oci_images: OciLayoutBuilder,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    oci_images.simple_image(ref="pod", n_layers=2, layer_size=20_000, seed=1340)
    registry.ensure_repository("devkit/podman")
    # podman pushes from its own storage: a throwaway one, not the machine's (its runroot
    # must be a short path).
    runroot = Path(tempfile.mkdtemp(prefix="podman-"))
    request.addfinalizer(lambda: shutil.rmtree(runroot, ignore_errors=True))
    podman = ["podman", "--root", str(tmp_path / "root"), "--runroot", str(runroot)]
    podman += ["--storage-driver", "vfs"]
    pulled = subprocess.run(
        [*podman, "pull", "-q", f"oci:{oci_images.path}:pod"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
    pushed = subprocess.run(
        [
            *podman, "push", "--tls-verify=false", "--creds", f"AWS:{registry.password}",
            pulled.stdout.strip(), f"docker://{registry.host}/devkit/podman:v1",
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    served = skopeo_inspect_raw(registry, "devkit/podman", "v1")
    images = ecr_images(registry, "devkit/podman")
    assert list(images) == [sha256_digest(served)]
    detail = images[sha256_digest(served)]
    assert detail["imageTags"] == ["v1"]
    layers = json.loads(served)["layers"]
    assert detail["imageSizeInBytes"] == sum(layer["size"] for layer in layers)


def test_proxy_answers_the_referrers_api_as_ecr_does(
    registry: EcrRegistry, oci_images: OciLayoutBuilder
) -> None:
    image = oci_images.simple_image(seed=1320)
    signature = oci_images.artifact(image)
    sbom = oci_images.artifact(
        image, artifact_type="application/spdx+json", payload=b'{"spdxVersion":"SPDX-2.3"}'
    )
    skopeo_push(oci_images.path, image.ref, registry, "devkit/referred", "v1")
    base = f"{registry.url}/v2/devkit/referred"
    referrers = f"{base}/referrers/{image.digest}"
    empty = get(referrers, registry.auth_headers)
    assert empty.status == 200  # no referrers yet: an empty index, never 404
    assert empty.headers["Content-Type"] == OCI_INDEX
    assert json.loads(empty.data)["manifests"] == []

    for artifact in (signature, sbom):
        blobs = {b.digest: oci_images.read_blob(b.digest) for b in artifact.blobs}
        http_push_manifest(
            registry,
            "devkit/referred",
            artifact.digest,
            artifact.manifest,
            artifact.media_type,
            blobs,
        )
    # A registry with the referrers API names the subject when a manifest has one.
    put = urllib3.request(
        "PUT",
        f"{base}/manifests/{sbom.digest}",
        body=sbom.manifest,
        headers={**registry.auth_headers, "Content-Type": sbom.media_type},
        retries=False,
    )
    assert put.status == 201
    assert put.headers["OCI-Subject"] == image.digest

    listed = json.loads(get(referrers, registry.auth_headers).data)
    assert listed["mediaType"] == OCI_INDEX
    by_digest = {d["digest"]: d for d in listed["manifests"]}
    assert set(by_digest) == {signature.digest, sbom.digest}
    assert by_digest[signature.digest]["artifactType"] == COSIGN_SIGNATURE_ARTIFACT
    assert by_digest[sbom.digest]["artifactType"] == "application/spdx+json"
    assert by_digest[sbom.digest]["size"] == len(sbom.manifest)

    filtered = get(f"{referrers}?artifactType=application/spdx%2Bjson", registry.auth_headers)
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert [d["digest"] for d in json.loads(filtered.data)["manifests"]] == [sbom.digest]
    unknown = get(
        f"{registry.url}/v2/devkit/nowhere/referrers/{image.digest}", registry.auth_headers
    )
    assert unknown.status == 404  # an unknown repository, as ECR answers it


# --- python -m devkit up ------------------------------------------------------------------


def test_devkit_up_serves_until_interrupted_and_backfill_sees_a_skopeo_push(
    oci_images: OciLayoutBuilder, tmp_path: Path
) -> None:
    env_file = tmp_path / "devkit.env"
    repo_root = Path(__file__).resolve().parents[2]
    up = subprocess.Popen(
        [sys.executable, "-m", "devkit", "up", "--name", "devkit-up", "--env-file", str(env_file)],
        cwd=repo_root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert up.stdout is not None
        shown = ""
        while "Ctrl-C stops everything" not in shown:
            line = up.stdout.readline()
            assert line, f"devkit up ended early:\n{shown}"
            shown += line
        exports = dict(
            line.removeprefix("export ").split("=", 1) for line in env_file.read_text().splitlines()
        )
        assert f"export AWS_ENDPOINT_URL={exports['AWS_ENDPOINT_URL']}" in shown
        env = {**os.environ, **exports}
        env.pop("AWS_PROFILE", None)
        # A person's push: the repository through ECR's API, the image with skopeo.
        ecr = local_client("ecr", exports["AWS_ENDPOINT_URL_ECR"], exports["AWS_DEFAULT_REGION"])
        ecr.create_repository(repositoryName="team/app")
        token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
        host = exports["ECR_BACKUP_SOURCE_REGISTRY"].removeprefix("http://")
        image = oci_images.simple_image(ref="app", seed=1330)
        copy = subprocess.run(
            [
                "skopeo", "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false",
                "--dest-creds", base64.b64decode(token).decode(),
                f"oci:{oci_images.path}:app", f"docker://{host}/team/app:v1",
            ],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert copy.returncode == 0, copy.stderr
        for args in (["setup", "--no-tls-policy"], ["backfill", "--json"]):
            run = subprocess.run(
                [sys.executable, "-m", "ecr_backup", *args],
                env=env, capture_output=True, text=True, timeout=300, check=False,
            )  # fmt: skip
            assert run.returncode == 0, run.stderr
        copied = json.loads(run.stdout)["copied"]
        assert [(c["repository"], c["digest"]) for c in copied] == [("team/app", image.digest)]
        ports = [int(url.rpartition(":")[2]) for url in (exports["AWS_ENDPOINT_URL"], host)]
    finally:
        up.send_signal(signal.SIGINT)
        out, _ = up.communicate(timeout=60)
    assert up.returncode == 0, out
    for port in ports:
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
            pass
