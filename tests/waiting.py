"""Waiting for observable events instead of fixed delays, so that no test depends on machine speed.

``wait_for(predicate, what)`` polls until ``predicate()`` is true. With ``proc`` it also stops
(returning False) when that process has exited first. ``HANG_GUARD_S`` only turns a hang (an event
that will never come) into a failure with a message; it is far above any run time on a loaded
machine and never decides a pass.
"""

import time

HANG_GUARD_S = 900.0  # seconds before a wait is declared hung
POLL_S = 0.05


def wait_for(predicate, what: str, proc=None, guard: float = HANG_GUARD_S) -> bool:
    """True once ``predicate()`` holds; False if ``proc`` exited before it did."""
    deadline = time.monotonic() + guard
    while True:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return bool(predicate())
        if time.monotonic() > deadline:
            raise AssertionError(f"hung: still waiting for {what} after {guard:.0f} s")
        time.sleep(POLL_S)
