"""Fixtures of the template tests: the templates as written and as SAM transforms them."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from tests.infra.test_template import ROOT, load


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load(ROOT / "template.yaml")


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    resources: dict[str, Any] = template["Resources"]
    return resources


@pytest.fixture(scope="module")
def transformed(template: dict[str, Any]) -> dict[str, Any]:
    """The CloudFormation SAM deploys: shows what SAM adds (roles, policies, mappings)."""
    sam = json.loads(json.dumps(template))
    # The translator wants S3 locations; `sam deploy` substitutes them the same way.
    for resource in sam["Resources"].values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str):
                props[key] = "s3://artifacts/code.zip"
    translator = Translator(
        None, Parser(), boto_session=boto3.session.Session(region_name="us-east-1")
    )
    result: dict[str, Any] = translator.translate(
        sam, parameter_values={}, get_managed_policy_map=lambda: {}
    )
    return result
