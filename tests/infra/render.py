"""A CloudFormation template rendered for given parameter values, as far as its policies
need: conditions evaluated, intrinsic functions resolved, resources' names and ARNs
standing in at the length CloudFormation gives them. Enough to measure what a deployed
policy document weighs; not a general CloudFormation engine (an intrinsic it does not
know fails the test instead of being guessed)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

ACCOUNT = "999999999999"
REGION = "us-east-1"
STACK = "ecr-backup"
# CloudFormation names a resource "<stack>-<logical id>-<12 random characters>".
SUFFIX = "1A2B3C4D5E6F"
KEY_ID = "0123abcd-0123-abcd-0123-0123456789ab"
_NO_VALUE = object()
_SUB = re.compile(r"\$\{([A-Za-z0-9:._]+)\}")
_ARN_SERVICE = {
    "AWS::IAM::Role": "iam",
    "AWS::SQS::Queue": "sqs",
    "AWS::KMS::Key": "kms",
    "AWS::DynamoDB::Table": "dynamodb",
    "AWS::Events::Rule": "events",
    "AWS::Logs::LogGroup": "logs",
    "AWS::SNS::Topic": "sns",
    "AWS::S3::Bucket": "s3",
}


class Rendered:
    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, Any],
        *,
        region: str = REGION,
        account: str = ACCOUNT,
    ) -> None:
        self.template = template
        self.region = region
        self.account = account
        self.parameters = {
            name: parameters.get(name, spec.get("Default"))
            for name, spec in template.get("Parameters", {}).items()
        }
        unknown = set(parameters) - set(self.parameters)
        assert not unknown, f"no such parameters: {unknown}"
        for name, spec in template.get("Parameters", {}).items():
            value = self.parameters[name]
            if spec["Type"] == "CommaDelimitedList" and isinstance(value, str):
                self.parameters[name] = value.split(",") if value else [""]
        self.conditions: dict[str, bool] = {}
        for name in template.get("Conditions", {}):
            self.condition(name)

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self.conditions[name]

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        """The resources of one type that this rendering creates, their properties resolved."""
        found = {}
        for name, resource in self.template["Resources"].items():
            if resource["Type"] != kind:
                continue
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            found[name] = self.resolve(resource.get("Properties", {}))
        return found

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self._ref(argument)
            if key == "Condition":
                return self.condition(argument)
            if key.startswith("Fn::"):
                return self._function(key, argument)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def _function(self, key: str, argument: Any) -> Any:
        if key == "Fn::If":
            name, yes, no = argument
            return self.resolve(yes if self.condition(name) else no)
        if key == "Fn::Equals":
            left, right = (self.resolve(a) for a in argument)
            return left == right
        if key == "Fn::Not":
            return not self.resolve(argument[0])
        if key == "Fn::And":
            return all(self.resolve(a) for a in argument)
        if key == "Fn::Or":
            return any(self.resolve(a) for a in argument)
        if key == "Fn::Join":
            separator, items = argument
            return separator.join(str(i) for i in self.resolve(items))
        if key == "Fn::GetAtt":
            name, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self._attribute(name, attribute)
        if key == "Fn::FindInMap":
            mapping, first, second = (self.resolve(a) for a in argument)
            return self.template["Mappings"][mapping][str(first)][second]
        if key == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            values = {k: self.resolve(v) for k, v in variables.items()}
            return _SUB.sub(
                lambda m: str(values[m[1]] if m[1] in values else self._name(m[1])), text
            )
        raise AssertionError(f"render does not know {key}")

    def _name(self, reference: str) -> Any:
        if "." in reference:
            return self._attribute(*reference.split(".", 1))
        return self._ref(reference)

    def _ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Partition": "aws",
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::StackName": STACK,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": _NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        assert name in self.template["Resources"], f"Ref to nothing: {name}"
        return f"{STACK}-{name}-{SUFFIX}"

    def _attribute(self, name: str, attribute: str) -> str:
        kind = self.template["Resources"][name]["Type"]
        physical = f"{STACK}-{name}-{SUFFIX}"
        if attribute != "Arn":
            return physical
        service = _ARN_SERVICE.get(kind, kind.split("::")[1].lower())
        if service == "iam":
            return f"arn:aws:iam::{self.account}:role/{physical}"
        if service == "s3":
            return f"arn:aws:s3:::{physical.lower()}"
        if service == "kms":
            return f"arn:aws:kms:{self.region}:{self.account}:key/{KEY_ID}"
        return f"arn:aws:{service}:{self.region}:{self.account}:{physical}"


def size(document: Any) -> int:
    """A policy's size as the services count it: its JSON without insignificant white
    space (IAM says so explicitly; the others are at most this strict), in UTF-8 bytes."""
    return len(json.dumps(document, separators=(",", ":")).encode())
