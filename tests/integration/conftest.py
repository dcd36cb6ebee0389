"""Integration fixtures: moto, a real registry on S3 (moto) and OCI image builders."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from devkit import EcrRegistry, MotoServer, OciLayoutBuilder
from devkit.servers import REGISTRY_BINARY
from ecr_backup.composition import AwsServices
from ecr_backup.settings import Settings
from ecr_backup.storage.provision import ensure_bucket


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """The AWS the code under test talks to (ECR API, S3, DynamoDB...)."""
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def registry_storage() -> Iterator[MotoServer]:
    """A separate moto holding only the registry's bucket, so that
    `moto_server.reset()` between tests can't wipe the registry's blobs."""
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def registry(moto_server: MotoServer, registry_storage: MotoServer) -> Iterator[EcrRegistry]:
    """docker-registry on S3 behind the ECR-faithful proxy (devkit/ecr_proxy.py): every ECR
    quirk on, tokens from ECR's API through the proxy, blob GETs redirected (307) to
    presigned S3 URLs like ECR; what the devkit pushes is also registered with moto's ECR,
    so DescribeImages lists it."""
    missing = [b for b in (REGISTRY_BINARY, "skopeo") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (apt-get install docker-registry skopeo)")
    with EcrRegistry(registry_storage, moto_server) as reg:
        yield reg


@pytest.fixture(scope="session")
def target_registry(
    moto_server: MotoServer, registry_storage: MotoServer, registry: EcrRegistry
) -> Iterator[EcrRegistry]:
    """A second registry to restore into, as when the source registry is gone; the same
    account's tokens (and the same ECR repositories, which live in moto)."""
    with EcrRegistry(registry_storage, moto_server, tokens=registry) as target:
        yield target


@pytest.fixture
def oci_images(tmp_path: Path) -> OciLayoutBuilder:
    """An empty OCI layout in tmp_path to build images into."""
    return OciLayoutBuilder(tmp_path / "oci")


@dataclass
class BackupTarget:
    """A fresh bucket and table on the moto server, and the engine pointed at the registry."""

    settings: Settings
    services: AwsServices
    env: dict[str, str]
    s3: Any

    def blob_keys(self) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.settings.bucket, Prefix=f"{self.settings.prefix}blobs/"
        )
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def read(self, key: str) -> bytes:
        body: bytes = self.s3.get_object(Bucket=self.settings.bucket, Key=key)["Body"].read()
        return body

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ecr_backup", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=300,
            check=False,
        )


def aws_env(moto: MotoServer, registry: EcrRegistry) -> dict[str, str]:
    """AWS on moto, but ECR's API through the proxy: its tokens are the ones that expire."""
    return {
        "AWS_ENDPOINT_URL": moto.endpoint,
        "AWS_ENDPOINT_URL_ECR": registry.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": moto.region,
    }


@pytest.fixture
def backup_target(
    moto_server: MotoServer, registry: EcrRegistry, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BackupTarget]:
    name = f"backup-{uuid.uuid4().hex[:12]}"
    env = {
        **aws_env(moto_server, registry),
        "ECR_BACKUP_BUCKET": name,
        "ECR_BACKUP_TABLE": name,
        "ECR_BACKUP_PREFIX": "ecr/",
        "ECR_BACKUP_SOURCE_REGISTRY": registry.url,
    }
    for key in ("AWS_PROFILE", "AWS_CA_BUNDLE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings.load(env)
    services = AwsServices(settings, boto3.Session(region_name=moto_server.region))
    s3 = moto_server.client("s3")
    ensure_bucket(s3, name, region=moto_server.region, tls_only=False)  # moto: plain HTTP
    services.index.create_if_missing()
    yield BackupTarget(settings, services, {**os.environ, **env}, s3)
    services.store.close()
