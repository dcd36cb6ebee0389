"""`ecr-backup status` against moto: a stack with the template's alarms and queues (created
as CloudFormation names them: moto's CloudFormation does not create alarms), the index of
a real backup, and the run summaries the scheduled jobs record."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from ecr_backup.cli import main
from ecr_backup.coverage.reconcile import MissingImage as DriftMissing
from ecr_backup.coverage.reconcile import RepositoryDrift, Source
from ecr_backup.maintenance.maintain import MaintainReport
from ecr_backup.maintenance.prune import PruneReport
from ecr_backup.model import Action, ImageEvent
from ecr_backup.oci.digest import Digest
from ecr_backup.registry.ecr_listing import EcrImage
from ecr_backup.status.runs import (
    MISSING_KEPT,
    last_reconciles,
    record_maintain,
    record_prune,
    record_reconcile,
)
from ecr_backup.status.service import summarize_reconciles
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex, Location
from ecr_backup.storage.runs import RunLog
from tests.helpers import BUCKET, TABLE, Backup
from tests.infra.test_template import ROOT, load

STACK = "ecr-backup"
PREFIX = "backup/"
ALARMS = sorted(
    name
    for name, resource in load(ROOT / "template.yaml")["Resources"].items()
    if resource["Type"] == "AWS::CloudWatch::Alarm"
)
QUEUES = {
    "DeadLetterQueue": None,
    "EventQueue": "DeadLetterQueue",
    "ReconcileDeadLetterQueue": None,
    "ReconcileQueue": "ReconcileDeadLetterQueue",
}


def stack_template() -> str:
    """The deployed stack's queues, outputs and parameters status reads (moto deploys it)."""
    resources: dict[str, Any] = {}
    for name, dead_letter in QUEUES.items():
        properties: dict[str, Any] = {}
        if dead_letter:
            properties["RedrivePolicy"] = {
                "deadLetterTargetArn": {"Fn::GetAtt": [dead_letter, "Arn"]},
                "maxReceiveCount": 5,
            }
        resources[name] = {"Type": "AWS::SQS::Queue", "Properties": properties}
    parameters = {
        name: {"Type": "String"}
        for name in ("BucketName", "TableName", "BucketPrefix", "ObjectLockDays")
    }
    outputs = {
        "BucketName": {"Value": {"Ref": "BucketName"}},
        "TableName": {"Value": {"Ref": "TableName"}},
        "DeadLetterQueueUrl": {"Value": {"Ref": "DeadLetterQueue"}},
    }
    return json.dumps({"Parameters": parameters, "Resources": resources, "Outputs": outputs})


def deploy(name: str = STACK) -> dict[str, str]:
    """The stack, and its alarms named as CloudFormation names them; all OK."""
    cloudformation = boto3.client("cloudformation")
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=stack_template(),
        Parameters=[
            {"ParameterKey": "BucketName", "ParameterValue": BUCKET},
            {"ParameterKey": "TableName", "ParameterValue": TABLE},
            {"ParameterKey": "BucketPrefix", "ParameterValue": PREFIX},
            {"ParameterKey": "ObjectLockDays", "ParameterValue": "35"},
        ],
    )
    alarms = {logical: f"{name}-{logical}-1A2B3C4D5E6F" for logical in ALARMS}
    for alarm in alarms.values():
        set_alarm(alarm, "OK")
    return alarms


def set_alarm(name: str, state: str) -> None:
    cloudwatch = boto3.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/SQS",
        MetricName="ApproximateNumberOfMessagesVisible",
        Statistic="Maximum",
        Period=300,
        EvaluationPeriods=1,
        Threshold=0,
        ComparisonOperator="GreaterThanThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason=f"set {state}")


def queue_url(logical_id: str) -> str:
    resources = boto3.client("cloudformation").list_stack_resources(StackName=STACK)
    for resource in resources["StackResourceSummaries"]:
        if resource["LogicalResourceId"] == logical_id:
            return str(resource["PhysicalResourceId"])
    raise AssertionError(logical_id)


@pytest.fixture
def backup(store: S3BlobStore, index: DynamoIndex, monkeypatch: pytest.MonkeyPatch) -> Backup:
    """A backup of team/api:v1 and team/web:v1, the newest pushed an hour ago."""
    for name in ("ECR_BACKUP_BUCKET", "ECR_BACKUP_TABLE", "ECR_BACKUP_PREFIX", "ECR_BACKUP_STACK"):
        monkeypatch.delenv(name, raising=False)
    index.claim_location(Location(BUCKET, PREFIX))
    made = Backup(store, index)
    now = datetime.now(UTC)
    made.push("team/api", made.image("team/api"), "v1", now - timedelta(hours=3))
    made.push("team/web", made.image("team/web"), "v1", now - timedelta(hours=1))
    return made


def status(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["status", *args])
    out, err = capsys.readouterr()
    return code, out, err


def status_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = status(capsys, "--json", *args)
    assert err == ""
    document: dict[str, Any] = json.loads(out)
    return code, document


def run_jobs(capsys: pytest.CaptureFixture[str]) -> None:
    """A maintenance pass and a prune, by the commands, which record their runs."""
    for command in ("maintain", "prune"):
        assert main([command, "--bucket", BUCKET, "--table", TABLE, "--prefix", PREFIX]) == 0
    capsys.readouterr()


def recorded_jobs(index: object) -> None:
    """A good maintenance pass and prune an hour ago, as their handlers record them."""
    log = RunLog(TABLE, client=boto3.client("dynamodb"))
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    record_maintain(log, MaintainReport(an_hour_ago, images_kept=2, objects_checked=8))
    record_prune(log, PruneReport(dry_run=False, time=an_hour_ago))


def reconciled(index: object, missing: list[EcrImage], *, grace_minutes: int = 60) -> None:
    """A reconcile of team/api that found `missing` (as handlers/reconcile.py records it)."""
    drift = RepositoryDrift("team/api", images=len(missing) + 1)
    for image in missing:
        message = ImageEvent("team/api", image.digest, Action.PUSH, image.pushed_at, "v9")
        drift.missing.append(DriftMissing(image, (message,), message))
    log = RunLog(TABLE, client=boto3.client("dynamodb"))
    now = datetime.now(UTC)
    record_reconcile(log, drift, Source("123456789012", "us-east-1"), now, grace_minutes)


def ecr_image(pushed_at: datetime, seed: str = "x") -> EcrImage:
    return EcrImage("team/api", Digest.of(seed.encode()), ("v9",), pushed_at, None)


# -- with a stack ------------------------------------------------------------------------


def test_a_healthy_stack_exits_0_and_says_what_it_read(
    backup: Backup, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy()
    run_jobs(capsys)
    reconciled(backup.index, [])
    code, out, err = status(capsys, "--stack", STACK)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "HEALTHY"  # the verdict first
    assert f"stack {STACK} (us-east-1): CREATE_COMPLETE" in out
    for logical in ALARMS:
        assert any(line.split()[:1] == ["OK"] and line.endswith(logical) for line in lines)
    assert "newest push backed up: team/web:v1@" in out  # the hour-old one, not team/api
    assert "last reconcile: " in out and "0 still missing" in out
    assert "last maintain: " in out and ", ok: 2 images kept" in out
    assert "last prune: " in out
    # Bucket, prefix and table came from the stack's outputs and parameters.
    assert lines[-1] == f"backup: s3://{BUCKET}/{PREFIX}, table {TABLE}, region us-east-1"


def test_an_alarm_in_alarm_and_a_dead_letter_message_exit_1_first_in_the_screen(
    backup: Backup, capsys: pytest.CaptureFixture[str]
) -> None:
    alarms = deploy()
    recorded_jobs(backup.index)
    reconciled(backup.index, [])
    set_alarm(alarms["DeadLetterQueueAlarm"], "ALARM")
    boto3.client("sqs").send_message(QueueUrl=queue_url("DeadLetterQueue"), MessageBody="{}")
    # Another stack whose name starts with ours: its alarm is not ours.
    set_alarm(f"{STACK}-eu-DeadLetterQueueAlarm-9Z9Z9Z9Z9Z9Z", "ALARM")
    code, out, _ = status(capsys, "--stack", STACK)
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("UNHEALTHY since ") and lines[0].endswith(": 2 problems")
    assert lines[1] == "  problem: alarm DeadLetterQueueAlarm is ALARM: set ALARM"
    assert lines[2] == "  problem: dead-letter queue DeadLetterQueue holds 1 message"
    assert "eu-DeadLetterQueueAlarm" not in out
    code, document = status_json(capsys, "--stack", STACK)
    assert code == 1 and document["healthy"] is False and document["since"] is not None
    states = {a["logical_id"]: a["state"] for a in document["stack"]["alarms"]}
    assert states == {logical: "OK" for logical in ALARMS} | {"DeadLetterQueueAlarm": "ALARM"}
    queues = {
        q["logical_id"]: (q["dead_letter"], q["visible"]) for q in document["stack"]["queues"]
    }
    assert queues == {
        "DeadLetterQueue": (True, 1),
        "EventQueue": (False, 0),
        "ReconcileDeadLetterQueue": (True, 0),
        "ReconcileQueue": (False, 0),
    }
    # The alarm back to OK, the message still waiting: still unhealthy.
    set_alarm(alarms["DeadLetterQueueAlarm"], "OK")
    code, document = status_json(capsys, "--stack", STACK)
    assert code == 1
    assert [f["what"] for f in document["findings"] if f["severity"] == "problem"] == [
        "dead-letter queue DeadLetterQueue holds 1 message"
    ]


def test_a_message_waiting_in_the_event_queue_is_not_a_problem(
    backup: Backup, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy()
    recorded_jobs(backup.index)
    reconciled(backup.index, [])
    boto3.client("sqs").send_message(QueueUrl=queue_url("EventQueue"), MessageBody="{}")
    code, document = status_json(capsys, "--stack", STACK)
    assert code == 0 and document["healthy"] is True
    assert document["findings"] == []


def test_an_unknown_stack_is_one_line_naming_it_exit_3(
    backup: Backup, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy()
    code, out, err = status(capsys, "--stack", "no-such-stack")
    assert (code, out) == (3, "")
    assert err.startswith("ecr-backup: error: stack no-such-stack not found in us-east-1 (")
    assert err.count("\n") == 1


def test_the_stack_comes_from_ecr_backup_stack_too(
    backup: Backup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy()
    monkeypatch.setenv("ECR_BACKUP_STACK", STACK)
    recorded_jobs(backup.index)
    reconciled(backup.index, [])
    code, document = status_json(capsys)
    assert (code, document["stack"]["name"]) == (0, STACK)


# -- the index alone ---------------------------------------------------------------------


def test_without_a_stack_it_reports_the_bucket_and_index_and_says_so(
    backup: Backup, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded_jobs(backup.index)
    reconciled(backup.index, [])
    args = ("--bucket", BUCKET, "--table", TABLE, "--prefix", PREFIX)
    code, out, err = status(capsys, *args)
    assert (code, err) == (0, "")
    assert "no stack read (--stack or ECR_BACKUP_STACK): alarms and queues not checked" in out
    code, document = status_json(capsys, *args)
    assert document["stack"] is None
    assert document["newest_push"]["repository"] == "team/web"
    assert document["location"] == {
        "bucket": BUCKET,
        "prefix": PREFIX,
        "table": TABLE,
        "region": "us-east-1",
    }


def test_without_a_stack_or_a_bucket_it_exits_3(
    backup: Backup, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = status(capsys)
    assert (code, out) == (3, "")
    assert "status needs the bucket: name the stack (--stack or ECR_BACKUP_STACK)" in err


def test_an_image_missing_past_the_reconcile_grace_exits_1_until_it_is_backed_up(
    backup: Backup, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded_jobs(backup.index)
    now = datetime.now(UTC)
    late = ecr_image(now - timedelta(hours=5), "late")
    fresh = ecr_image(now - timedelta(minutes=5), "fresh")
    reconciled(backup.index, [late, fresh], grace_minutes=60)
    args = ("--bucket", BUCKET, "--table", TABLE, "--prefix", PREFIX)
    code, document = status_json(capsys, *args)
    assert code == 1
    missing = {m["digest"]: m["past_grace"] for m in document["reconcile"]["missing"]}
    assert missing == {str(late.digest): True, str(fresh.digest): False}
    problems = [f for f in document["findings"] if f["severity"] == "problem"]
    assert len(problems) == 1 and str(late.digest) in problems[0]["what"]
    # Missing only briefly: not past the grace, not a problem.
    reconciled(backup.index, [fresh], grace_minutes=60)
    code, document = status_json(capsys, *args)
    assert code == 0 and [m["digest"] for m in document["reconcile"]["missing"]] == [
        str(fresh.digest)
    ]


def test_an_image_backed_up_since_the_reconcile_is_no_longer_missing(
    backup: Backup, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded_jobs(backup.index)
    image = backup.image("team/api")
    pushed = datetime.now(UTC) - timedelta(hours=5)
    listed = EcrImage("team/api", image.digest, ("v2",), pushed, image.media_type)
    reconciled(backup.index, [listed])
    args = ("--bucket", BUCKET, "--table", TABLE, "--prefix", PREFIX)
    assert status_json(capsys, *args)[0] == 1
    backup.push("team/api", image, "v2", pushed)  # the replicate queue caught up
    code, document = status_json(capsys, *args)
    assert code == 0 and document["reconcile"]["missing"] == []


def test_a_reconcile_summary_keeps_the_first_missing_images_and_counts_the_rest(
    index: DynamoIndex,
) -> None:
    now = datetime.now(UTC)
    images = [ecr_image(now, str(n)) for n in range(MISSING_KEPT + 5)]
    reconciled(index, images)
    (run,) = last_reconciles(RunLog(TABLE, client=boto3.client("dynamodb")))
    assert (len(run.missing), run.missing_count) == (MISSING_KEPT, MISSING_KEPT + 5)
    assert (run.account, run.region, run.repository) == ("123456789012", "us-east-1", "team/api")


def test_short_locks_in_the_last_maintenance_pass_are_a_problem(
    backup: Backup, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded_jobs(backup.index)
    reconciled(backup.index, [])
    log = RunLog(backup.index.table, client=boto3.client("dynamodb"))
    summary = {
        "ok": False,
        "images_kept": 2,
        "objects_checked": 8,
        "extended": 0,
        "short": 3,
        "missing": 0,
        "not_checked": 0,
    }
    log.record("maintain", "last", datetime.now(UTC), summary)
    code, out, _ = status(capsys, "--bucket", BUCKET, "--table", TABLE, "--prefix", PREFIX)
    assert code == 1
    assert "problem: the last maintenance pass found 3 locks short and 0 objects missing" in out


def test_an_older_run_never_replaces_a_newer_one(index: DynamoIndex) -> None:
    log = RunLog(TABLE, client=boto3.client("dynamodb"))
    now = datetime.now(UTC)
    log.record("prune", "last", now, {"n": 2})
    log.record("prune", "last", now - timedelta(hours=1), {"n": 1})
    (record,) = log.runs("prune")
    assert record.summary == {"n": 2}


def test_a_repository_no_longer_reconciled_does_not_count(index: DynamoIndex) -> None:
    log = RunLog(TABLE, client=boto3.client("dynamodb"))
    now = datetime.now(UTC)
    late = ecr_image(now - timedelta(days=9), "gone")
    for repository, at, missing in (("gone", now - timedelta(days=3), [late]), ("live", now, [])):
        drift = RepositoryDrift(repository, images=1)
        for image in missing:
            message = ImageEvent(repository, image.digest, Action.PUSH, image.pushed_at)
            drift.missing.append(DriftMissing(image, (message,), message))
        record_reconcile(log, drift, Source("123456789012", "us-east-1"), at, 1440)
    summary = summarize_reconciles(last_reconciles(log), index, now)
    assert summary is not None
    assert (summary.repositories, summary.missing) == (1, [])
