"""The command line's signal handling, in a child process (signals go to a whole process).

The commands themselves are interrupted with a 1 GiB layer in flight in
tests/integration/test_interrupts.py; here, a run whose cleanup hangs shows the two last
resorts: the watchdog, and the second signal; and a main thread that never gets to run
Python's handler is ended all the same.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from ecr_backup.cli.interrupts import CLEANUP_GRACE_S

# Cleanup that never ends: the run is cancelled, and the code on its way out hangs.
HANGING_CLEANUP = """
import sys, time
from ecr_backup.cancellation import Cancelled
from ecr_backup.cli.interrupts import interrupts_cancel
with interrupts_cancel():
    try:  # entered before "ready": a signal right after it lands inside
        print("ready", flush=True)
        time.sleep(60)
    except Cancelled:
        print("cancelled", flush=True)
        time.sleep(60)
sys.exit(0)
"""


# A main thread that never runs Python's handler: it takes no signal (its mask blocks them,
# so the kernel hands them to another thread), and its sleep goes on.
DEAF_MAIN_THREAD = """
import signal, sys, time
from ecr_backup.cli.interrupts import interrupts_cancel
with interrupts_cancel():
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    print("ready", flush=True)
    time.sleep(60)
sys.exit(0)
"""


def start(program: str = HANGING_CLEANUP) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    return child


def test_a_hanging_cleanup_is_ended_by_the_watchdog_with_exit_130() -> None:
    child = start()
    sent = time.monotonic()
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 130
    assert out == "cancelled\n"
    assert CLEANUP_GRACE_S <= time.monotonic() - sent < 3


def test_a_second_signal_exits_at_once() -> None:
    child = start()
    assert child.stdout is not None
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    assert child.stdout.readline() == "cancelled\n"
    child.send_signal(signal.SIGINT)
    child.communicate(timeout=30)
    assert child.returncode == 130
    assert time.monotonic() - sent < CLEANUP_GRACE_S  # not the watchdog's doing


def test_the_watchdog_does_not_wait_for_the_main_thread() -> None:
    child = start(DEAF_MAIN_THREAD)
    sent = time.monotonic()
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 130
    assert out == ""  # the main thread never learnt of it
    assert CLEANUP_GRACE_S <= time.monotonic() - sent < 3


def test_a_second_signal_ends_it_without_the_main_thread() -> None:
    child = start(DEAF_MAIN_THREAD)
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    time.sleep(0.2)
    child.send_signal(signal.SIGINT)
    child.communicate(timeout=30)
    assert child.returncode == 130
    assert time.monotonic() - sent < CLEANUP_GRACE_S
