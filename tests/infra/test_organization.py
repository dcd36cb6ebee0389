"""Organization mode (docs/organization.md): the backup stack grants a whole AWS
Organization with one condition instead of an account list, so no policy grows with the
number of accounts; the source template works as a service-managed StackSet instance.

Each policy is rendered for the parameters a deployment gives (tests/infra/render.py) and
measured against its service's documented limit:
- event bus policy: "cannot exceed 10 KB" (EventBridge PutPermission and
  AWS::Events::EventBusPolicy reference), i.e. 10,240 characters;
- SQS queue policy: 8,192 bytes (SQS Developer Guide, "Amazon SQS policy quotas");
- KMS key policy: 32,768 bytes (AWS KMS Developer Guide, quotas: "Key policy document
  size");
- IAM role: inline policies together 10,240 characters, trust policy 2,048 characters
  by default (IAM User Guide, "IAM and AWS STS quotas");
- S3 bucket policy: 20 KB (S3 User Guide, bucket policies).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.render import Rendered, size
from tests.infra.test_template import ROOT, listify, load

ORGANIZATION = "o-a1b2c3d4e5"
BACKUP_ACCOUNT = "999999999999"
ORGANIZATION_ROLE = "arn:aws:iam::111111111111:role/ecr-backup-organization-read"
LIMITS = {
    "event bus policy": 10_240,
    "queue policy": 8_192,
    "key policy": 32_768,
    "role inline policies": 10_240,
    "role trust policy": 2_048,
    "bucket policy": 20_480,
    "registry policy": 10_240,  # no documented limit found; held to IAM's own
}


def accounts(count: int) -> list[str]:
    return [f"{100000000000 + i:012d}" for i in range(count)]


def policies(rendered: Rendered) -> dict[str, tuple[str, Any]]:
    """Every resource policy the rendering deploys: name -> (kind, document)."""
    found: dict[str, tuple[str, Any]] = {}
    bus = [
        {**props["Statement"], "Sid": props["StatementId"]}
        for props in rendered.resources("AWS::Events::EventBusPolicy").values()
    ]
    if bus:  # one policy per bus: the statements of every stack add up
        found["default event bus"] = (
            "event bus policy",
            {"Version": "2012-10-17", "Statement": bus},
        )
    for name, props in rendered.resources("AWS::SQS::QueuePolicy").items():
        found[name] = ("queue policy", props["PolicyDocument"])
    for name, props in rendered.resources("AWS::KMS::Key").items():
        found[name] = ("key policy", props["KeyPolicy"])
    for name, props in rendered.resources("AWS::S3::BucketPolicy").items():
        found[name] = ("bucket policy", props["PolicyDocument"])
    for name, props in rendered.resources("AWS::ECR::RegistryPolicy").items():
        found[name] = ("registry policy", props["PolicyText"])
    for name, props in rendered.resources("AWS::IAM::Role").items():
        found[f"{name} trust"] = ("role trust policy", props["AssumeRolePolicyDocument"])
        inline = [p["PolicyDocument"] for p in props.get("Policies", [])]
        found[f"{name} inline"] = ("role inline policies", inline)
    return found


def sizes(rendered: Rendered) -> dict[str, int]:
    return {name: size(document) for name, (_, document) in policies(rendered).items()}


def over_limit(rendered: Rendered) -> list[str]:
    return [
        f"{name}: {size(document)} > {LIMITS[kind]} ({kind})"
        for name, (kind, document) in policies(rendered).items()
        if size(document) > LIMITS[kind]
    ]


@pytest.fixture(scope="module")
def backup_template() -> dict[str, Any]:
    return load(ROOT / "template.yaml")


@pytest.fixture(scope="module")
def source_template() -> dict[str, Any]:
    return load(ROOT / "templates" / "source-account.yaml")


def organization(template: dict[str, Any], count: int) -> Rendered:
    # Even with every account listed too (the most the template can be given), the
    # list reaches no policy in organization mode.
    return Rendered(
        template,
        {"OrganizationId": ORGANIZATION, "SourceAccountIds": accounts(count)},
        account=BACKUP_ACCOUNT,
    )


def test_no_policy_grows_with_the_organization(backup_template: dict[str, Any]) -> None:
    one, thousand = organization(backup_template, 1), organization(backup_template, 1000)
    assert policies(one) == policies(thousand)
    assert sizes(one) == sizes(thousand)
    # Not vacuous: the bus, the queue, the key and every role were measured.
    assert {"default event bus", "EventQueuePolicy", "BackupKey", "ReplicateRole inline"} <= set(
        sizes(one)
    )
    assert over_limit(thousand) == []


def test_the_organization_is_granted_by_condition_not_by_account(
    backup_template: dict[str, Any],
) -> None:
    rendered = organization(backup_template, 3)
    (bus,) = rendered.resources("AWS::Events::EventBusPolicy").values()
    statement = bus["Statement"]
    assert statement["Principal"] == "*"
    assert statement["Action"] == "events:PutEvents"
    assert statement["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": ORGANIZATION}}
    documents = json_text(policies(rendered))
    assert not any(account in documents for account in accounts(3))
    # The replicate role reads repositories of the Organization's accounts only.
    role = rendered.resources("AWS::IAM::Role")["ReplicateRole"]
    (read,) = [
        s
        for p in role["Policies"]
        for s in p["PolicyDocument"]["Statement"]
        if s.get("Sid") == "EcrReadImages"
    ]
    assert read["Condition"] == {"StringEquals": {"aws:ResourceOrgID": ORGANIZATION}}


def test_account_list_mode_still_works_and_is_why_organization_mode_exists(
    backup_template: dict[str, Any],
) -> None:
    def listing(count: int) -> Rendered:
        return Rendered(backup_template, {"SourceAccountIds": accounts(count)})

    one = listing(1)
    (bus,) = one.resources("AWS::Events::EventBusPolicy").values()
    assert bus["Statement"]["Principal"] == {"AWS": accounts(1)}
    assert "Condition" not in bus["Statement"]
    assert over_limit(one) == []
    read = one.resources("AWS::IAM::Role")["ReplicateRole"]
    assert "aws:ResourceOrgID" not in json_text(read)
    # An account list outgrows the bus policy long before 1,000 accounts (and EventBridge
    # stores each account as a longer IAM root ARN than measured here).
    assert [p for p in over_limit(listing(1000)) if p.startswith("default event bus")]


def test_single_account_mode_grants_no_other_account(backup_template: dict[str, Any]) -> None:
    rendered = Rendered(backup_template, {})
    assert rendered.resources("AWS::Events::EventBusPolicy") == {}
    assert over_limit(rendered) == []


def test_the_reconcile_settings_fit_lambdas_environment_in_organization_mode(
    backup_template: dict[str, Any],
) -> None:
    # Lambda allows 4 KB of environment variables in all: organization mode must not need
    # an account list there.
    rendered = Rendered(
        backup_template,
        {
            "OrganizationId": ORGANIZATION,
            "ReconcileAccounts": "organization",
            "OrganizationReadRoleArn": ORGANIZATION_ROLE,
            "SourceRegions": ["us-east-1", "eu-west-1", "ap-southeast-2"],
        },
    )
    function = rendered.template["Resources"]["ReconcileFunction"]["Properties"]
    env = rendered.resolve(function["Environment"]["Variables"])
    assert env["ECR_BACKUP_ACCOUNTS_FROM"] == "organization"
    assert env["ECR_BACKUP_SOURCE_ACCOUNTS"] == ""
    assert sum(len(k) + len(str(v)) for k, v in env.items()) < 4096
    role = rendered.resources("AWS::IAM::Role")["ReconcileRole"]
    statements = {s["Sid"]: s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]}
    assert statements["OrganizationAccountsList"]["Resource"] == ORGANIZATION_ROLE
    assert statements["SourceAccountsList"]["Action"] == "sts:AssumeRole"


# --- the source side, as a service-managed StackSet instance -----------------------------

RECONCILE_ROLE = f"arn:aws:iam::{BACKUP_ACCOUNT}:role/ecr-backup-ReconcileRole-1A2B3C4D5E6F"
FUNCTION_ROLE = f"arn:aws:iam::{BACKUP_ACCOUNT}:role/ecr-backup-ReplicateRole-1A2B3C4D5E6F"
STACK_SET_PARAMETERS = {
    "BackupAccountId": BACKUP_ACCOUNT,
    "BackupRegion": "us-east-1",
    "BackupFunctionRoleArn": FUNCTION_ROLE,
    "BackupReadPrincipalArns": [RECONCILE_ROLE],
    "ReadRoleRegion": "us-east-1",
}


def instance(template: dict[str, Any], account: str, region: str) -> Rendered:
    return Rendered(template, STACK_SET_PARAMETERS, account=account, region=region)


def test_every_stack_set_instance_deploys_the_same_small_policies(
    source_template: dict[str, Any],
) -> None:
    instances = [
        instance(source_template, account, region)
        for account in (accounts(1)[0], accounts(1000)[-1])
        for region in ("us-east-1", "eu-west-1")
    ]
    measured = [
        {k: v for k, v in sizes(i).items() if not k.startswith("SourceReadRole")} for i in instances
    ]
    assert all(m == measured[0] for m in measured)
    assert "BackupPullRegistryPolicy" in measured[0]
    assert all(over_limit(i) == [] for i in instances)


def test_the_read_role_is_created_once_per_account_and_trusts_only_the_named_roles(
    source_template: dict[str, Any],
) -> None:
    home = instance(source_template, "111111111111", "us-east-1")
    other = instance(source_template, "111111111111", "eu-west-1")
    assert "SourceReadRole" in home.resources("AWS::IAM::Role")
    assert "SourceReadRole" not in other.resources("AWS::IAM::Role")  # IAM is global
    role = home.resources("AWS::IAM::Role")["SourceReadRole"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": [RECONCILE_ROLE]}
    (pull,) = home.resources("AWS::ECR::RegistryPolicy")["BackupPullRegistryPolicy"]["PolicyText"][
        "Statement"
    ]
    assert pull["Principal"] == {"AWS": FUNCTION_ROLE}
    # By hand, without named principals, the backup account (its IAM decides) as before.
    by_hand = Rendered(
        source_template,
        {"BackupAccountId": BACKUP_ACCOUNT, "BackupFunctionRoleArn": FUNCTION_ROLE},
        account="111111111111",
    )
    role = by_hand.resources("AWS::IAM::Role")["SourceReadRole"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": f"arn:aws:iam::{BACKUP_ACCOUNT}:root"}


def test_the_source_template_is_plain_cloudformation_for_stack_sets(
    source_template: dict[str, Any],
) -> None:
    # No transform or nested stack (StackSets deploy the template as it is), and the one
    # resource with a fixed name is the region-conditional IAM role.
    assert "Transform" not in source_template
    kinds = {r["Type"] for r in source_template["Resources"].values()}
    assert "AWS::CloudFormation::Stack" not in kinds
    named = [
        name
        for name, r in source_template["Resources"].items()
        if any(k.endswith("Name") and k != "EventBusName" for k in r.get("Properties", {}))
    ]
    assert named == ["SourceReadRole"]
    assert source_template["Resources"]["SourceReadRole"]["Condition"] == "CreateReadRole"


def test_the_organization_read_role_lists_accounts_and_nothing_else() -> None:
    template = load(ROOT / "templates" / "organization-read-role.yaml")
    rendered = Rendered(template, {"BackupReconcileRoleArn": RECONCILE_ROLE})
    (role,) = rendered.resources("AWS::IAM::Role").values()
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": RECONCILE_ROLE}
    actions = {
        a
        for p in role["Policies"]
        for s in p["PolicyDocument"]["Statement"]
        for a in listify(s["Action"])
    }
    assert actions == {"organizations:ListAccounts"}


def json_text(value: Any) -> str:
    return json.dumps(value)
