"""Stopping a run at once: one process-wide cancellation token.

The command line cancels it on the first Ctrl-C or SIGTERM (cli/interrupts.py); nothing
else does, so in a Lambda it stays unset and each check costs one flag read. Work in
flight notices it in two ways:

* the streaming loops call `check()` between chunks, and the places that start new work
  (a blob copy, an upload session, a retry) call it before they start;
* a blocked read cannot check anything, so what streams registers a way to shut its
  connection (`closing_on_cancel`): cancelling shuts it, and the read returns at once.

`Cancelled` is a KeyboardInterrupt, not an EcrBackupError: code that reports one failed
image and goes on to the next must not go on after an interrupt. The `finally` and
`except BaseException` blocks on its way still run, and they are what aborts multipart
uploads, cancels registry upload sessions and removes partial files.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator


class Cancelled(KeyboardInterrupt):
    """The run was interrupted; raised where work in flight notices it."""


class Cancellation:
    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._closers: dict[int, Callable[[], None]] = {}
        self._ids = itertools.count()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        """Stop new work and shut every registered connection (callable from a signal handler:
        it takes no lock a handler could already hold, so it never blocks on one)."""
        self._event.set()
        for close in list(self._closers.values()):
            with contextlib.suppress(Exception):
                close()

    def check(self) -> None:
        """Raise Cancelled once the run is cancelled."""
        if self._event.is_set():
            raise Cancelled

    def sleep(self, seconds: float) -> None:
        """time.sleep that an interrupt cuts short (a retry's backoff can last seconds)."""
        if self._event.wait(seconds):
            raise Cancelled

    @contextlib.contextmanager
    def closing_on_cancel(self, close: Callable[[], None]) -> Iterator[None]:
        """Call `close` if the run is cancelled while the block runs (or was already)."""
        key = next(self._ids)
        with self._lock:
            self._closers[key] = close
        try:
            if self._event.is_set():
                close()
            yield
        finally:
            with self._lock:
                self._closers.pop(key, None)

    def reset(self) -> None:
        """Back to not cancelled (tests, and a CLI run called in-process after another)."""
        self._event.clear()


CANCELLATION = Cancellation()


def check_cancelled() -> None:
    CANCELLATION.check()


def cancellable_sleep(seconds: float) -> None:
    CANCELLATION.sleep(seconds)
