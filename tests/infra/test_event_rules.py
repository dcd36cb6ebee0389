"""The EventBridge rules of template.yaml and templates/source-account.yaml, rendered for a
set of parameters and evaluated (by moto's event-pattern matcher, which knows `$or` and
`prefix`; moto's TestEventPattern API is a stub) on AWS's documented sample of every ECR
event kind (tests/ecr_samples.py): each kind the backup acts on matches, nothing else does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from moto.events.models import EventPattern

from tests import ecr_samples
from tests.ecr_samples import referrer_action, usable
from tests.infra.test_template import ROOT, load

DIGEST = "sha256:" + "cd" * 32
ACTED_ON = {
    "image push": usable(ecr_samples.IMAGE_PUSH, DIGEST),
    "image delete": usable(ecr_samples.IMAGE_DELETE, DIGEST),
    "image archive": ecr_samples.IMAGE_ARCHIVE,
    "image restore": ecr_samples.IMAGE_RESTORE,
    "referrer restore": ecr_samples.REFERRER_RESTORE,
    "referrer push": referrer_action("PUSH", DIGEST),
    "referrer delete": referrer_action("DELETE", DIGEST),
    "replication": usable(ecr_samples.REPLICATION, DIGEST),
    "pull through cache": usable(ecr_samples.PULL_THROUGH_CACHE, DIGEST),
}
NOT_ACTED_ON = {
    "replication failed": ecr_samples.REPLICATION_FAILED,
    "push failed": usable(ecr_samples.IMAGE_PUSH, DIGEST, result="FAILURE"),
    "cache sync failed": usable(ecr_samples.PULL_THROUGH_CACHE, DIGEST, sync_status="FAILED"),
    "push announced as a replication": {
        **usable(ecr_samples.IMAGE_PUSH, DIGEST),
        "detail-type": "ECR Replication Action",
    },
    "image scan": {
        **usable(ecr_samples.IMAGE_PUSH, DIGEST),
        "detail-type": "ECR Image Scan",
        "detail": {"scan-status": "COMPLETE", "repository-name": "my-repository-name"},
    },
    "not ECR": {**usable(ecr_samples.IMAGE_PUSH, DIGEST), "source": "my.app"},
}


def render(node: Any, conditions: dict[str, bool], parameters: dict[str, str]) -> Any:
    """A template fragment with Fn::If and Ref resolved as CloudFormation would."""
    if isinstance(node, list):
        items = [render(item, conditions, parameters) for item in node]
        return [item for item in items if item is not _ABSENT]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Fn::If"}:
        condition, when_true, when_false = node["Fn::If"]
        return render(when_true if conditions[condition] else when_false, conditions, parameters)
    if set(node) == {"Ref"}:
        return _ABSENT if node["Ref"] == "AWS::NoValue" else parameters[node["Ref"]]
    rendered = {key: render(value, conditions, parameters) for key, value in node.items()}
    return {key: value for key, value in rendered.items() if value is not _ABSENT}


_ABSENT = object()


def backup_pattern(*, pull_through_cache: bool, prefix: str = "") -> dict[str, Any]:
    rule = load(ROOT / "template.yaml")["Resources"]["EcrImageActionRule"]["Properties"]
    conditions = {"BackUpPullThroughCache": pull_through_cache, "HasRepositoryPrefix": bool(prefix)}
    pattern: dict[str, Any] = render(rule["EventPattern"], conditions, {"RepositoryPrefix": prefix})
    return pattern


def forward_pattern(prefix: str = "") -> dict[str, Any]:
    source = load(ROOT / "templates" / "source-account.yaml")["Resources"]
    rule = source["ForwardEcrImageActionsRule"]["Properties"]
    pattern: dict[str, Any] = render(
        rule["EventPattern"], {"HasRepositoryPrefix": bool(prefix)}, {"RepositoryPrefix": prefix}
    )
    return pattern


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    assert not list(empty_objects(pattern)), "EventBridge refuses empty objects in patterns"
    return EventPattern.load(json.dumps(pattern)).matches_event(event)  # type: ignore[arg-type]


def empty_objects(node: Any, where: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        if not node:
            yield where
        for key, value in node.items():
            yield from empty_objects(value, f"{where}.{key}")
    elif isinstance(node, list):
        for item in node:
            yield from empty_objects(item, where)


@pytest.mark.parametrize("name", sorted(ACTED_ON))
def test_every_kind_acted_on_is_subscribed_and_forwarded(name: str) -> None:
    event = ACTED_ON[name]
    assert matches(backup_pattern(pull_through_cache=True), event)
    assert matches(forward_pattern(), event)


@pytest.mark.parametrize("name", sorted(NOT_ACTED_ON))
def test_events_not_acted_on_match_no_rule(name: str) -> None:
    event = NOT_ACTED_ON[name]
    assert not matches(backup_pattern(pull_through_cache=True), event)
    assert not matches(forward_pattern(), event)


def test_pull_through_cache_turned_off_leaves_only_its_syncs_out() -> None:
    off = backup_pattern(pull_through_cache=False)
    assert not matches(off, ACTED_ON["pull through cache"])
    assert all(
        matches(off, event) for name, event in ACTED_ON.items() if name != "pull through cache"
    )


def test_a_repository_prefix_scopes_every_kind() -> None:
    for name, event in ACTED_ON.items():
        inside = usable(event, repository="team/app")
        outside = usable(event, repository="other/app")
        for pattern in (
            backup_pattern(pull_through_cache=True, prefix="team/"),
            forward_pattern("team/"),
        ):
            assert matches(pattern, inside), name
            assert not matches(pattern, outside), name


def test_the_forwarding_rule_filters_as_the_backup_rule_does() -> None:
    assert forward_pattern() == backup_pattern(pull_through_cache=True)
    assert forward_pattern("team/") == backup_pattern(pull_through_cache=True, prefix="team/")
