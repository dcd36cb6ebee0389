"""The caller's deadline (the Lambda's remaining time) as a plain value the engine can ask."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ecr_backup.errors import OutOfTimeError
from ecr_backup.settings import DEADLINE_RESERVE_SECONDS, MiB


@dataclass(frozen=True)
class Deadline:
    """When work must be over, and how fast a copy is assumed to go at the least.

    A copy starts only if, at `throughput_floor` bytes per second, it would end `reserve`
    seconds before the deadline: a copy that is not started costs a redelivery, one cut
    off by a timeout costs the whole batch.
    """

    expires_at: float  # on `clock`'s scale
    throughput_floor: float  # bytes per second
    reserve: float = DEADLINE_RESERVE_SECONDS
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    @classmethod
    def after(
        cls,
        seconds: float,
        *,
        throughput_floor_mibps: float,
        reserve: float = DEADLINE_RESERVE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> Deadline:
        return cls(clock() + seconds, throughput_floor_mibps * MiB, reserve, clock)

    def remaining(self) -> float:
        return self.expires_at - self.clock()

    def check(self, size: int, what: str) -> None:
        """Raise OutOfTimeError unless copying `size` bytes fits before the deadline."""
        needed = size / self.throughput_floor
        available = self.remaining() - self.reserve
        if needed > available:
            raise OutOfTimeError(
                f"{what}: not started, it needs about {needed:.0f} s at "
                f"{self.throughput_floor / MiB:g} MiB/s and {max(available, 0.0):.0f} s are left"
            )
