"""templates/restorer-role.yaml: a recovery account's role reads the backup, builds a new
index table, pushes to its own ECR, and can change nothing in the backup."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.infra.test_template import ROOT, listify, load, privilege_problems

# What restore, export, verify and rebuild-index call with the restorer's credentials.
RESTORER_ACTIONS = {
    "s3:GetObject",  # GetObject and HeadObject
    "s3:GetObjectVersion",  # an older version when the current one does not hash to its name
    "s3:GetObjectRetention",  # rebuild-index: the lock end HeadObject shows
    "s3:ListBucket",  # ListObjectsV2: push records, rebuild-index
    "s3:ListBucketVersions",  # ListObjectVersions: verify, rebuild-index
    "kms:Decrypt",
    "dynamodb:CreateTable",
    "dynamodb:DescribeTable",
    "dynamodb:UpdateContinuousBackups",  # point-in-time recovery on the table it creates
    "dynamodb:PutItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:UpdateItem",  # rebuild-index: lock ends
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "ecr:GetAuthorizationToken",
    "ecr:DescribeRepositories",
    "ecr:CreateRepository",
    "ecr:BatchCheckLayerAvailability",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load(ROOT / "templates" / "restorer-role.yaml")


def statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    """The role's statements, with the key statement as when a key is given."""
    role = template["Resources"]["RestorerRole"]["Properties"]
    found: list[dict[str, Any]] = []
    for policy in role["Policies"]:
        for statement in listify(policy["PolicyDocument"]["Statement"]):
            if "Fn::If" in statement:
                condition, when_true, _ = statement["Fn::If"]
                assert condition == "HasBucketKey"
                found.append(when_true)
            else:
                found.append(statement)
    return found


def test_grants_exactly_what_a_restore_calls(template: dict[str, Any]) -> None:
    granted = {a for s in statements(template) for a in listify(s["Action"])}
    assert granted == RESTORER_ACTIONS
    assert all(s["Effect"] == "Allow" for s in statements(template))


def test_cannot_delete_overwrite_or_unlock_the_backup(template: dict[str, Any]) -> None:
    # The one finding is deliberate: PITR on the new table rebuild-index creates, which is
    # all the RebuildIndexTable statement reaches.
    assert privilege_problems(statements(template)) == [
        "RebuildIndexTable: dynamodb:UpdateContinuousBackups allows "
        "dynamodb:UpdateContinuousBackups"
    ]
    s3_actions = {a for s in statements(template) for a in listify(s["Action"]) if "s3:" in a}
    assert all(a.startswith(("s3:Get", "s3:List")) for a in s3_actions)


def test_each_service_is_scoped_to_its_resource(template: dict[str, Any]) -> None:
    by_sid = {s["Sid"]: s for s in statements(template)}
    assert by_sid["ReadBackupObjects"]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}/${BucketPrefix}*"
    }
    assert by_sid["ListBackup"]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}"
    }
    assert by_sid["DecryptBackupThroughS3"]["Resource"] == {"Ref": "BucketKmsKeyArn"}
    assert by_sid["DecryptBackupThroughS3"]["Condition"] == {
        "StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}
    }
    assert by_sid["RebuildIndexTable"]["Resource"]["Fn::Sub"].endswith(":table/${IndexTableName}")
    assert by_sid["EcrPush"]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:ecr:*:${AWS::AccountId}:repository/${RepositoryPrefix}*"
    }
    assert by_sid["EcrLogin"]["Resource"] == "*"


def test_only_the_trusted_principal_may_assume_it(template: dict[str, Any]) -> None:
    trust = template["Resources"]["RestorerRole"]["Properties"]["AssumeRolePolicyDocument"]
    assert trust["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"AWS": {"Ref": "TrustedPrincipalArn"}},
            "Action": "sts:AssumeRole",
        }
    ]


def substituted(text: str) -> Any:
    names = {
        "RestorerRole.Arn": "arn:aws:iam::222222222222:role/restorer",
        "AWS::Partition": "aws",
        "BucketName": "backup-bucket",
        "BucketPrefix": "ecr/",
    }
    return json.loads(re.sub(r"\$\{([^}]+)\}", lambda m: names[m.group(1)], text))


def test_outputs_give_the_bucket_and_key_policy_statements(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    bucket = substituted(outputs["BucketPolicyStatement"]["Value"]["Fn::Sub"])
    role_s3 = {a for s in statements(template) for a in listify(s["Action"]) if a.startswith("s3:")}
    assert set(bucket["Action"]) == role_s3
    assert bucket["Principal"] == {"AWS": "arn:aws:iam::222222222222:role/restorer"}
    assert bucket["Resource"] == ["arn:aws:s3:::backup-bucket", "arn:aws:s3:::backup-bucket/ecr/*"]
    key = substituted(outputs["KeyPolicyStatement"]["Value"]["Fn::Sub"])
    assert key["Action"] == "kms:Decrypt" and outputs["KeyPolicyStatement"]["Condition"]
    assert key["Condition"] == {"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}}
