"""template.yaml's optional registry over the backup (ServeRegistry=true): off by default, a
Function URL checked by the function's basic auth, a role that reads and nothing else,
metrics with an alarm on 5xx, and the ServeUrl output."""

from __future__ import annotations

from typing import Any

from tests.infra.test_template import (
    function_role_statements,
    listify,
    privilege_problems,
    props,
    refers_to,
)

# What serve calls: HeadObject/GetObject (any version), ListObjectVersions (the version
# that hashes to its digest), ListObjectsV2 (push records when the index is gone), index
# GetItem and Query, KMS decrypt of objects (also for clients following presigned URLs),
# the users secret, its own logs.
SERVE_ACTIONS = {
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "dynamodb:GetItem",
    "dynamodb:Query",
    "kms:Decrypt",
    "secretsmanager:GetSecretValue",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
}
SERVE_RESOURCES = (
    "ServeUsers",
    "ServeLogGroup",
    "ServeRole",
    "ServeFunction",
    "ServeErrorsAlarm",
    "ServeServerErrorsAlarm",
    "ServeDashboard",
)


def test_serve_is_off_unless_asked_for(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["ServeRegistry"]
    assert parameter["Default"] == "false"
    assert parameter["AllowedValues"] == ["true", "false"]
    assert template["Conditions"]["ServeRegistryEnabled"] == {
        "Fn::Equals": [{"Ref": "ServeRegistry"}, "true"]
    }
    for name in SERVE_RESOURCES:
        assert template["Resources"][name]["Condition"] == "ServeRegistryEnabled", name
    for name in ("ServeUrl", "ServeUsersSecretArn", "ServeDashboardUrl"):
        assert template["Outputs"][name]["Condition"] == "ServeRegistryEnabled", name
    conditional = {
        n for n, r in template["Resources"].items() if r.get("Condition") == "ServeRegistryEnabled"
    }
    assert conditional == set(SERVE_RESOURCES)


def test_serve_function_is_a_public_url_with_users_from_its_secret(
    resources: dict[str, Any],
) -> None:
    function = props(resources, "ServeFunction")
    assert function["Handler"] == "serve.handler"
    assert function["Runtime"] == "python3.13"
    # Basic auth is the function's (bcrypt users); IAM auth would shut docker and podman out.
    assert function["FunctionUrlConfig"] == {"AuthType": "NONE"}
    env = function["Environment"]["Variables"]
    assert env["ECR_BACKUP_SERVE_USERS_SECRET"] == {"Ref": "ServeUsers"}
    assert env["ECR_BACKUP_TABLE"] == {"Ref": "IndexTable"}
    assert {"ECR_BACKUP_BUCKET", "ECR_BACKUP_PREFIX", "POWERTOOLS_METRICS_NAMESPACE"} <= set(env)
    users = props(resources, "ServeUsers")
    assert users["KmsKeyId"] == {"Ref": "BackupKey"}
    assert all(line.startswith("#") for line in users["SecretString"].splitlines())


def test_serve_role_reads_the_backup_and_nothing_else(transformed: dict[str, Any]) -> None:
    statements = function_role_statements(transformed, "ServeFunction")
    granted = {a for s in statements for a in listify(s["Action"])}
    assert granted == SERVE_ACTIONS
    assert privilege_problems(statements) == []
    by_sid = {s["Sid"]: s for s in statements}
    objects = by_sid["BucketRead"]["Resource"]["Fn::Sub"]
    assert objects[0] == "arn:${AWS::Partition}:s3:::${Bucket}/${BucketPrefix}*"
    assert by_sid["BucketList"]["Resource"]["Fn::Sub"][0] == "arn:${AWS::Partition}:s3:::${Bucket}"
    assert refers_to(by_sid["IndexTable"]["Resource"], "IndexTable")
    assert refers_to(by_sid["BackupKey"]["Resource"][0], "BackupKey")
    assert by_sid["Users"]["Resource"] == {"Ref": "ServeUsers"}
    assert refers_to(by_sid["Logs"]["Resource"], "ServeLogGroup")


def test_sam_makes_the_url_public_for_the_function_alone(transformed: dict[str, Any]) -> None:
    resources = transformed["Resources"]
    url = resources["ServeFunctionUrl"]
    assert url["Type"] == "AWS::Lambda::Url"
    assert url["Properties"]["AuthType"] == "NONE"
    assert url["Condition"] == "ServeRegistryEnabled"
    permissions = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Permission"
        and r["Properties"].get("FunctionUrlAuthType") == "NONE"
    ]
    assert len(permissions) == 1
    assert permissions[0]["Action"] == "lambda:InvokeFunctionUrl"
    assert refers_to(permissions[0]["FunctionName"], "ServeFunction")


def test_serve_alarms_on_5xx_answers(resources: dict[str, Any]) -> None:
    alarm = props(resources, "ServeServerErrorsAlarm")
    assert (alarm["Namespace"], alarm["MetricName"]) == ("EcrBackup", "ServerErrors")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "ecr-backup"}]
    assert (alarm["Statistic"], alarm["Threshold"]) == ("Sum", 0)
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_serve_url_output_is_the_registry_host(template: dict[str, Any]) -> None:
    value = template["Outputs"]["ServeUrl"]["Value"]
    # https://<id>.lambda-url.<region>.on.aws/ -> <id>.lambda-url.<region>.on.aws
    assert value == {
        "Fn::Select": [2, {"Fn::Split": ["/", {"Fn::GetAtt": ["ServeFunctionUrl", "FunctionUrl"]}]}]
    }
