"""Which source accounts and regions the scheduled reconcile lists.

Three answers, chosen by the stack (ReconcileAccounts):
- "list": the accounts a parameter names (none: the stack's own account);
- "organization": every ACTIVE account AWS Organizations lists, read through a read-only
  role in the management or delegated administrator account (a suspended or closing
  account has no registry left to back up);
- "events": every account whose ECR events reached the backup (recorded as they arrive).
Regions come from a parameter (none: the stack's own region; with "events", the regions
the events came from). An account the
organization lists that has no source role yet is not dropped here: its registry fails
alone when listed, and the run says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from ecr_backup.coverage.reconcile import Source
from ecr_backup.errors import ConfigurationError

AccountsFrom = Literal["list", "organization", "events"]


class OrganizationAccounts(Protocol):
    def active_accounts(self) -> list[str]: ...


class SeenRegistry(Protocol):
    @property
    def account(self) -> str: ...

    @property
    def region(self) -> str: ...


class SeenSources(Protocol):
    def seen(self) -> Sequence[SeenRegistry]: ...


@dataclass(frozen=True)
class SourcePlan:
    """What one reconcile run lists, and what it knows it leaves out."""

    sources: tuple[Source, ...]
    accounts_from: AccountsFrom


def plan_sources(
    accounts_from: AccountsFrom,
    *,
    listed: Sequence[str],
    regions: Sequence[str],
    own: Source,
    organization: OrganizationAccounts | None = None,
    seen: SeenSources | None = None,
) -> SourcePlan:
    """Every (account, region) to reconcile, each once, in a stable order."""
    given_regions = tuple(regions)
    regions = given_regions or (own.region,)
    if accounts_from == "list":
        accounts: Iterable[str] = listed or (own.account,)
    elif accounts_from == "organization":
        if organization is None:
            raise ConfigurationError(
                "ReconcileAccounts=organization needs OrganizationReadRoleArn "
                "(ECR_BACKUP_ORGANIZATION_ROLE_ARN)",
                code="NoOrganizationRole",
            )
        accounts = organization.active_accounts()
    else:
        if seen is None:
            raise ConfigurationError("ReconcileAccounts=events needs the index", code="NoIndex")
        found = [Source(s.account, s.region) for s in seen.seen()]
        if not given_regions:
            # The registries the events came from, exactly.
            pairs = set(found) or {own}
            return SourcePlan(tuple(sorted(pairs, key=_order)), accounts_from)
        accounts = {s.account for s in found} or {own.account}
    unique = sorted(set(accounts))
    return SourcePlan(tuple(Source(a, r) for a in unique for r in regions), accounts_from)


def _order(source: Source) -> tuple[str, str]:
    return source.account, source.region
