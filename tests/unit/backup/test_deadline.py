from __future__ import annotations

import pytest

from ecr_backup.backup.deadline import Deadline
from ecr_backup.errors import OutOfTimeError
from ecr_backup.settings import MiB


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_copy_starts_only_if_it_ends_before_the_reserve() -> None:
    clock = Clock()
    deadline = Deadline.after(60, throughput_floor_mibps=10, reserve=10, clock=clock)
    deadline.check(500 * MiB, "fits exactly")  # 50 s needed, 60 - 10 left
    with pytest.raises(OutOfTimeError, match=r"too big: not started, .* 50 s are left") as e:
        deadline.check(501 * MiB, "too big")
    assert e.value.retryable
    clock.now += 45
    deadline.check(50 * MiB, "5 s")
    with pytest.raises(OutOfTimeError):
        deadline.check(51 * MiB, "over 5 s")
    clock.now += 10  # past the reserve: nothing starts, not even an empty copy
    with pytest.raises(OutOfTimeError, match="0 s are left"):
        deadline.check(0, "anything")
