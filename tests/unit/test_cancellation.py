"""The cancellation token: what an interrupt stops, and what it cleans up on the way."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterator

import pytest

from ecr_backup.cancellation import CANCELLATION, Cancelled
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.streams import VerifyingReader
from ecr_backup.settings import MiB


@pytest.fixture(autouse=True)
def not_cancelled() -> Iterator[None]:
    CANCELLATION.reset()
    yield
    CANCELLATION.reset()


class CancelsAfter:
    """A source that cancels the run once `limit` bytes were read from it."""

    def __init__(self, data: bytes, limit: int) -> None:
        self._source = io.BytesIO(data)
        self._limit = limit
        self.read_bytes = 0

    def read(self, amt: int = -1, /) -> bytes:
        data = self._source.read(amt)
        self.read_bytes += len(data)
        if self.read_bytes >= self._limit:
            CANCELLATION.cancel()
        return data


def test_check_raises_only_once_cancelled() -> None:
    CANCELLATION.check()
    CANCELLATION.cancel()
    with pytest.raises(Cancelled):
        CANCELLATION.check()
    # Cancelled is an interrupt, not an error a loop reports and goes on after.
    assert not isinstance(Cancelled(), Exception)


def test_cancel_closes_what_is_registered_and_only_while_registered() -> None:
    closed: list[str] = []
    with CANCELLATION.closing_on_cancel(lambda: closed.append("inside")):
        pass
    with CANCELLATION.closing_on_cancel(lambda: closed.append("in flight")):
        CANCELLATION.cancel()
        assert closed == ["in flight"]
    # Registered after the cancellation: closed at once.
    with CANCELLATION.closing_on_cancel(lambda: closed.append("late")):
        assert closed == ["in flight", "late"]


def test_a_cancelled_sleep_ends_at_once() -> None:
    threading.Timer(0.05, CANCELLATION.cancel).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        CANCELLATION.sleep(30)
    assert time.monotonic() - started < 5


def test_a_verifying_reader_stops_at_the_next_chunk() -> None:
    data = os.urandom(4 * MiB)
    source = CancelsAfter(data, 2 * MiB)
    reader = VerifyingReader(source, Digest.of(data), len(data))
    reader.read(MiB)
    with pytest.raises(Cancelled):  # the read during which the run was cancelled
        reader.read(MiB)
    with pytest.raises(Cancelled):
        reader.read(MiB)
    assert source.read_bytes == 2 * MiB
