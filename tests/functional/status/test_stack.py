"""stack.aws.StackReader as real CloudFormation answers: the stack's resource list names
its alarms (moto's CloudFormation creates none, so the list is canned here, while
CloudWatch and SQS are moto's)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from ecr_backup.errors import ConfigurationError, InvalidInputError
from ecr_backup.stack.aws import StackReader


class CannedCloudFormation:
    """describe_stacks and list_stack_resources of one stack, as CloudFormation answers."""

    def __init__(self, name: str, resources: list[dict[str, str]]) -> None:
        self.name = name
        self.resources = resources

    def describe_stacks(self, StackName: str) -> dict[str, Any]:
        assert StackName == self.name
        return {
            "Stacks": [
                {
                    "StackName": self.name,
                    "StackStatus": "UPDATE_ROLLBACK_COMPLETE",
                    "Outputs": [{"OutputKey": "TableName", "OutputValue": "t"}],
                    "Parameters": [{"ParameterKey": "BucketPrefix", "ParameterValue": "ecr/"}],
                }
            ]
        }

    def get_paginator(self, operation: str) -> Any:
        assert operation == "list_stack_resources"
        resources = self.resources

        class Pages:
            def paginate(self, StackName: str) -> list[dict[str, Any]]:
                return [{"StackResourceSummaries": resources}]

        return Pages()


def alarm(name: str, state: str) -> None:
    cloudwatch = boto3.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/Lambda",
        MetricName="Errors",
        Statistic="Sum",
        Period=300,
        EvaluationPeriods=1,
        Threshold=0,
        ComparisonOperator="GreaterThanThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason=state)


def reader(cloudformation: Any) -> StackReader:
    return StackReader(cloudformation, boto3.client("cloudwatch"), boto3.client("sqs"), "us-east-1")


def test_alarms_the_stack_lists_are_read_whatever_their_names(aws: None) -> None:
    # A name CloudFormation shortened, one given in the template, one of another stack.
    alarm("prod-FunctionErrorsAlar-1XY", "OK")
    alarm("ops-dlq-alarm", "ALARM")
    alarm("prod-eu-FunctionErrorsAlarm-2AB", "ALARM")
    sqs = boto3.client("sqs")
    dlq = sqs.create_queue(QueueName="prod-dlq")["QueueUrl"]
    resources = [
        {
            "LogicalResourceId": "FunctionErrorsAlarm",
            "PhysicalResourceId": "prod-FunctionErrorsAlar-1XY",
            "ResourceType": "AWS::CloudWatch::Alarm",
        },
        {
            "LogicalResourceId": "DeadLetterQueueAlarm",
            "PhysicalResourceId": "ops-dlq-alarm",
            "ResourceType": "AWS::CloudWatch::Alarm",
        },
        {
            "LogicalResourceId": "DeadLetterQueue",
            "PhysicalResourceId": dlq,
            "ResourceType": "AWS::SQS::Queue",
        },
    ]
    stack = reader(CannedCloudFormation("prod", resources)).read("prod")
    assert [(a.logical_id, a.state) for a in stack.alarms] == [
        ("DeadLetterQueueAlarm", "ALARM"),
        ("FunctionErrorsAlarm", "OK"),
    ]
    assert [(q.logical_id, q.dead_letter, q.visible) for q in stack.queues] == [
        ("DeadLetterQueue", False, 0)  # no queue of this stack redrives to it
    ]
    assert (stack.status, stack.outputs, stack.parameters) == (
        "UPDATE_ROLLBACK_COMPLETE",
        {"TableName": "t"},
        {"BucketPrefix": "ecr/"},
    )


def test_a_name_that_cannot_be_a_stack_is_refused_before_any_call(aws: None) -> None:
    with pytest.raises(InvalidInputError, match="invalid stack name 'no such'"):
        reader(CannedCloudFormation("x", [])).read("no such")


def test_an_unknown_stack_is_a_configuration_error_naming_it(aws: None) -> None:
    with pytest.raises(ConfigurationError, match="stack gone not found in us-east-1") as error:
        reader(boto3.client("cloudformation")).read("gone")
    assert error.value.code == "StackNotFound"
