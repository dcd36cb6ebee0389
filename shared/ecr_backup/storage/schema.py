"""The index table's one definition: `setup`, the tests and template.yaml (checked by a test)."""

from __future__ import annotations

from typing import Any

PARTITION_KEY = "pk"
SORT_KEY = "sk"

KEY_SCHEMA: list[dict[str, Any]] = [
    {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
    {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
]
ATTRIBUTE_DEFINITIONS: list[dict[str, Any]] = [
    {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
    {"AttributeName": SORT_KEY, "AttributeType": "S"},
]
BILLING_MODE = "PAY_PER_REQUEST"


def create_table_arguments(table_name: str) -> dict[str, Any]:
    return {
        "TableName": table_name,
        "KeySchema": KEY_SCHEMA,
        "AttributeDefinitions": ATTRIBUTE_DEFINITIONS,
        "BillingMode": BILLING_MODE,
        "SSESpecification": {"Enabled": True},
        "DeletionProtectionEnabled": True,
    }
