"""template.yaml and templates/source-account.yaml keep the security properties the backup
depends on: write-once storage, encryption, TLS only, least privilege, a wired DLQ."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path
from typing import Any

from cfnlint.decode import decode_str

from ecr_backup.settings import ENV_PREFIX, Settings
from ecr_backup.storage import schema

ROOT = Path(__file__).resolve().parents[2]

# Anything that could destroy, shorten or unlock a backup, or widen access to it.
FORBIDDEN_ACTIONS = (
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:DeleteBucket",
    "s3:DeleteBucketPolicy",
    "s3:BypassGovernanceRetention",
    "s3:PutObjectLegalHold",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutBucketPolicy",
    "s3:PutBucketVersioning",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketAcl",
    "s3:PutObjectAcl",
    "s3:PutEncryptionConfiguration",
    "dynamodb:DeleteItem",
    "dynamodb:DeleteTable",
    "dynamodb:UpdateTable",
    "dynamodb:UpdateContinuousBackups",
    "kms:ScheduleKeyDeletion",
    "kms:DisableKey",
    "kms:PutKeyPolicy",
    "iam:PassRole",
)
# The only actions AWS authorizes on "*" alone.
STAR_RESOURCE_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
}
# What the engine calls (ecr_backup.registry.client/blobstore/index), and nothing more; adding an
# action means changing this list on purpose. ecr:DescribeImages is not called today: the
# issue grants it as the read-only half of "read ECR".
FUNCTION_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:DescribeImages",
    "s3:PutObject",
    "s3:GetObject",
    "s3:AbortMultipartUpload",
    "s3:PutObjectRetention",  # extending locks (maintenance.locks); never shortening
    "s3:ListBucket",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",  # claims, conditional against a concurrent prune
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "kms:GenerateDataKey",
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:DescribeKey",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
}


def load(path: Path) -> dict[str, Any]:
    template, matches = decode_str(path.read_text())
    assert not matches, matches
    # Plain dicts and lists: the decoder's node classes compare oddly with literals.
    plain: dict[str, Any] = json.loads(json.dumps(template))
    return plain


def props(resources: dict[str, Any], name: str) -> dict[str, Any]:
    properties: dict[str, Any] = resources[name]["Properties"]
    return properties


def listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def refers_to(value: Any, name: str) -> bool:
    """Whether an intrinsic (Ref, GetAtt) names the resource."""
    return value in ({"Ref": name}, {"Fn::GetAtt": [name, "Arn"]}, {"Fn::GetAtt": f"{name}.Arn"})


# --- the bucket ------------------------------------------------------------------------


def test_bucket_is_versioned_with_object_lock_default_retention(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    bucket = props(resources, "BackupBucket")
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["ObjectLockEnabled"] is True
    lock = bucket["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    assert lock["Rule"]["DefaultRetention"] == {
        "Mode": {"Ref": "ObjectLockMode"},
        "Days": {"Ref": "ObjectLockDays"},
    }
    mode = template["Parameters"]["ObjectLockMode"]
    assert mode["Default"] == "GOVERNANCE"
    assert sorted(mode["AllowedValues"]) == ["COMPLIANCE", "GOVERNANCE"]
    assert template["Parameters"]["ObjectLockDays"]["MinValue"] >= 1


def test_bucket_survives_stack_deletion(resources: dict[str, Any]) -> None:
    for name in ("BackupBucket", "IndexTable", "BackupKey"):
        assert resources[name]["DeletionPolicy"] == "Retain", name
        assert resources[name]["UpdateReplacePolicy"] == "Retain", name


def test_bucket_encrypts_with_a_rotated_customer_key_and_bucket_keys(
    resources: dict[str, Any],
) -> None:
    (rule,) = props(resources, "BackupBucket")["BucketEncryption"][
        "ServerSideEncryptionConfiguration"
    ]
    default = rule["ServerSideEncryptionByDefault"]
    assert default["SSEAlgorithm"] == "aws:kms"
    assert refers_to(default["KMSMasterKeyID"], "BackupKey")
    assert resources["BackupKey"]["Type"] == "AWS::KMS::Key"
    assert props(resources, "BackupKey")["EnableKeyRotation"] is True
    assert rule["BucketKeyEnabled"] is True


def test_bucket_blocks_public_access_and_acls(resources: dict[str, Any]) -> None:
    bucket = props(resources, "BackupBucket")
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}


def test_bucket_aborts_incomplete_multipart_uploads(resources: dict[str, Any]) -> None:
    rules = props(resources, "BackupBucket")["LifecycleConfiguration"]["Rules"]
    aborts = [r for r in rules if "AbortIncompleteMultipartUpload" in r]
    assert any(
        r["Status"] == "Enabled" and r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] >= 1
        for r in aborts
    )
    # A lifecycle rule that expires objects would delete backups behind Object Lock's back;
    # noncurrent versions expire only after the lock period (tested with retention below).
    assert not any("Expiration" in r or "ExpirationInDays" in r for r in rules)


def test_bucket_policy_denies_every_request_without_tls(resources: dict[str, Any]) -> None:
    policy = props(resources, "BackupBucketPolicy")
    assert refers_to(policy["Bucket"], "BackupBucket")
    deny = [
        s
        for s in policy["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny"
        and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False)
    ]
    assert len(deny) == 1
    (statement,) = deny
    assert statement["Principal"] == "*"
    assert statement["Action"] in ("s3:*", ["s3:*"])
    assert sorted(json.dumps(r) for r in statement["Resource"]) == sorted(
        [
            json.dumps({"Fn::GetAtt": ["BackupBucket", "Arn"]}),
            json.dumps({"Fn::Sub": "${BackupBucket.Arn}/*"}),
        ]
    )


def test_existing_bucket_replaces_the_created_one_everywhere(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    assert resources["BackupBucket"]["Condition"] == "CreateBucket"
    assert resources["BackupBucketPolicy"]["Condition"] == "CreateBucket"
    assert template["Conditions"]["CreateBucket"] == {
        "Fn::Equals": [{"Ref": "ExistingBucketName"}, ""]
    }
    chosen = {"Fn::If": ["CreateBucket", {"Ref": "BackupBucket"}, {"Ref": "ExistingBucketName"}]}
    env = props(resources, "ReplicateFunction")["Environment"]["Variables"]
    assert env["ECR_BACKUP_BUCKET"] == chosen
    assert template["Outputs"]["BucketName"]["Value"] == chosen
    # A bare {"Ref": "BackupBucket"} outside a CreateBucket resource would break the stack
    # when an existing bucket is used.
    for name, resource in resources.items():
        if resource.get("Condition") == "CreateBucket":
            continue
        text = json.dumps(resource).replace(json.dumps(chosen), "")
        assert '{"Ref": "BackupBucket"}' not in text, name
        assert '"BackupBucket", "Arn"' not in text, name


# --- the index table -------------------------------------------------------------------


def test_table_matches_the_single_schema_definition(resources: dict[str, Any]) -> None:
    table = props(resources, "IndexTable")
    assert table["KeySchema"] == schema.KEY_SCHEMA
    assert table["AttributeDefinitions"] == schema.ATTRIBUTE_DEFINITIONS
    assert table["BillingMode"] == schema.BILLING_MODE
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["DeletionProtectionEnabled"] is True
    sse = table["SSESpecification"]
    assert sse["SSEEnabled"] is True
    assert sse["SSEType"] == "KMS"
    assert refers_to(sse["KMSMasterKeyId"], "BackupKey")


# --- events, queue, DLQ ----------------------------------------------------------------


def test_rule_matches_every_ecr_event_kind_acted_on(resources: dict[str, Any]) -> None:
    """The pattern's shape; tests/infra/test_event_rules.py runs it on AWS's samples."""
    rule = props(resources, "EcrImageActionRule")
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.ecr"]
    condition, with_cache, without_cache = pattern["$or"]["Fn::If"]
    assert condition == "BackUpPullThroughCache"
    kinds = {kind for branch in with_cache for kind in branch["detail-type"]}
    assert kinds == {
        "ECR Image Action",
        "ECR Referrer Action",
        "ECR Replication Action",
        "ECR Pull Through Cache Action",
    }
    assert with_cache[:2] == without_cache
    for branch in with_cache:
        status = branch["detail"].get("result") or branch["detail"]["sync-status"]
        assert status == ["SUCCESS"]
    # The repository filter is optional: absent (match all) unless a prefix is given.
    assert pattern["detail"] == {
        "Fn::If": [
            "HasRepositoryPrefix",
            {"repository-name": [{"prefix": {"Ref": "RepositoryPrefix"}}]},
            {"Ref": "AWS::NoValue"},
        ]
    }
    assert "account" not in pattern  # forwarded source-account events must match too
    (target,) = rule["Targets"]
    assert refers_to(target["Arn"], "EventQueue")


def test_only_the_rule_may_send_to_the_queue(resources: dict[str, Any]) -> None:
    policy = props(resources, "EventQueuePolicy")
    assert policy["Queues"] == [{"Ref": "EventQueue"}]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert refers_to(statement["Resource"], "EventQueue")
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["EcrImageActionRule", "Arn"]}}
    }


def test_failed_events_end_in_the_dead_letter_queue(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    queue = props(resources, "EventQueue")
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
        "maxReceiveCount": {"Ref": "MaxReceiveCount"},
    }
    assert template["Parameters"]["MaxReceiveCount"]["MinValue"] >= 1
    # The DLQ keeps the original enqueue time: it must outlive the source queue's retention.
    assert (
        props(resources, "DeadLetterQueue")["MessageRetentionPeriod"]
        > queue["MessageRetentionPeriod"]
    )


def test_visibility_timeout_is_at_least_six_function_timeouts(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    function = props(resources, "ReplicateFunction")
    assert function["Timeout"] == {"Ref": "FunctionTimeout"}
    lookup = {"Fn::FindInMap": ["Timing", {"Ref": "FunctionTimeout"}, "VisibilityTimeout"]}
    assert props(resources, "EventQueue")["VisibilityTimeout"] == lookup
    allowed = template["Parameters"]["FunctionTimeout"]["AllowedValues"]
    timing = template["Mappings"]["Timing"]
    assert sorted(timing, key=int) == sorted(str(v) for v in allowed)
    for timeout, row in timing.items():
        assert row["VisibilityTimeout"] >= 6 * int(timeout), timeout
        assert row["VisibilityTimeout"] <= 43200  # SQS maximum
        assert row["BacklogAlarmSeconds"] == 2 * row["VisibilityTimeout"]  # as documented
        assert int(timeout) <= 900  # Lambda maximum


def test_function_reports_batch_item_failures_with_bounded_concurrency(
    transformed: dict[str, Any],
) -> None:
    mappings = [
        r["Properties"]
        for r in transformed["Resources"].values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
    ]
    # The replicate function reads the event queue; the reconcile function its own queue.
    assert len(mappings) == 2
    for mapping in mappings:
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert "MaximumConcurrency" in mapping["ScalingConfig"]
    (mapping,) = [m for m in mappings if refers_to(m["FunctionName"], "ReplicateFunction")]
    assert refers_to(mapping["EventSourceArn"], "EventQueue")
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "MaximumConcurrency"}}


# --- the function, its layer and its role ------------------------------------------------


def test_function_runs_python313_on_the_architecture_parameter(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    architecture = template["Parameters"]["Architecture"]
    assert architecture["Default"] == "arm64"
    assert sorted(architecture["AllowedValues"]) == ["arm64", "x86_64"]
    function = props(resources, "ReplicateFunction")
    assert function["Runtime"] == "python3.13"
    assert function["Handler"] == "replicate.handler"
    assert (ROOT / function["CodeUri"] / "replicate.py").is_file()
    assert function["Architectures"] == [{"Ref": "Architecture"}]
    assert function["Layers"] == [{"Ref": "SharedLayer"}]
    layer = resources["SharedLayer"]
    assert layer["Properties"]["ContentUri"].rstrip("/") == "shared"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == [{"Ref": "Architecture"}]
    # Without this, sam build would compile the layer's wheels (pydantic-core) for x86_64.
    assert layer["Metadata"] == {
        "BuildMethod": "python3.13",
        "BuildArchitecture": {"Ref": "Architecture"},
    }


def test_layer_requirements_cover_the_package_dependencies() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {_name(d) for d in pyproject["project"]["dependencies"]}
    lines = (ROOT / "shared" / "requirements.txt").read_text().splitlines()
    shipped = {_name(line) for line in lines if line.strip() and not line.startswith("#")}
    assert needed <= shipped


def test_function_is_traced_by_lambda_without_the_xray_sdk(resources: dict[str, Any]) -> None:
    # Active tracing records every invocation without code in the function; the X-Ray SDK
    # (Powertools' Tracer extra) reaches end of support on 2027-02-25 and slowed cold starts.
    assert props(resources, "ReplicateFunction")["Tracing"] == "Active"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lines = (ROOT / "shared" / "requirements.txt").read_text().splitlines()
    lines += (ROOT / "handlers" / "requirements.txt").read_text().splitlines()
    for requirement in [*pyproject["project"]["dependencies"], *lines]:
        if requirement.strip() and not requirement.startswith("#"):
            assert "tracer" not in requirement and "xray" not in requirement, requirement


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement.strip(), maxsplit=1)[0].lower()


def test_function_environment_is_valid_settings(resources: dict[str, Any]) -> None:
    env = props(resources, "ReplicateFunction")["Environment"]["Variables"]
    names = {k for k in env if k.startswith(ENV_PREFIX)}
    assert {"ECR_BACKUP_BUCKET", "ECR_BACKUP_TABLE", "ECR_BACKUP_PREFIX"} <= names
    # Every variable names a real setting (a typo would silently be ignored at runtime).
    fields = {ENV_PREFIX + f.upper() for f in Settings.model_fields}
    assert names <= fields
    assert env["ECR_BACKUP_TABLE"] == {"Ref": "IndexTable"}
    assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"} <= set(env)


def function_role_statements(
    transformed: dict[str, Any], function_name: str = "ReplicateFunction"
) -> list[dict[str, Any]]:
    """Every statement granting the deployed function's role anything: inline policies,
    managed policies (refused: their content is not in the template), and standalone
    policy resources attached to the role - whatever SAM generated. A conditional
    statement counts as granted (its condition may hold)."""
    resources = transformed["Resources"]
    function = resources[function_name]["Properties"]
    role_ref = function["Role"]
    assert isinstance(role_ref, dict) and "Fn::GetAtt" in role_ref, role_ref
    role_name = listify(role_ref["Fn::GetAtt"])[0].split(".")[0]
    role = resources[role_name]["Properties"]
    assert not role.get("ManagedPolicyArns"), "managed policies hide their '*' resources"
    statements: list[dict[str, Any]] = []
    for policy in role.get("Policies", []):
        for statement in listify(policy["PolicyDocument"]["Statement"]):
            statements.append(statement["Fn::If"][1] if "Fn::If" in statement else statement)
    for resource in resources.values():
        attached = resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and {
            "Ref": role_name
        } in resource["Properties"].get("Roles", [])
        if attached:
            statements.extend(listify(resource["Properties"]["PolicyDocument"]["Statement"]))
    return statements


def privilege_problems(
    statements: list[dict[str, Any]], allowed: frozenset[str] = frozenset()
) -> list[str]:
    problems = []
    for statement in statements:
        sid = statement.get("Sid", "?")
        if statement["Effect"] != "Allow":
            continue
        if "NotAction" in statement or "NotResource" in statement:
            problems.append(f"{sid}: NotAction/NotResource grants everything else")
            continue
        actions = listify(statement["Action"])
        for pattern in actions:
            for forbidden in set(FORBIDDEN_ACTIONS) - allowed:
                if fnmatch.fnmatchcase(forbidden.lower(), pattern.lower()):
                    problems.append(f"{sid}: {pattern} allows {forbidden}")
        if "*" in listify(statement["Resource"]):
            wide = set(actions) - STAR_RESOURCE_ACTIONS
            if wide:
                problems.append(f"{sid}: {sorted(wide)} on resource '*'")
    return problems


def test_privilege_checker_catches_what_it_must() -> None:
    # The checker below must not pass vacuously.
    assert privilege_problems([{"Effect": "Allow", "Action": "s3:*", "Resource": "x"}])
    assert privilege_problems([{"Effect": "Allow", "Action": "s3:Delete*", "Resource": "x"}])
    assert privilege_problems(
        [{"Effect": "Allow", "Action": "s3:BypassGovernanceRetention", "Resource": "x"}]
    )
    assert privilege_problems([{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}])
    assert privilege_problems([{"Effect": "Allow", "NotAction": "s3:Get*", "Resource": "x"}])
    assert not privilege_problems(
        [{"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}]
    )


def test_function_role_cannot_delete_unlock_or_reach_beyond_its_resources(
    transformed: dict[str, Any],
) -> None:
    statements = function_role_statements(transformed)
    assert statements
    assert privilege_problems(statements) == []


def test_function_role_grants_exactly_what_the_engine_calls(transformed: dict[str, Any]) -> None:
    assert granted(transformed, "ReplicateFunction") == FUNCTION_ACTIONS


def test_no_function_role_may_acknowledge_a_deletion_surge(transformed: dict[str, Any]) -> None:
    # An acknowledgement releases a mass deletion to prune: a person's decision, never a
    # function's, whatever else the function's role allows on the bucket.
    writers = [
        name
        for name, resource in transformed["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function"
        and "s3:PutObject" in granted(transformed, name)
    ]
    assert {"ReplicateFunction", "ReconcileFunction"} <= set(writers)
    for function in writers:
        denies = [
            s
            for s in function_role_statements(transformed, function)
            if s["Effect"] == "Deny" and s.get("Sid") == "NoSurgeAcknowledgement"
        ]
        assert len(denies) == 1, function
        assert listify(denies[0]["Action"]) == ["s3:PutObject"]
        resource = denies[0]["Resource"]["Fn::Sub"][0]
        assert resource == "arn:${AWS::Partition}:s3:::${Bucket}/${BucketPrefix}refs/_audit/*"


def test_function_role_scopes_each_service_to_its_resource(transformed: dict[str, Any]) -> None:
    by_sid = {s["Sid"]: s for s in function_role_statements(transformed)}
    assert by_sid["EcrReadImages"]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:ecr:*:*:repository/${RepositoryPrefix}*"
    }
    objects = by_sid["BucketWriteOnce"]["Resource"]["Fn::Sub"]
    assert objects[0] == "arn:${AWS::Partition}:s3:::${Bucket}/${BucketPrefix}*"
    assert refers_to(by_sid["IndexTable"]["Resource"], "IndexTable")
    assert refers_to(by_sid["BackupKey"]["Resource"][0], "BackupKey")
    assert refers_to(by_sid["ConsumeQueue"]["Resource"], "EventQueue")
    assert refers_to(by_sid["Logs"]["Resource"], "ReplicateLogGroup")


# --- optional AWS Backup copy, alarms, outputs -----------------------------------------


def test_aws_backup_plan_copies_the_bucket_to_the_given_vault(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    assert template["Conditions"]["HasBackupVault"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "BackupVaultArn"}, ""]}]
    }
    for name in (
        "LocalBackupVault",
        "BackupServiceRole",
        "BucketBackupPlan",
        "BucketBackupSelection",
    ):
        assert resources[name]["Condition"] == "HasBackupVault", name
    (rule,) = props(resources, "BucketBackupPlan")["BackupPlan"]["BackupPlanRule"]
    assert rule["TargetBackupVault"] == {"Ref": "LocalBackupVault"}
    (copy,) = rule["CopyActions"]
    assert copy["DestinationBackupVaultArn"] == {"Ref": "BackupVaultArn"}
    selection = props(resources, "BucketBackupSelection")["BackupSelection"]
    assert refers_to(selection["IamRoleArn"], "BackupServiceRole")
    (bucket,) = selection["Resources"]
    assert bucket["Fn::Sub"][0] == "arn:${AWS::Partition}:s3:::${Bucket}"


def test_alarms_watch_the_dlq_and_function_errors(resources: dict[str, Any]) -> None:
    alarms = {
        name: r["Properties"]
        for name, r in resources.items()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    dlq = alarms["DeadLetterQueueAlarm"]
    assert (dlq["Namespace"], dlq["MetricName"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
    )
    assert dlq["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}
    ]
    errors = alarms["FunctionErrorsAlarm"]
    assert (errors["Namespace"], errors["MetricName"]) == ("AWS/Lambda", "Errors")
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "ReplicateFunction"}}]
    for alarm in (dlq, errors):
        assert alarm["Threshold"] == 0
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    subscription = resources["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}


def test_every_function_that_can_fail_unseen_has_an_errors_alarm(
    resources: dict[str, Any],
) -> None:
    """A scheduled function that keeps failing is silent otherwise: a maintenance pass that
    never completes lets the locks of kept images run out (ObjectLockDays days later)."""
    functions = {n for n, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}
    watched: dict[str, dict[str, Any]] = {}
    for alarm in (
        r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"
    ):
        if (alarm.get("Namespace"), alarm.get("MetricName")) == ("AWS/Lambda", "Errors"):
            (dimension,) = alarm["Dimensions"]
            assert dimension["Name"] == "FunctionName"
            watched[dimension["Value"]["Ref"]] = alarm
    assert set(watched) == functions
    for name in functions - {"ReplicateFunction"}:
        alarm = watched[name]
        # Hourly sums over a day, one failed run enough: a daily job's failure stays in ALARM
        # until a run has gone a whole day without one, instead of flapping back to OK.
        assert (alarm["Statistic"], alarm["Period"]) == ("Sum", 3600)
        assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (24, 1)
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
        assert alarm["TreatMissingData"] == "notBreaching"
    assert "lock" in watched["MaintainFunction"]["AlarmDescription"]


def test_outputs_name_what_an_operator_needs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    for name in (
        "BucketName",
        "TableName",
        "QueueUrl",
        "DeadLetterQueueUrl",
        "DeadLetterQueueArn",
        "FunctionName",
        "FunctionRoleArn",
    ):
        assert name in outputs, name


# --- separate backup account mode ------------------------------------------------------


def test_backup_account_accepts_events_only_from_listed_source_accounts(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    assert template["Parameters"]["SourceAccountIds"]["Type"] == "CommaDelimitedList"
    policy = resources["SourceAccountsEventBusPolicy"]
    # Listed accounts are granted one by one only without an Organization
    # (tests/infra/test_organization.py covers organization mode).
    assert policy["Condition"] == "GrantsSourceAccounts"
    assert template["Conditions"]["GrantsSourceAccounts"] == {
        "Fn::And": [
            {"Condition": "HasSourceAccounts"},
            {"Fn::Not": [{"Condition": "HasOrganization"}]},
        ]
    }
    statement = policy["Properties"]["Statement"]
    assert statement["Principal"] == {"AWS": {"Ref": "SourceAccountIds"}}
    assert statement["Action"] == "events:PutEvents"


def test_source_account_template_forwards_events_and_grants_pull_only() -> None:
    source = load(ROOT / "templates" / "source-account.yaml")["Resources"]
    registry_policy = source["BackupPullRegistryPolicy"]
    assert registry_policy["Type"] == "AWS::ECR::RegistryPolicy"
    (statement,) = registry_policy["Properties"]["PolicyText"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"AWS": {"Ref": "BackupFunctionRoleArn"}}
    assert sorted(statement["Action"]) == [
        "ecr:BatchGetImage",
        "ecr:DescribeImages",
        "ecr:GetDownloadUrlForLayer",
    ]
    rule = source["ForwardEcrImageActionsRule"]["Properties"]
    assert rule["EventPattern"]["source"] == ["aws.ecr"]
    forwarded = {kind for branch in rule["EventPattern"]["$or"] for kind in branch["detail-type"]}
    assert "ECR Pull Through Cache Action" in forwarded and len(forwarded) == 4
    (target,) = rule["Targets"]
    assert target["Arn"]["Fn::Sub"][0].endswith(":${BackupAccountId}:event-bus/default")
    assert refers_to(target["RoleArn"], "ForwardRole")
    (forward,) = source["ForwardRole"]["Properties"]["Policies"]
    (put,) = forward["PolicyDocument"]["Statement"]
    assert put["Action"] == "events:PutEvents"
    assert put["Resource"] == target["Arn"]


def test_samconfig_deploys_with_the_documented_defaults() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())["default"]
    deploy = config["deploy"]["parameters"]
    assert config["global"]["parameters"]["stack_name"] == "ecr-backup"
    assert deploy["resolve_s3"] is True
    assert "CAPABILITY_IAM" in deploy["capabilities"].split()
    assert deploy["confirm_changeset"] is True
    parameters = load(ROOT / "template.yaml")["Parameters"]
    for override in deploy["parameter_overrides"].split():
        name, _, value = override.partition("=")
        assert name in parameters, name
        allowed = parameters[name].get("AllowedValues")
        assert allowed is None or value in [str(a) for a in allowed], override


# --- retention: lock extension, maintenance, prune -----------------------------------------

FUNCTIONS = ("ReplicateFunction", "MaintainFunction", "PruneFunction")
DELETE_ACTIONS = frozenset({"s3:DeleteObject", "dynamodb:DeleteItem"})


def granted(transformed: dict[str, Any], function_name: str) -> set[str]:
    statements = function_role_statements(transformed, function_name)
    return {a for s in statements if s["Effect"] == "Allow" for a in listify(s["Action"])}


def test_each_function_has_its_own_role(transformed: dict[str, Any]) -> None:
    roles = {
        json.dumps(transformed["Resources"][f]["Properties"]["Role"], sort_keys=True)
        for f in FUNCTIONS
    }
    assert len(roles) == len(FUNCTIONS)


def test_prune_role_is_the_only_one_that_deletes_and_only_blobs_and_object_items(
    transformed: dict[str, Any],
) -> None:
    for function in ("ReplicateFunction", "MaintainFunction"):
        assert privilege_problems(function_role_statements(transformed, function)) == []
    prune = function_role_statements(transformed, "PruneFunction")
    assert privilege_problems(prune, allowed=DELETE_ACTIONS) == []
    by_sid = {s["Sid"]: s for s in prune}
    deleting = [s for s in prune if DELETE_ACTIONS & set(listify(s["Action"]))]
    assert {s["Sid"] for s in deleting} == {"DeleteBlobs", "IndexDeleteObjectItems"}
    assert listify(by_sid["DeleteBlobs"]["Action"]) == ["s3:DeleteObject"]
    blobs = by_sid["DeleteBlobs"]["Resource"]["Fn::Sub"]
    assert blobs[0] == "arn:${AWS::Partition}:s3:::${Bucket}/${BucketPrefix}blobs/*"
    items = by_sid["IndexDeleteObjectItems"]
    assert listify(items["Action"]) == ["dynamodb:DeleteItem"]
    assert refers_to(items["Resource"], "IndexTable")
    assert items["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["BLOB#*", "PRUNE"]}
    }
    assert not {"s3:PutObjectRetention", "s3:PutObjectLegalHold"} & granted(
        transformed, "PruneFunction"
    )


def test_replicate_role_gained_only_lock_extension_on_s3(transformed: dict[str, Any]) -> None:
    s3_actions = {a for a in granted(transformed, "ReplicateFunction") if a.startswith("s3:")}
    write_once = {"s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:ListBucket"}
    assert s3_actions - write_once == {"s3:PutObjectRetention"}
    by_sid = {s["Sid"]: s for s in function_role_statements(transformed)}
    extend = by_sid["ExtendLocks"]["Resource"]["Fn::Sub"]
    assert extend[0] == "arn:${AWS::Partition}:s3:::${Bucket}/${BucketPrefix}blobs/*"


def test_maintain_role_extends_locks_and_deletes_nothing(transformed: dict[str, Any]) -> None:
    assert granted(transformed, "MaintainFunction") == {
        "s3:GetObject",
        "s3:PutObjectRetention",
        "s3:ListBucket",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:Query",
        "dynamodb:Scan",
        "kms:Decrypt",
        "kms:Encrypt",
        "kms:GenerateDataKey",
        "kms:DescribeKey",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }


def test_noncurrent_versions_expire_after_the_lock_period_and_nothing_current_does(
    resources: dict[str, Any],
) -> None:
    rules = props(resources, "BackupBucket")["LifecycleConfiguration"]["Rules"]
    by_id = {r["Id"]: r for r in rules}
    noncurrent = by_id["expire-noncurrent-blob-versions"]
    assert noncurrent["Status"] == "Enabled"
    assert noncurrent["Prefix"] == {"Fn::Sub": "${BucketPrefix}blobs/"}
    # At least the lock period: the very parameter the default retention uses.
    assert noncurrent["NoncurrentVersionExpiration"]["NoncurrentDays"] == {"Ref": "ObjectLockDays"}
    retention = props(resources, "BackupBucket")["ObjectLockConfiguration"]["Rule"]
    assert retention["DefaultRetention"]["Days"] == {"Ref": "ObjectLockDays"}
    for rule in rules:  # an expiration of current versions would break shared layers
        assert not {"ExpirationInDays", "ExpirationDate", "ExpiredObjectDeleteMarker"} & set(rule)


def test_scheduled_functions_get_the_retention_settings(resources: dict[str, Any]) -> None:
    fields = {ENV_PREFIX + f.upper() for f in Settings.model_fields}
    for function in ("MaintainFunction", "PruneFunction"):
        function_props = props(resources, function)
        env = function_props["Environment"]["Variables"]
        names = {k for k in env if k.startswith(ENV_PREFIX)}
        assert names <= fields
        assert env["ECR_BACKUP_LOCK_DAYS"] == {"Ref": "ObjectLockDays"}
        assert env["ECR_BACKUP_KEEP_DELETED_DAYS"] == {"Ref": "KeepDeletedDays"}
        assert env["ECR_BACKUP_KEEP_PER_TAG"] == {"Ref": "KeepPerTag"}
        assert env["ECR_BACKUP_PRUNE_GRACE_HOURS"] == {"Ref": "PruneGraceHours"}
        (event,) = function_props["Events"].values()
        assert event["Type"] == "Schedule"
    replicate = props(resources, "ReplicateFunction")["Environment"]["Variables"]
    assert replicate["ECR_BACKUP_LOCK_DAYS"] == {"Ref": "ObjectLockDays"}


def test_drill_role_reads_and_writes_only_its_run_summary(transformed: dict[str, Any]) -> None:
    statements = function_role_statements(transformed, "DrillFunction")
    assert privilege_problems(statements) == []
    assert granted(transformed, "DrillFunction") == {
        "s3:GetObject",
        "s3:ListBucket",
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:Scan",
        "dynamodb:BatchGetItem",
        "dynamodb:UpdateItem",
        "kms:Decrypt",
        "kms:DescribeKey",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        # DrillRestore only, on its scratch repositories (and the token, "*" only).
        "ecr:GetAuthorizationToken",
        "ecr:CreateRepository",
        "ecr:DeleteRepository",
        "ecr:DescribeRepositories",
        "ecr:BatchCheckLayerAvailability",
        "ecr:InitiateLayerUpload",
        "ecr:UploadLayerPart",
        "ecr:CompleteLayerUpload",
        "ecr:PutImage",
        "ecr:BatchGetImage",
    }
    by_sid = {s["Sid"]: s for s in statements}
    assert by_sid["ScratchRepositories"]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}"
        ":repository/ecr-backup-drill-*"
    }
    scratch = transformed["Resources"]["DrillRole"]["Properties"]["Policies"][0]
    conditional = [s for s in scratch["PolicyDocument"]["Statement"] if "Fn::If" in s]
    assert {s["Fn::If"][0] for s in conditional} == {"DrillRestores"}
    (writes,) = [s for s in statements if "dynamodb:UpdateItem" in listify(s["Action"])]
    assert writes["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["RUN#*"]}}
    schedule = props(transformed["Resources"], "DrillFunctionDaily")
    assert schedule["ScheduleExpression"] == "rate(1 day)"


def test_push_to_durable_latency_alarms_on_its_p99(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    alarm = props(resources, "LatencyAlarm")
    assert (alarm["Namespace"], alarm["MetricName"]) == ("EcrBackup", "PushToDurableLatency")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "ecr-backup"}]
    assert alarm["ExtendedStatistic"] == "p99" and "Statistic" not in alarm
    assert alarm["Threshold"] == {"Ref": "LatencyAlarmSeconds"}
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert template["Parameters"]["LatencyAlarmSeconds"]["Default"] == 300
    assert refers_to(alarm["AlarmActions"][0], "AlarmTopic")
    # The batch settings the latency bench reads (bench/latency_bench.py) are the ones wired.
    queue = props(resources, "ReplicateFunction")["Events"]["EcrEvents"]["Properties"]
    assert queue["BatchSize"] == {"Ref": "BatchSize"}
    assert queue["MaximumBatchingWindowInSeconds"] == {"Ref": "BatchingWindowSeconds"}
    assert queue["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "MaximumConcurrency"}
