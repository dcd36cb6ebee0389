"""`ecr-backup setup` makes the bucket template.yaml makes: each property the stack sets
is read back from a bucket setup created (on moto) and compared with the template."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ecr_backup.storage.provision import ensure_bucket
from tests.infra.test_template import ROOT, load

BUCKET = "setup-bucket"


@pytest.fixture(scope="module")
def stack_bucket() -> dict[str, Any]:
    template = load(ROOT / "template.yaml")
    resources: dict[str, Any] = template["Resources"]
    return {
        "bucket": resources["BackupBucket"]["Properties"],
        "policy": resources["BackupBucketPolicy"]["Properties"]["PolicyDocument"],
        "parameters": template["Parameters"],
    }


@pytest.fixture
def setup_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        key = boto3.client("kms", region_name="eu-west-1").create_key()["KeyMetadata"]["Arn"]
        ensure_bucket(s3, BUCKET, region="eu-west-1", kms_key_id=key)
        yield s3, key


def test_setup_bucket_has_every_property_the_stack_sets(
    setup_bucket: tuple[Any, str], stack_bucket: dict[str, Any]
) -> None:
    s3, key = setup_bucket
    stack = stack_bucket["bucket"]
    params = stack_bucket["parameters"]
    assert (
        s3.get_bucket_versioning(Bucket=BUCKET)["Status"]
        == stack["VersioningConfiguration"]["Status"]
    )
    lock = s3.get_object_lock_configuration(Bucket=BUCKET)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled" and stack["ObjectLockEnabled"] is True
    retention = lock["Rule"]["DefaultRetention"]
    assert (retention["Mode"], retention["Days"]) == (
        params["ObjectLockMode"]["Default"],
        int(params["ObjectLockDays"]["Default"]),
    )
    [rule] = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    [stack_rule] = stack["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": stack_rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "KMSMasterKeyID": key,
    }
    assert rule["BucketKeyEnabled"] is stack_rule["BucketKeyEnabled"] is True
    blocked = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert blocked == stack["PublicAccessBlockConfiguration"]
    ownership = s3.get_bucket_ownership_controls(Bucket=BUCKET)["OwnershipControls"]["Rules"]
    assert ownership == stack["OwnershipControls"]["Rules"]
    lifecycle, noncurrent = s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    stack_lifecycle, stack_noncurrent = stack["LifecycleConfiguration"]["Rules"]
    assert lifecycle["ID"] == stack_lifecycle["Id"] and lifecycle["Status"] == "Enabled"
    assert (
        lifecycle["AbortIncompleteMultipartUpload"]
        == stack_lifecycle["AbortIncompleteMultipartUpload"]
    )
    # Versions prune delete-marked expire after the lock period, on blobs/ only.
    assert noncurrent["ID"] == stack_noncurrent["Id"] and noncurrent["Status"] == "Enabled"
    assert stack_noncurrent["NoncurrentVersionExpiration"]["NoncurrentDays"] == {
        "Ref": "ObjectLockDays"
    }
    assert noncurrent["NoncurrentVersionExpiration"]["NoncurrentDays"] == retention["Days"]
    assert noncurrent["Filter"] == {"Prefix": "blobs/"}
    assert stack_noncurrent["Prefix"] == {"Fn::Sub": "${BucketPrefix}blobs/"}


def test_setup_bucket_denies_every_request_without_tls_as_the_stack_does(
    setup_bucket: tuple[Any, str], stack_bucket: dict[str, Any]
) -> None:
    s3, _ = setup_bucket
    [statement] = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"]
    [stack_statement] = stack_bucket["policy"]["Statement"]
    for field in ("Sid", "Effect", "Principal", "Action", "Condition"):
        assert statement[field] == stack_statement[field], field
    assert statement["Resource"] == [
        f"arn:aws:s3:::{BUCKET}",
        f"arn:aws:s3:::{BUCKET}/*",
    ]
