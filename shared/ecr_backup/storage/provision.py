"""`ecr-backup setup`: the bucket and table outside CloudFormation (demo, tests, quick starts).

template.yaml is the production path; this creates the same bucket idempotently:
versioning, Object Lock default retention, SSE-KMS with Bucket Keys when given a key
(SSE-S3 otherwise: setup creates no KMS key), public access blocked, ACLs disabled,
aborted multipart uploads cleaned up, and a policy that denies every request without TLS.
tests/infra/test_setup_bucket.py compares the result with template.yaml.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from ecr_backup.awserrors import error_code
from ecr_backup.errors import ConfigurationError
from ecr_backup.storage.bucket import plain_http, s3_error

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

RetentionMode = Literal["GOVERNANCE", "COMPLIANCE"]


def ensure_bucket(
    s3: S3Client,
    bucket: str,
    *,
    region: str,
    retention_days: int = 35,
    retention_mode: RetentionMode = "GOVERNANCE",
    kms_key_id: str | None = None,
    tls_only: bool = True,
    prefix: str = "",
) -> bool:
    """Create the backup bucket as template.yaml does; False if it existed (left as is)."""
    try:
        s3.head_bucket(Bucket=bucket)
    except (ClientError, BotoCoreError) as e:
        if error_code(e) not in ("404", "NoSuchBucket", "NotFound"):
            raise s3_error(e, "HeadBucket", bucket, s3) from e
    else:
        return False
    if tls_only and plain_http(s3):
        raise ConfigurationError(
            f"not creating bucket {bucket} through the plain-HTTP endpoint "
            f"{s3.meta.endpoint_url}: its deny-without-TLS policy would refuse every request "
            "made there",
            code="PlainHttpEndpoint",
            hint="use an https:// endpoint, or pass --no-tls-policy for a stand-in such as moto",
        )
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        else:
            s3.create_bucket(
                Bucket=bucket,
                ObjectLockEnabledForBucket=True,
                CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
            )
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        s3.put_object_lock_configuration(
            Bucket=bucket,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": retention_mode, "Days": retention_days}},
            },
        )
        s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={"Rules": [_encryption_rule(kms_key_id)]},
        )
        s3.put_bucket_ownership_controls(
            Bucket=bucket,
            OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        )
        s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        s3.put_bucket_lifecycle_configuration(
            Bucket=bucket,
            LifecycleConfiguration={
                "Rules": [
                    {
                        "ID": "abort-incomplete-multipart-uploads",
                        "Status": "Enabled",
                        "Filter": {"Prefix": ""},
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2},
                    },
                    {
                        # As in template.yaml: what prune delete-marked expires after the
                        # lock period; never a rule on current versions.
                        "ID": "expire-noncurrent-blob-versions",
                        "Status": "Enabled",
                        "Filter": {"Prefix": f"{prefix}blobs/"},
                        "NoncurrentVersionExpiration": {"NoncurrentDays": retention_days},
                    },
                ]
            },
        )
        if tls_only:  # off only for stand-ins served over plain HTTP (moto, the demo)
            policy = tls_only_policy(bucket, partition=partition_of(region))
            s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    except (ClientError, BotoCoreError) as e:
        raise s3_error(e, "create bucket", bucket, s3) from e
    return True


def _encryption_rule(kms_key_id: str | None) -> Any:
    if kms_key_id is None:
        return {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    return {
        "ApplyServerSideEncryptionByDefault": {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": kms_key_id,
        },
        # One data key per bucket instead of one KMS call per object.
        "BucketKeyEnabled": True,
    }


def partition_of(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws-us-gov" if region.startswith("us-gov-") else "aws"


def tls_only_policy(bucket: str, *, partition: str = "aws") -> dict[str, Any]:
    """The stack's BackupBucketPolicy: every request without TLS is denied."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:{partition}:s3:::{bucket}", f"arn:{partition}:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }
