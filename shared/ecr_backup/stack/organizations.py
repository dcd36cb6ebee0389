"""AWS Organizations as the scheduled reconcile reads it: the member accounts, through a
read-only role in the management or delegated administrator account
(templates/organization-read-role.yaml). Nothing here writes."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ecr_backup.awserrors import translate
from ecr_backup.errors import StackError

# ListAccounts' `State` (and the older `Status`): only an ACTIVE account has registries
# to back up; SUSPENDED, PENDING_CLOSURE and CLOSED ones are left out.
ACTIVE = "ACTIVE"


class OrganizationListing:
    def __init__(self, client: Any) -> None:
        self._org = client

    def active_accounts(self) -> list[str]:
        try:
            pages = self._org.get_paginator("list_accounts").paginate()
            return sorted(
                account["Id"]
                for page in pages
                for account in page.get("Accounts", [])
                if (account.get("State") or account.get("Status")) == ACTIVE
            )
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "AWS Organizations ListAccounts", StackError) from e
