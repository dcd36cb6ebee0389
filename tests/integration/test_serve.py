"""`ecr-backup serve` with real clients: skopeo and podman pull Docker v2, OCI, multi-arch
and zstd images and a referrer out of a backup (moto S3 and DynamoDB), digest-exact, in
both blob modes, with and without basic auth and TLS, and as of a past time."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bcrypt
import boto3
import pytest
import urllib3

from devkit import BuiltManifest, EcrRegistry, Layer, MotoServer, OciLayoutBuilder, http_push
from devkit.net import free_port, self_signed_certificate
from ecr_backup.composition import AwsServices
from ecr_backup.model import Action, ImageEvent
from ecr_backup.oci import mediatypes
from ecr_backup.oci.digest import Digest
from ecr_backup.settings import Settings
from ecr_backup.storage.provision import ensure_bucket
from tests.integration.conftest import aws_env

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)
REPO = "srv/app"
SIGNATURE_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
USER, PASSWORD = "puller", "pull-s3cret"


@dataclass
class ServedBackup:
    env: dict[str, str]
    images: dict[str, BuiltManifest]
    tmp: Path


def zstd_image(layout: OciLayoutBuilder) -> BuiltManifest:
    """An OCI image whose one layer is a zstd-compressed tar (the `zstd` tool compresses)."""
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        info = tarfile.TarInfo("zstd.txt")
        payload = b"compressed with zstd\n" * 100
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    raw = tar.getvalue()
    compressed = subprocess.run(
        ["zstd", "-q", "-c"], input=raw, capture_output=True, check=True
    ).stdout
    layer = layout.add_blob(compressed, mediatypes.OCI_LAYER_ZSTD)
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    return layout.image([Layer(layer, diff_id)])


@pytest.fixture(scope="module")
def served_backup(
    moto_server: MotoServer, registry: EcrRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedBackup]:
    """One backup for the module: docker, oci (moved at minute 10 to oci-2), zstd and
    multi tags, and a signature of the first oci image, pushed by digest."""
    tmp = tmp_path_factory.mktemp("serve")
    layout = OciLayoutBuilder(tmp / "oci")
    images = {
        "docker": layout.simple_image(n_layers=2, layer_size=50_000, seed=901, docker=True),
        "oci": layout.simple_image(n_layers=2, layer_size=50_000, seed=911),
        "oci-2": layout.simple_image(n_layers=1, layer_size=20_000, seed=921),
        "zstd": zstd_image(layout),
        "multi": layout.multi_arch_image(layer_size=20_000, seed=931),
    }
    images["signature"] = layout.artifact(images["oci"])
    name = f"serve-{uuid.uuid4().hex[:12]}"
    env = {
        **aws_env(moto_server, registry),
        "ECR_BACKUP_BUCKET": name,
        "ECR_BACKUP_TABLE": name,
        "ECR_BACKUP_PREFIX": "ecr/",
        "ECR_BACKUP_SOURCE_REGISTRY": registry.url,
    }
    settings = Settings.load(env)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.delenv("AWS_CA_BUNDLE", raising=False)
        services = AwsServices(settings, boto3.Session(region_name=moto_server.region))
        ensure_bucket(moto_server.client("s3"), name, region=moto_server.region, tls_only=False)
        services.index.create_if_missing()
        registry.ensure_repository(REPO)
        pushes = [
            ("docker", "docker", 1),
            ("oci", "oci", 2),
            ("zstd", "zstd", 3),
            ("multi", "multi", 4),
            ("signature", None, 5),
            ("oci-2", "oci", 10),
        ]
        for key, tag, minute in pushes:
            built = images[key]
            pushed = http_push(layout, built, registry, REPO, tag)
            assert pushed == built.digest
            event = ImageEvent(
                REPO, Digest.parse(pushed), Action.PUSH, T0 + timedelta(minutes=minute), tag
            )
            services.replicator("123456789012", moto_server.region).backup_event(event)
        services.store.close()
    environ = {k: v for k, v in os.environ.items() if k not in ("AWS_CA_BUNDLE", "AWS_PROFILE")}
    yield ServedBackup({**environ, **env}, images, tmp)


@dataclass
class Server:
    host: str
    url: str
    http: urllib3.PoolManager  # trusts the server's certificate

    def get(self, path: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        return self.http.request("GET", f"{self.url}{path}", **kwargs)


@contextmanager
def serve(backup: ServedBackup, *args: str, tls: bool = False) -> Iterator[Server]:
    """`ecr-backup serve` on 127.0.0.1 and a free port, stopped (SIGTERM) on exit."""
    port = free_port()
    listen = f"127.0.0.1:{port}"
    argv = [sys.executable, "-m", "ecr_backup", "serve", "--json", "--listen", listen, *args]
    if tls:
        cert, key = self_signed_certificate("127.0.0.1")
        (backup.tmp / "cert.pem").write_bytes(cert)
        (backup.tmp / "key.pem").write_bytes(key)
        argv += [
            "--tls-cert",
            str(backup.tmp / "cert.pem"),
            "--tls-key",
            str(backup.tmp / "key.pem"),
        ]
    log, started = backup.tmp / f"serve-{port}.log", backup.tmp / f"serve-{port}.json"
    with log.open("wb") as err, started.open("wb") as out:
        process = subprocess.Popen(argv, env=backup.env, stdout=out, stderr=err)
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    ca = str(backup.tmp / "cert.pem") if tls else None
    http = urllib3.PoolManager(timeout=10.0, retries=False, ca_certs=ca)
    try:
        _wait_ready(http, url, process, log)
        # What --json printed once it listened (written before the first answer).
        document = json.loads(started.read_text())
        assert (document["url"], document["tls"], document["source"]) == (url, tls, "index")
        yield Server(listen, url, http)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    assert code == 0, log.read_text()


def _wait_ready(
    http: urllib3.PoolManager, url: str, process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited {process.returncode}: {log.read_text()}")
        try:
            if http.request("GET", f"{url}/v2/").status in (200, 401):
                return
        except urllib3.exceptions.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"serve did not answer in 30 s: {log.read_text()}")


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{' '.join(argv)}: {result.stderr}"
    return result


def skopeo_copy(server: Server, ref: str, into: Path, *extra: str) -> Callable[[str], bytes]:
    """`skopeo copy` from serve into a dir: layout; returns a reader of its files."""
    run(
        "skopeo", "copy", "--quiet", "--src-tls-verify=false", *extra,
        f"docker://{server.host}/{REPO}{ref}", f"dir:{into}",
    )  # fmt: skip
    return lambda name: (into / name).read_bytes()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def assert_copied(read: Callable[[str], bytes], built: BuiltManifest) -> None:
    assert sha256(read("manifest.json")) == built.digest
    for blob in built.blobs:
        assert sha256(read(blob.digest.removeprefix("sha256:"))) == blob.digest


# -- skopeo --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["redirect", "stream"])
def test_skopeo_copies_docker_oci_and_zstd_images_digest_exact(
    served_backup: ServedBackup, tmp_path: Path, mode: str
) -> None:
    images = served_backup.images
    with serve(served_backup, "--blobs", mode) as server:
        for tag, key in (("docker", "docker"), ("oci", "oci-2"), ("zstd", "zstd")):
            read = skopeo_copy(server, f":{tag}", tmp_path / f"{mode}-{tag}")
            assert_copied(read, images[key])
            raw = run(
                "skopeo", "inspect", "--raw", "--tls-verify=false",
                f"docker://{server.host}/{REPO}:{tag}",
            ).stdout  # fmt: skip
            assert sha256(raw.encode()) == images[key].digest


def test_skopeo_copies_a_multi_arch_index_whole_and_one_platform(
    served_backup: ServedBackup, tmp_path: Path
) -> None:
    multi = served_backup.images["multi"]
    with serve(served_backup) as server:
        read = skopeo_copy(server, ":multi", tmp_path / "all", "--all")
        assert sha256(read("manifest.json")) == multi.digest
        for child in multi.children:
            assert sha256(read(f"{child.digest.removeprefix('sha256:')}.manifest.json")) == (
                child.digest
            )
        arm64 = next(c for c in multi.children if (c.platform or {})["architecture"] == "arm64")
        one = skopeo_copy(server, ":multi", tmp_path / "arm64", "--override-arch", "arm64")
        assert_copied(one, arm64)


def test_an_artifact_found_through_the_referrers_api(
    served_backup: ServedBackup, tmp_path: Path
) -> None:
    oci, signature = served_backup.images["oci"], served_backup.images["signature"]
    with serve(served_backup, "--blobs", "stream") as server:
        answer = server.get(
            f"/v2/{REPO}/referrers/{oci.digest}", fields={"artifactType": SIGNATURE_TYPE}
        )
        assert answer.status == 200 and answer.headers["OCI-Filters-Applied"] == "artifactType"
        found = [d["digest"] for d in json.loads(answer.data)["manifests"]]
        assert found == [signature.digest]
        read = skopeo_copy(server, f"@{found[0]}", tmp_path / "sig")
        assert_copied(read, signature)


def test_plain_http_lists_repositories_and_tags(served_backup: ServedBackup) -> None:
    with serve(served_backup) as server:
        base = server.get("/v2/")
        assert base.status == 200
        assert base.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        catalog = json.loads(server.get("/v2/_catalog").data)
        assert catalog == {"repositories": [REPO]}
        page = server.get(f"/v2/{REPO}/tags/list?n=2")
        assert json.loads(page.data)["tags"] == ["docker", "multi"]
        assert page.headers["Link"] == f'</v2/{REPO}/tags/list?n=2&last=multi>; rel="next"'
        push = server.http.request("POST", f"{server.url}/v2/{REPO}/blobs/uploads/")
        assert push.status == 405 and json.loads(push.data)["errors"][0]["code"] == "UNSUPPORTED"


def test_at_serves_tags_as_they_were(served_backup: ServedBackup, tmp_path: Path) -> None:
    images = served_backup.images
    at = (T0 + timedelta(minutes=5)).isoformat()
    with serve(served_backup, "--at", at) as server:
        read = skopeo_copy(server, ":oci", tmp_path / "then")
        assert_copied(read, images["oci"])  # oci-2 took the tag only at minute 10
        tags = json.loads(server.get(f"/v2/{REPO}/tags/list").data)
        assert tags["tags"] == ["docker", "multi", "oci", "zstd"]


def test_basic_auth_over_tls(served_backup: ServedBackup, tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"{USER}:{hashed}\n")
    oci = served_backup.images["oci-2"]
    with serve(served_backup, "--htpasswd", str(htpasswd), tls=True) as server:
        anonymous = server.get("/v2/")
        assert anonymous.status == 401
        assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="ecr-backup"'
        refused = subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false",
             f"docker://{server.host}/{REPO}:oci"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert refused.returncode != 0 and "unauthorized" in refused.stderr.lower()
        read = skopeo_copy(server, ":oci", tmp_path / "authed", "--src-creds", f"{USER}:{PASSWORD}")
        assert_copied(read, oci)
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        answer = server.get("/v2/_catalog", headers={"Authorization": f"Basic {token}"})
        assert answer.status == 200


# -- podman --------------------------------------------------------------------------------------


@pytest.fixture
def podman() -> Iterator[Callable[..., str]]:
    """podman with storage of its own (vfs: no kernel features), never the system's; the
    run root in a short path, as podman wants (at most 50 characters)."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    root = Path(tempfile.mkdtemp(prefix="podman-", dir="/tmp"))

    def call(*args: str) -> str:
        return run(
            "podman", "--root", str(root / "root"), "--runroot", str(root / "run"),
            "--storage-driver", "vfs", *args,
        ).stdout  # fmt: skip

    try:
        yield call
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("mode", ["redirect", "stream"])
def test_podman_pulls_an_index_platform_and_a_zstd_image(
    served_backup: ServedBackup, podman: Callable[..., str], mode: str
) -> None:
    images = served_backup.images
    with serve(served_backup, "--blobs", mode) as server:
        for tag, extra in (("multi", ["--arch", "arm64"]), ("zstd", [])):
            ref = f"{server.host}/{REPO}:{tag}"
            podman("pull", "-q", "--tls-verify=false", *extra, ref)
            digest = podman("image", "inspect", "--format", "{{.Digest}}", ref).strip()
            assert digest == images[tag].digest


def test_podman_pulls_with_credentials_over_tls(
    served_backup: ServedBackup, podman: Callable[..., str], tmp_path: Path
) -> None:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
    (tmp_path / "htpasswd").write_text(f"{USER}:{hashed}\n")
    with serve(served_backup, "--htpasswd", str(tmp_path / "htpasswd"), tls=True) as server:
        ref = f"{server.host}/{REPO}:docker"
        podman("pull", "-q", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}", ref)
        digest = podman("image", "inspect", "--format", "{{.Digest}}", ref).strip()
        assert digest == served_backup.images["docker"].digest
