"""Progress on a terminal: one line on stderr, redrawn at most five times a second."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from ecr_backup.progress import ProgressFactory
from ecr_backup.settings import MiB


class ProgressBar:
    """A one-line progress bar on a terminal (stderr); silent elsewhere."""

    _WIDTH = 28

    def __init__(self, total: int, stream: TextIO | None = None, *, label: str = "restore") -> None:
        self.total = max(total, 1)
        self.label = label
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self._stream, "isatty", lambda: False)())
        self._done = 0
        self._lock = threading.Lock()
        self._drawn = 0.0
        self._start = time.monotonic()

    @classmethod
    def factory(cls, stream: TextIO | None = None) -> ProgressFactory:
        """Bars on `stream` (stderr by default) for the library's long operations."""
        return lambda total, label: cls(total, stream, label=label)

    def advance(self, amount: int) -> None:
        with self._lock:
            self._done += amount
            now = time.monotonic()
            if self.enabled and now - self._drawn >= 0.2:
                self._drawn = now
                self._draw(now)

    def _draw(self, now: float) -> None:
        share = min(self._done / self.total, 1.0)
        filled = int(share * self._WIDTH)
        rate = self._done / max(now - self._start, 1e-6)
        self._stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (self._WIDTH - filled)}] {share:4.0%} "
            f"{_mib(self._done)} / {_mib(self.total)} MiB  {_mib(rate)} MiB/s "
        )
        self._stream.flush()

    def finish(self) -> None:
        if self.enabled:
            with self._lock:
                self._draw(time.monotonic())
                self._stream.write("\n")
                self._stream.flush()


def _mib(size: float) -> str:
    return f"{size / MiB:.1f}"
