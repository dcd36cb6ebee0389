"""One JSON schema for every command: the parser's commands, the models and docs/json.md
agree, and each documented example is exactly what its model writes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ecr_backup.cli import build_parser
from ecr_backup.schema import SCHEMAS, render
from tests.helpers import parser_commands as commands

DOCS = Path(__file__).resolve().parents[3] / "docs" / "json.md"
DIGEST = "sha256:" + "ab" * 32


def documented() -> dict[str, list[Any]]:
    """docs/json.md's examples, by the command whose section holds them."""
    examples: dict[str, list[Any]] = {}
    section = None
    for block in re.split(r"^## `([a-z-]+)`$", DOCS.read_text(), flags=re.M)[1:]:
        if section is None:
            section = block
            continue
        examples[section] = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", block, re.S)]
        section = None
    return examples


def test_every_command_has_a_schema_and_a_documented_example() -> None:
    # A command added later without a model and an example in docs/json.md fails here.
    assert set(commands()) == set(SCHEMAS)
    examples = documented()
    assert set(examples) == set(SCHEMAS)
    for name, documents in examples.items():
        assert documents, f"docs/json.md shows no example for {name}"
        for document in documents:
            assert render(name, document) == document, name


def test_every_command_takes_the_global_options_on_either_side() -> None:
    parser = build_parser()
    for name, sub in commands().items():
        options = {o for a in sub._actions for o in a.option_strings}
        assert {"--json", "-q", "--quiet", "-v", "--no-progress", "--no-trunc"} <= options, name
    args = parser.parse_args(["tags", "team/app", "--json", "--no-trunc"])
    assert args.json and args.no_trunc and not args.quiet


@pytest.mark.parametrize(
    "document",
    [
        [{"repository": "a", "tag": "t", "digest": "sha256:abc", "time": "2026-01-01T00:00:00Z",
          "state": "current", "total_size": 1}],
        [{"repository": "a", "tag": "t", "digest": DIGEST, "time": "2026-01-01T00:00:00",
          "state": "current", "total_size": 1}],
        [{"repository": "a", "tag": "t", "digest": DIGEST, "time": "2026-01-01T00:00:00Z",
          "state": "current", "total_size": -1}],
        [{"repository": "a", "tag": "t", "digest": DIGEST, "time": "2026-01-01T00:00:00Z",
          "state": "current", "total_size": 1, "size": 1}],
    ],
    ids=["short digest", "time without zone", "negative size", "unknown field"],
)  # fmt: skip
def test_the_schema_refuses_what_it_must(document: Any) -> None:
    with pytest.raises(ValidationError):
        render("tags", document)


def test_times_are_written_in_utc_to_the_second() -> None:
    when = "2026-01-01T02:00:00.123456+02:00"
    row: dict[str, object] = {"repository": "a", "tag": "t", "digest": DIGEST, "time": when}
    row.update(state="removed", total_size=None)
    assert render("tags", [row])[0]["time"] == "2026-01-01T00:00:00Z"
