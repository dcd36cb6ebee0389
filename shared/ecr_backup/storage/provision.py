"""`ecr-backup setup`: the bucket and table outside CloudFormation (demo, tests, quick starts).

template.yaml is the production path; this creates the same essentials idempotently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from botocore.exceptions import BotoCoreError, ClientError

from ecr_backup.awserrors import error_code, translate
from ecr_backup.errors import StorageError

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
) -> bool:
    """Create a versioned, Object Lock bucket with default retention; False if it existed."""
    try:
        s3.head_bucket(Bucket=bucket)
    except (ClientError, BotoCoreError) as e:
        if error_code(e) not in ("404", "NoSuchBucket", "NotFound"):
            raise translate(e, f"look up bucket {bucket}", StorageError) from e
    else:
        return False
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
                    }
                ]
            },
        )
    except (ClientError, BotoCoreError) as e:
        raise translate(e, f"create bucket {bucket}", StorageError) from e
    return True
