"""What every S3 adapter needs to know of the backup bucket: its own region, and S3's
errors translated with the bucket, the operation and the fix named."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from ecr_backup.awserrors import (
    ACCESS_DENIED_CODES,
    describe_code,
    error_code,
    http_status,
    translate,
)
from ecr_backup.errors import ConfigurationError, EcrBackupError, StorageError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# HEAD requests have no body, so S3's code for them is the bare status.
MISSING_BUCKET_CODES = frozenset({"NoSuchBucket", "404", "NotFound"})
_DENIED = ACCESS_DENIED_CODES | {"403"}


def bucket_region(s3: S3Client, bucket: str) -> str | None:
    """The bucket's own region, from HeadBucket's x-amz-bucket-region header, which S3
    sends whether or not the caller may use the bucket (S3 API reference, HeadBucket).
    None when the bucket does not exist or the endpoint (a stand-in) does not say."""
    try:
        answer: Any = s3.head_bucket(Bucket=bucket)
    except ClientError as e:
        if error_code(e) in MISSING_BUCKET_CODES:
            return None
        region = _region_header(e.response)
        if region is None and error_code(e) not in _DENIED:
            raise s3_error(e, "HeadBucket", bucket, s3) from e
        return region
    except BotoCoreError as e:
        raise s3_error(e, "HeadBucket", bucket, s3) from e
    return _region_header(answer)


def _region_header(response: Any) -> str | None:
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    region = headers.get("x-amz-bucket-region")
    return str(region) if region else None


def plain_http(s3: Any) -> bool:
    """Whether this client talks to S3 without TLS (a stand-in such as moto)."""
    return str(s3.meta.endpoint_url).startswith("http://")


def s3_error(
    error: ClientError | BotoCoreError, operation: str, bucket: str, s3: Any, key: str = ""
) -> EcrBackupError:
    """One of our errors for S3's, naming the operation and where (s3://bucket/key): a
    missing bucket and a refusal are configuration (exit 3) with what to do about them."""
    where = f"s3://{bucket}/{key}"
    code = error_code(error)
    if code in MISSING_BUCKET_CODES and (code == "NoSuchBucket" or not key):
        return ConfigurationError(
            f"{operation} {where}: bucket {bucket} does not exist",
            code="NoSuchBucket",
            status=http_status(error),
            hint="check --bucket (ECR_BACKUP_BUCKET) and the account; create it with "
            "`ecr-backup setup` or by deploying template.yaml",
        )
    if code in _DENIED:
        hint = "the AWS credentials in use lack the permission, or have expired"
        if plain_http(s3):
            hint = (
                f"the endpoint {s3.meta.endpoint_url} is plain HTTP, and a bucket with the "
                "deny-without-TLS policy (setup's and template.yaml's) refuses every such "
                "request: use an https:// endpoint, or for a stand-in a bucket made with "
                "`setup --no-tls-policy`; else " + hint
            )
        return ConfigurationError(
            f"{operation} {where}: access denied ({describe_code(code, http_status(error))})",
            code=code,
            status=http_status(error),
            hint=hint,
        )
    return translate(error, f"{operation} {where}", StorageError)
