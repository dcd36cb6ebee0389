"""Errors say what and where, against a real HTTP endpoint (the moto server): a missing
bucket or table is exit 3 with the fix, and `setup` through a plain-HTTP endpoint refuses
to create a bucket its own TLS-only policy would lock."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from devkit import MotoServer

pytestmark = pytest.mark.integration


def run(moto_server: MotoServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECR_BACKUP_"))},
        "AWS_ENDPOINT_URL": moto_server.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": moto_server.region,
    }
    return subprocess.run(
        [sys.executable, "-m", "ecr_backup", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def buckets(moto_server: MotoServer) -> list[str]:
    return [b["Name"] for b in moto_server.client("s3").list_buckets()["Buckets"]]


def test_setup_through_plain_http_refuses_the_tls_only_bucket(moto_server: MotoServer) -> None:
    name = f"plain-{uuid.uuid4().hex[:12]}"
    refused = run(moto_server, "setup", "--bucket", name, "--table", name)
    assert refused.returncode == 3 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert f"not creating bucket {name} through the plain-HTTP endpoint" in refused.stderr
    assert "--no-tls-policy" in refused.stderr
    assert name not in buckets(moto_server)  # nothing half-made
    tables = moto_server.client("dynamodb").list_tables()["TableNames"]
    assert name not in tables
    made = run(moto_server, "setup", "--bucket", name, "--table", name, "--no-tls-policy")
    assert made.returncode == 0, made.stderr
    assert name in buckets(moto_server)


def test_a_missing_bucket_or_table_is_exit_3_with_the_fix(moto_server: MotoServer) -> None:
    name = f"gone-{uuid.uuid4().hex[:12]}"
    no_bucket = run(moto_server, "tags", "team/app", "--bucket", name, "--from-bucket")
    assert no_bucket.returncode == 3, no_bucket.stderr
    assert no_bucket.stderr.count("\n") == 1, no_bucket.stderr
    assert f"bucket {name} does not exist" in no_bucket.stderr
    assert "ecr-backup setup" in no_bucket.stderr and f"s3://{name}/" in no_bucket.stderr

    made = run(moto_server, "setup", "--bucket", name, "--table", name, "--no-tls-policy")
    assert made.returncode == 0, made.stderr
    absent = f"absent-{name}"
    no_table = run(moto_server, "prune", "--bucket", name, "--table", absent)
    assert no_table.returncode == 3, no_table.stderr
    assert no_table.stderr.count("\n") == 1, no_table.stderr
    assert f"index table {absent} not found in {moto_server.region}" in no_table.stderr
    assert "ecr-backup setup" in no_table.stderr
