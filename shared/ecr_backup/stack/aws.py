"""Reads a deployed ecr-backup stack: its outputs and parameters (CloudFormation), its
alarms' states (CloudWatch) and its queues' depths (SQS). Nothing here writes.

CloudFormation names an alarm that has no AlarmName `<stack>-<LogicalId>-<suffix>`; the
stack's resource list gives those names. Alarms are also found by that naming alone, for
a stack whose resource list lacks them (moto's CloudFormation does not create alarms).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from ecr_backup.awserrors import error_code, translate
from ecr_backup.errors import ConfigurationError, InvalidInputError, StackError

ALARM = "AWS::CloudWatch::Alarm"
QUEUE = "AWS::SQS::Queue"
# A stack name (CloudFormation's own pattern) or a stack id (ARN).
_STACK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,127}|arn:aws[a-z-]*:cloudformation:.+")
_ALARMS_PER_CALL = 100  # DescribeAlarms takes at most 100 names
AlarmValue = Literal["OK", "ALARM", "INSUFFICIENT_DATA"]


@dataclass(frozen=True)
class Alarm:
    name: str
    logical_id: str | None  # the template's name for it, when known
    state: AlarmValue
    since: datetime | None
    reason: str


@dataclass(frozen=True)
class Queue:
    logical_id: str
    url: str
    dead_letter: bool  # another queue of the stack moves its failed messages here
    visible: int  # ApproximateNumberOfMessages
    in_flight: int  # ApproximateNumberOfMessagesNotVisible


@dataclass(frozen=True)
class Stack:
    name: str
    status: str  # CREATE_COMPLETE, UPDATE_ROLLBACK_FAILED...
    region: str
    outputs: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)
    alarms: tuple[Alarm, ...] = ()
    queues: tuple[Queue, ...] = ()


class StackReader:
    def __init__(self, cloudformation: Any, cloudwatch: Any, sqs: Any, region: str) -> None:
        self._cfn = cloudformation
        self._cw = cloudwatch
        self._sqs = sqs
        self._region = region

    def read(self, name: str) -> Stack:
        if not _STACK_NAME.fullmatch(name):
            raise InvalidInputError(f"invalid stack name {name!r}")
        described = self._describe(name)
        stack_name = described["StackName"]
        resources = list(self._resources(stack_name))
        return Stack(
            name=stack_name,
            status=described["StackStatus"],
            region=self._region,
            outputs={o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])},
            parameters={
                p["ParameterKey"]: p.get("ParameterValue", "")
                for p in described.get("Parameters", [])
            },
            alarms=tuple(self._alarms(stack_name, resources)),
            queues=tuple(self._queues(resources)),
        )

    def _describe(self, name: str) -> dict[str, Any]:
        try:
            stacks = self._cfn.describe_stacks(StackName=name)["Stacks"]
        except (ClientError, BotoCoreError) as e:
            # CloudFormation answers an unknown stack with ValidationError; the name was
            # checked above, so here it means exactly that.
            if error_code(e) == "ValidationError":
                raise ConfigurationError(
                    f"stack {name} not found in {self._region}",
                    code="StackNotFound",
                    hint="check --stack (ECR_BACKUP_STACK), --region and the AWS account",
                ) from e
            raise translate(e, f"describe stack {name}", StackError) from e
        return dict(stacks[0])

    def _resources(self, stack: str) -> Iterator[dict[str, Any]]:
        try:
            for page in self._cfn.get_paginator("list_stack_resources").paginate(StackName=stack):
                for resource in page["StackResourceSummaries"]:
                    if resource.get("PhysicalResourceId"):
                        yield resource
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"list the resources of stack {stack}", StackError) from e

    def _alarms(self, stack: str, resources: list[dict[str, Any]]) -> list[Alarm]:
        logical = {
            r["PhysicalResourceId"]: r["LogicalResourceId"]
            for r in resources
            if r["ResourceType"] == ALARM
        }
        named = re.compile(rf"{re.escape(stack)}-([A-Za-z0-9]+)-[A-Za-z0-9]+")
        found: dict[str, dict[str, Any]] = {}
        names = sorted(logical)
        for start in range(0, len(names), _ALARMS_PER_CALL):
            for alarm in self._describe_alarms(AlarmNames=names[start : start + _ALARMS_PER_CALL]):
                found[alarm["AlarmName"]] = alarm
        # A logical id has no "-": another stack whose name starts with ours ("prod-eu"
        # beside "prod") does not match.
        for alarm in self._describe_alarms(AlarmNamePrefix=f"{stack}-"):
            match = named.fullmatch(alarm["AlarmName"])
            if match:
                logical.setdefault(alarm["AlarmName"], match.group(1))
                found[alarm["AlarmName"]] = alarm
        return [
            Alarm(
                name=name,
                logical_id=logical.get(name),
                state=alarm["StateValue"],
                since=alarm.get("StateUpdatedTimestamp"),
                reason=alarm.get("StateReason", ""),
            )
            for name, alarm in sorted(found.items())
        ]

    def _describe_alarms(self, **arguments: Any) -> Iterator[dict[str, Any]]:
        try:
            for page in self._cw.get_paginator("describe_alarms").paginate(
                AlarmTypes=["MetricAlarm", "CompositeAlarm"], **arguments
            ):
                yield from page.get("MetricAlarms", [])
                yield from page.get("CompositeAlarms", [])
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "describe the stack's alarms", StackError) from e

    def _queues(self, resources: Iterable[dict[str, Any]]) -> list[Queue]:
        attributes = {
            r["LogicalResourceId"]: (r["PhysicalResourceId"], self._queue(r["PhysicalResourceId"]))
            for r in resources
            if r["ResourceType"] == QUEUE
        }
        targets = set()
        for _, attrs in attributes.values():
            if "RedrivePolicy" in attrs:
                targets.add(json.loads(attrs["RedrivePolicy"]).get("deadLetterTargetArn"))
        return [
            Queue(
                logical_id=logical_id,
                url=url,
                dead_letter=attrs.get("QueueArn") in targets,
                visible=int(attrs.get("ApproximateNumberOfMessages", 0)),
                in_flight=int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
            )
            for logical_id, (url, attrs) in sorted(attributes.items())
        ]

    def _queue(self, url: str) -> dict[str, str]:
        try:
            answer = self._sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "QueueArn",
                    "RedrivePolicy",
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"read queue {url}", StackError) from e
        return dict(answer.get("Attributes", {}))
