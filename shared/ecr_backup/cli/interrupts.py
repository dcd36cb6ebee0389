"""Ctrl-C and SIGTERM answer at once: exit 130 within seconds, whatever is in flight.

The first signal cancels the run (ecr_backup.cancellation: streams stop between chunks,
blocked reads have their connections shut) and raises Cancelled in the main thread, so
the command unwinds through its cleanup: multipart uploads aborted, upload sessions
deleted, partial files removed. Should a transfer still hold on (a write to a peer that
stopped reading cannot be interrupted), a watchdog ends the process when the grace period
is over. A second signal ends it immediately.

Only the command line installs these handlers; a Lambda keeps the runtime's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

from ecr_backup.cancellation import CANCELLATION, Cancelled
from ecr_backup.errors import ExitCode

# Cleanup after the first signal (aborts, DELETEs) gets this long before the process ends:
# with the interpreter's own exit, well inside the 3 s an interrupted command promises.
CLEANUP_GRACE_S = 2.0
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _exit_now() -> None:
    for stream in (sys.stderr, sys.stdout):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(ExitCode.INTERRUPTED)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if CANCELLATION.cancelled:
        _exit_now()  # the second interrupt: no more waiting
    CANCELLATION.cancel()
    watchdog = threading.Timer(CLEANUP_GRACE_S, _exit_now)
    watchdog.daemon = True
    watchdog.start()
    raise Cancelled


@contextlib.contextmanager
def interrupts_cancel() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM cancel the run (no-op outside the main thread,
    where Python does not deliver signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    CANCELLATION.reset()
    previous = {sig: signal.signal(sig, _on_signal) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
