"""Ctrl-C and SIGTERM answer at once: exit 130 within seconds, whatever is in flight.

The first signal cancels the run (ecr_backup.cancellation: streams stop between chunks,
blocked reads have their connections shut) and raises Cancelled in the main thread, so
the command unwinds through its cleanup: multipart uploads aborted, upload sessions
deleted, partial files removed. Should a transfer still hold on (a write to a peer that
stopped reading cannot be interrupted), a watchdog ends the process when the grace period
is over. A second signal ends it immediately.

The cancellation, the watchdog and the second signal do not wait for the main thread.
Python runs a signal handler only there, between two bytecodes, so a main thread held in
C code that retries its system call, or a handler that must not start a thread while the
main thread holds threading's own locks, could hold them back. Instead, the C-level
handler writes each signal's number to a socket (signal.set_wakeup_fd), and a watcher
thread, started with the handlers, acts on it. The main thread's handler raises Cancelled.

Only the command line installs these handlers; a Lambda keeps the runtime's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import NoReturn

from ecr_backup.cancellation import CANCELLATION, Cancelled
from ecr_backup.errors import ExitCode

# Cleanup after the first signal (aborts, DELETEs) gets this long before the process ends:
# with the interpreter's own exit, well inside the 3 s an interrupted command promises.
CLEANUP_GRACE_S = 2.0
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_raised = threading.Event()  # the main thread's handler has raised Cancelled once


def _exit_now() -> NoReturn:
    for stream in (sys.stderr, sys.stdout):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(ExitCode.INTERRUPTED)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _raised.is_set():
        _exit_now()  # the second interrupt: no more waiting (the watcher sees it too)
    _raised.set()
    CANCELLATION.cancel()  # the watcher does too; whichever runs first stops the streams
    raise Cancelled


class _Watcher:
    """Reads the signal numbers the C-level handler writes: the first signal cancels the run
    and starts the grace period, its end or a second signal ends the process."""

    def __init__(self) -> None:
        self._reader, self.writer = socket.socketpair()
        self.writer.setblocking(False)  # set_wakeup_fd needs it: a handler must never block
        self._thread = threading.Thread(target=self._watch, name="interrupts", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        deadline: float | None = None
        while True:
            if deadline is None:
                self._reader.settimeout(None)
            elif (left := deadline - time.monotonic()) > 0:
                self._reader.settimeout(left)
            else:
                _exit_now()  # the grace period is over
            try:
                numbers = self._reader.recv(64)
            except TimeoutError:
                _exit_now()
            if not numbers:
                return
            for number in numbers:
                if number not in _SIGNALS or signal.getsignal(number) is not _on_signal:
                    continue  # another handler's signal (serve's SIGTERM stops it gently)
                if deadline is not None:
                    _exit_now()  # the second interrupt
                CANCELLATION.cancel()
                deadline = time.monotonic() + CLEANUP_GRACE_S

    def stop(self) -> None:
        self.writer.close()  # the watcher's recv returns empty
        self._thread.join()
        self._reader.close()


@contextlib.contextmanager
def interrupts_cancel() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM cancel the run (no-op outside the main thread,
    where Python does not deliver signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    CANCELLATION.reset()
    _raised.clear()
    watcher = _Watcher()
    previous_fd = signal.set_wakeup_fd(watcher.writer.fileno(), warn_on_full_buffer=False)
    previous = {sig: signal.signal(sig, _on_signal) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(previous_fd)
        # Once cancelled (by either handler: the signal's number may still be on its way to
        # the watcher), the watcher keeps its deadline: the interpreter's exit still waits
        # for the threads of an upload that holds on.
        if not CANCELLATION.cancelled:
            watcher.stop()
