"""template.yaml's scheduled reconcile and templates/source-account.yaml's read-only role:
the schedule, the fan-out queue the function consumes itself, least privilege, the alarm."""

from __future__ import annotations

from typing import Any

from ecr_backup.registry.source_account import SOURCE_READ_ROLE
from ecr_backup.settings import ENV_PREFIX, Settings
from reconcile import ReconcileConfig
from tests.infra.test_template import (
    ROOT,
    function_role_statements,
    listify,
    load,
    privilege_problems,
    props,
    refers_to,
)

# What the reconcile path calls (registry/ecr_listing, storage/index reads and event
# writes, storage/blobstore.put_record, backup/queue), and nothing more.
RECONCILE_ACTIONS = {
    "ecr:DescribeRepositories",
    "ecr:DescribeImages",
    "sts:AssumeRole",
    "sqs:SendMessage",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "s3:PutObject",
    "kms:GenerateDataKey",
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:DescribeKey",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
}


def test_schedule_starts_the_reconcile_daily_by_default(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    interval = template["Parameters"]["ReconcileIntervalMinutes"]
    assert interval["Default"] == 1440
    events = props(resources, "ReconcileFunction")["Events"]
    assert events["Schedule"]["Type"] == "Schedule"
    assert events["Schedule"]["Properties"]["Schedule"] == {
        "Fn::Sub": "rate(${ReconcileIntervalMinutes} minutes)"
    }
    env = props(resources, "ReconcileFunction")["Environment"]["Variables"]
    # The alarm's "previous run" is one interval back: the function must know it.
    assert env["ECR_BACKUP_INTERVAL_MINUTES"] == {"Ref": "ReconcileIntervalMinutes"}


def test_the_function_fans_out_through_its_own_queue(resources: dict[str, Any]) -> None:
    function = props(resources, "ReconcileFunction")
    sqs = function["Events"]["Repositories"]
    assert sqs["Type"] == "SQS"
    assert refers_to(sqs["Properties"]["Queue"], "ReconcileQueue")
    assert sqs["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    env = function["Environment"]["Variables"]
    assert env["ECR_BACKUP_RECONCILE_QUEUE_URL"] == {"Ref": "ReconcileQueue"}
    assert env["ECR_BACKUP_REPLICATE_QUEUE_URL"] == {"Ref": "EventQueue"}
    queue = props(resources, "ReconcileQueue")
    assert queue["VisibilityTimeout"] >= 6 * function["Timeout"]
    assert refers_to(queue["RedrivePolicy"]["deadLetterTargetArn"], "ReconcileDeadLetterQueue")


def test_reconcile_environment_names_real_settings(resources: dict[str, Any]) -> None:
    env = props(resources, "ReconcileFunction")["Environment"]["Variables"]
    names = {k for k in env if k.startswith(ENV_PREFIX)}
    fields = (*Settings.model_fields, *ReconcileConfig.model_fields)
    known = {ENV_PREFIX + f.upper() for f in fields}
    assert names <= known, names - known
    assert {"ECR_BACKUP_BUCKET", "ECR_BACKUP_TABLE", "ECR_BACKUP_RECONCILE_QUEUE_URL"} <= names


def test_reconcile_role_grants_exactly_what_reconcile_calls(transformed: dict[str, Any]) -> None:
    statements = function_role_statements(transformed, "ReconcileFunction")
    granted = {a for s in statements for a in listify(s["Action"])}
    assert granted == RECONCILE_ACTIONS
    assert privilege_problems(statements) == []


def test_reconcile_role_reads_ecr_and_sends_only_to_its_queues(
    transformed: dict[str, Any],
) -> None:
    statements = function_role_statements(transformed, "ReconcileFunction")
    for statement in statements:
        for action in listify(statement["Action"]):
            if action.startswith("ecr:"):
                assert action.startswith(("ecr:Describe", "ecr:List")), action
    by_sid = {s["Sid"]: s for s in statements}
    senders = [s for s in statements if "sqs:SendMessage" in listify(s["Action"])]
    assert senders == [by_sid["OwnQueues"]]
    targets = by_sid["OwnQueues"]["Resource"]
    assert len(targets) == 2
    assert refers_to(targets[0], "ReconcileQueue") and refers_to(targets[1], "EventQueue")
    assert refers_to(by_sid["ConsumeQueue"]["Resource"], "ReconcileQueue")
    # Event records only: never a blob, never a delete.
    grants = [s for s in statements if s["Effect"] == "Allow"]
    (objects,) = [s for s in grants if any(a.startswith("s3:") for a in listify(s["Action"]))]
    assert objects["Action"] == "s3:PutObject"
    assert objects["Resource"]["Fn::Sub"][0].endswith("/${BucketPrefix}refs/*")
    assert by_sid["SourceAccountsList"]["Resource"] == {
        "Fn::Sub": f"arn:${{AWS::Partition}}:iam::*:role/{SOURCE_READ_ROLE}"
    }


def test_alarm_when_images_stay_missing_across_two_runs(resources: dict[str, Any]) -> None:
    alarm = props(resources, "ImagesStillMissingAlarm")
    env = props(resources, "ReconcileFunction")["Environment"]["Variables"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (
        env["POWERTOOLS_METRICS_NAMESPACE"],
        "ImagesStillMissing",
    )
    # Powertools publishes every metric with the service as its one dimension.
    assert alarm["Dimensions"] == [{"Name": "service", "Value": env["POWERTOOLS_SERVICE_NAME"]}]
    assert (alarm["Statistic"], alarm["Threshold"]) == ("Sum", 0)
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    dlq = props(resources, "ReconcileDeadLetterQueueAlarm")
    assert dlq["Dimensions"][0]["Value"] == {
        "Fn::GetAtt": ["ReconcileDeadLetterQueue", "QueueName"]
    }


def test_source_account_role_lets_the_backup_account_list_ecr_read_only() -> None:
    source = load(ROOT / "templates" / "source-account.yaml")["Resources"]
    role = source["SourceReadRole"]["Properties"]
    assert role["RoleName"] == SOURCE_READ_ROLE
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    # The backup account's named roles when given (a StackSet passes its ReconcileRoleArn),
    # else the backup account, whose own IAM decides.
    assert trust["Principal"] == {
        "AWS": {
            "Fn::If": [
                "TrustsNamedPrincipals",
                {"Ref": "BackupReadPrincipalArns"},
                {"Fn::Sub": "arn:${AWS::Partition}:iam::${BackupAccountId}:root"},
            ]
        }
    }
    (policy,) = role["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert sorted(statement["Action"]) == [
        "ecr:DescribeImages",
        "ecr:DescribeRepositories",
        "ecr:ListImages",
    ]
    assert statement["Resource"]["Fn::Sub"].endswith(":repository/${RepositoryPrefix}*")
