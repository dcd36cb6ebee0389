"""Backoff for registry requests, written once.

`RetryPolicy`: capped exponential backoff with full jitter, so that concurrent Lambdas
hitting a throttled registry spread out, and the server's `Retry-After` when it sends one.
The registry client retries requests it can send again; restore/push.py starts a streamed
upload over with the same policy.

AWS calls use botocore's own retry handler, configured once in awssession.client_config():
"standard" mode retries throttling (ThrottlingException, SlowDown, 429,
RequestLimitExceeded...), 500/502/503/504, connection errors and read timeouts, with
capped, jittered exponential backoff, within settings.AWS_MAX_ATTEMPTS. "adaptive" would
add a client-side rate limiter per client; our clients live for one invocation or one CLI
run, too short for it to learn a rate.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from ecr_backup.settings import (
    REGISTRY_ATTEMPTS,
    RETRY_BASE_DELAY_S,
    RETRY_MAX_DELAY_S,
    RETRY_MAX_RETRY_AFTER_S,
)

# Statuses a registry may answer differently later: throttling and server trouble.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait: `attempts` counts the first try."""

    attempts: int = REGISTRY_ATTEMPTS
    base_delay: float = RETRY_BASE_DELAY_S
    max_delay: float = RETRY_MAX_DELAY_S
    max_retry_after: float = RETRY_MAX_RETRY_AFTER_S

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0 for the first retry).

        The server's Retry-After wins (capped: a registry asking for an hour is answered
        by failing, not by a Lambda sleeping out its time); otherwise full jitter.
        """
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
