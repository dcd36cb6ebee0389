"""The dashboard draws everything the stack publishes: every metric the code emits (read
from the code, not from a list kept by hand), every alarm, and each function's and dead-
letter queue's AWS metrics. A new metric or alarm cannot ship undrawn."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.infra.test_template import ROOT

NAMESPACE = "EcrBackup"
SOURCES = [*sorted((ROOT / "handlers").glob("*.py")), *sorted((ROOT / "shared").rglob("*.py"))]
_SUB = re.compile(r"\$\{([A-Za-z0-9:.]+)\}")


def published_metrics(path: Path) -> Iterator[tuple[str, str]]:
    """(metric name, where) of every add_metric/put_metric_data call in one file. A name
    that is not a string, or a variable looping over a dict literal's keys, fails: the
    test must be able to read every name."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        where = f"{path.relative_to(ROOT)}:{node.lineno}"
        if node.func.attr == "add_metric":
            name = node.args[0] if node.args else _keyword(node, "name")
            for text in _strings(name, node, parents, where):
                yield text, where
        elif node.func.attr == "put_metric_data":
            data = _keyword(node, "MetricData")
            assert isinstance(data, ast.List), f"{where}: MetricData is not a list literal"
            for entry in data.elts:
                assert isinstance(entry, ast.Dict), f"{where}: a MetricData entry not a dict"
                for key, value in zip(entry.keys, entry.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "MetricName":
                        yield from ((t, where) for t in _strings(value, node, parents, where))


def _keyword(call: ast.Call, name: str) -> ast.expr:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    raise AssertionError(f"line {call.lineno}: no {name}=")


def _strings(
    name: ast.expr | None, call: ast.AST, parents: dict[ast.AST, ast.AST], where: str
) -> list[str]:
    if isinstance(name, ast.Constant) and isinstance(name.value, str):
        return [name.value]
    if isinstance(name, ast.Name):
        # `for name, value in counts.items(): add_metric(name, ...)`, counts a dict literal.
        node: ast.AST | None = call
        while node is not None and not isinstance(node, ast.FunctionDef):
            node = parents.get(node)
            if isinstance(node, ast.For):
                keys = _loop_keys(node, name.id, parents)
                if keys is not None:
                    return keys
    raise AssertionError(f"{where}: cannot read the metric's name from the code")


def _loop_keys(loop: ast.For, variable: str, parents: dict[ast.AST, ast.AST]) -> list[str] | None:
    target = loop.target
    first = target.elts[0] if isinstance(target, ast.Tuple) else target
    if not (isinstance(first, ast.Name) and first.id == variable):
        return None
    call = loop.iter
    if not (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr in ("items", "keys")
        and isinstance(call.func.value, ast.Name)
    ):
        return None
    mapping = call.func.value.id
    function = loop
    while not isinstance(function, ast.FunctionDef):
        function = parents[function]  # type: ignore[assignment]
    for node in ast.walk(function):
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == mapping for t in node.targets)
            and isinstance(node.value, ast.Dict)
        ):
            keys = [k.value for k in node.value.keys if isinstance(k, ast.Constant)]
            assert len(keys) == len(node.value.keys), f"line {node.lineno}: a key not literal"
            return [str(k) for k in keys]
    return None


def dimensioned_metrics(path: Path) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(metric name, extra dimensions) of every add_metric call on an object that the
    same function gives dimensions with add_dimension("literal", ...): metrics published
    per source registry besides the service's totals."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef):
            continue
        calls = [
            n
            for n in ast.walk(function)
            if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and isinstance(n.func.value, ast.Name)
        ]
        dimensions: dict[str, list[str]] = {}
        for call in calls:
            if call.func.attr == "add_dimension":  # type: ignore[attr-defined]
                name = call.args[0]
                assert isinstance(name, ast.Constant), (
                    f"line {call.lineno}: a dimension not literal"
                )
                dimensions.setdefault(call.func.value.id, []).append(str(name.value))  # type: ignore[attr-defined]
        for call in calls:
            receiver = call.func.value.id  # type: ignore[attr-defined]
            if call.func.attr == "add_metric" and receiver in dimensions:  # type: ignore[attr-defined]
                where = f"{path.relative_to(ROOT)}:{call.lineno}"
                for text in _strings(call.args[0], call, parents, where):
                    yield text, tuple(sorted(dimensions[receiver]))


@pytest.fixture(scope="module")
def metrics() -> dict[str, str]:
    found = {name: where for path in SOURCES for name, where in published_metrics(path)}
    return found


def dashboard(resources: dict[str, Any], name: str) -> dict[str, Any]:
    """A dashboard's JSON, each ${...} of its Fn::Sub replaced by its name in brackets."""
    sub = resources[name]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert isinstance(sub, str)
    document: dict[str, Any] = json.loads(_SUB.sub(r"<\1>", sub))
    return document


@pytest.fixture(scope="module")
def boards(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every dashboard: the stack's, and those of optional parts (serve) that name
    resources only they have."""
    names = [n for n, r in resources.items() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    assert "Dashboard" in names
    return {name: dashboard(resources, name) for name in names}


@pytest.fixture(scope="module")
def body(boards: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """All dashboards' widgets together: what an operator can see somewhere."""
    return {"widgets": [w for board in boards.values() for w in board["widgets"]]}


def widgets(body: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [w for w in body["widgets"] if w["type"] == kind]


def drawn(body: dict[str, Any]) -> list[list[Any]]:
    return [line for w in widgets(body, "metric") for line in w["properties"]["metrics"]]


def test_the_code_publishes_metrics_the_test_can_read(metrics: dict[str, str]) -> None:
    # The reader found the literal names and the reconcile handler's loop over its counts.
    assert {"PushToDurableLatency", "BlobsSkipped", "ImagesStillMissing", "BytesFreed"} <= set(
        metrics
    )
    assert len(metrics) >= 20


def test_every_published_metric_is_drawn_with_the_dimension_it_is_published_with(
    metrics: dict[str, str], body: dict[str, Any], resources: dict[str, Any]
) -> None:
    services = {
        f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
        for f in resources.values()
        if f["Type"] == "AWS::Serverless::Function"
    }
    namespaces = {
        f["Properties"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
        for f in resources.values()
        if f["Type"] == "AWS::Serverless::Function"
    }
    assert namespaces == {NAMESPACE} and len(services) == 1
    ours = {line[1]: line[2:4] for line in drawn(body) if line[0] == NAMESPACE}
    undrawn = {name: where for name, where in metrics.items() if name not in ours}
    assert not undrawn, f"metrics with no widget: {undrawn}"
    # Powertools' one dimension is the service: a widget with another would draw nothing.
    assert {tuple(dims) for dims in ours.values()} == {("service", *services)}
    assert set(ours) <= set(metrics), "a widget draws a metric nothing publishes"


_SEARCH = re.compile(r"SEARCH\('\{(\w+),([\w,]+)\} (.*?)', '(\w+)', (\d+)\)")


def test_metrics_per_source_registry_are_drawn_by_a_search_on_their_dimensions(
    body: dict[str, Any],
) -> None:
    per_registry = {name: dims for path in SOURCES for name, dims in dimensioned_metrics(path)}
    # The reconcile publishes its counts per account and region (issue 21, item 3).
    assert "ImagesStillMissing" in per_registry
    assert set(per_registry.values()) == {("account", "region")}
    searched: dict[str, tuple[str, ...]] = {}
    for line in drawn(body):
        expression = line[0].get("expression", "") if isinstance(line[0], dict) else ""
        for namespace, schema, terms, _, _ in _SEARCH.findall(expression):
            assert namespace == NAMESPACE
            for name in re.findall(r'MetricName="(\w+)"', terms):
                searched[name] = tuple(sorted(schema.split(",")))
    for name, dims in per_registry.items():
        assert searched.get(name) == tuple(sorted((*dims, "service"))), name
    assert set(searched) <= set(per_registry), "a search draws a metric nothing publishes"


def test_every_alarm_is_in_an_alarm_widget(body: dict[str, Any], resources: dict[str, Any]) -> None:
    alarms = {name for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    shown = {a for w in widgets(body, "alarm") for a in w["properties"]["alarms"]}
    assert shown == {f"<{name}.Arn>" for name in alarms}


def test_each_function_and_queue_has_its_aws_metrics(
    body: dict[str, Any], resources: dict[str, Any]
) -> None:
    functions = {n for n, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}
    lines = {tuple(line[:4]) for line in drawn(body) if isinstance(line[0], str)}
    for function in functions:
        for metric in ("Errors", "Throttles", "Duration"):
            assert ("AWS/Lambda", metric, "FunctionName", f"<{function}>") in lines
    dead_letter = {
        r["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for r in resources.values()
        if r["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" in r["Properties"]
    }
    sources = {
        n
        for n, r in resources.items()
        if r["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" in r["Properties"]
    }
    assert dead_letter and sources
    for queue in dead_letter:
        depth = ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName")
        assert (*depth, f"<{queue}.QueueName>") in lines
    for queue in sources:
        age = ("AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName")
        assert (*age, f"<{queue}.QueueName>") in lines


def test_push_latency_is_drawn_at_p50_and_p99(body: dict[str, Any]) -> None:
    stats = {
        line[-1].get("stat")
        for line in drawn(body)
        if line[:2] == [NAMESPACE, "PushToDurableLatency"] and isinstance(line[-1], dict)
    }
    assert {"p50", "p99"} <= stats


def test_the_widgets_fit_the_grid_without_overlapping(boards: dict[str, dict[str, Any]]) -> None:
    for body in boards.values():
        _fits(body)


def _fits(body: dict[str, Any]) -> None:
    cells: set[tuple[int, int]] = set()
    for widget in body["widgets"]:
        x, y, width, height = (widget[k] for k in ("x", "y", "width", "height"))
        assert x + width <= 24  # the dashboard grid is 24 columns wide
        area = {(x + i, y + j) for i in range(width) for j in range(height)}
        assert not area & cells, widget
        cells |= area


def test_the_runbook_text_names_the_docs_that_exist(body: dict[str, Any]) -> None:
    (text,) = widgets(body, "text")
    named = set(re.findall(r"docs/[a-z-]+\.md", text["properties"]["markdown"]))
    assert named and all((ROOT / doc).is_file() for doc in named)
    assert "ecr-backup status --stack <AWS::StackName>" in text["properties"]["markdown"]


def test_the_stack_outputs_the_dashboard_url(template: dict[str, Any]) -> None:
    url = template["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]
    assert url.endswith("#dashboards/dashboard/${Dashboard}")
