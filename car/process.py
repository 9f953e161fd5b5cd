"""A car process ends with the one that started it (the supervisor's nodes, the isolated actuator),
and when it is told to (SIGTERM, SIGINT).

The parent names itself in the child's environment (`PARENT_ENV`); the child asks Linux for SIGTERM
when that parent dies, so its own signal handler brings the outputs to neutral and no node outlives
the graph that owns the car.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Mapping

PARENT_ENV = "RACER_PARENT_PID"
PR_SET_PDEATHSIG = 1


def die_with_parent(env: Mapping[str, str] = os.environ) -> None:
    """On Linux, in a process whose parent set PARENT_ENV in `env`: SIGTERM when that parent dies (at once
    if it already has). Elsewhere, or without PARENT_ENV, nothing."""
    parent = env.get(PARENT_ENV)
    if not parent or sys.platform != "linux":
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):  # it died before the request was in place
        os.kill(os.getpid(), signal.SIGTERM)


class StopSignals:
    """SIGTERM and SIGINT, noted by a handler that takes no lock; `wait` turns them into `event`.

    A handler that calls `threading.Event.set()` can hang its process for good: a second signal
    (Ctrl-C pressed twice, or `timeout`, which signals the child and then its process group) runs the
    handler again inside the first one's `set()`, which holds the event's lock. Appending to a list
    takes none, and whoever waits sets the event outside any handler.
    """

    POLL_S = 0.05

    def __init__(self, event: threading.Event | None = None) -> None:
        self.event = event or threading.Event()
        self._received: list[int] = []

    def install(self) -> dict[int, object]:
        """Handle SIGTERM and SIGINT here (main thread only); returns the handlers they replace."""
        return {sig: signal.signal(sig, lambda number, _: self._received.append(number))
                for sig in (signal.SIGTERM, signal.SIGINT)}

    def is_set(self) -> bool:
        """A signal came, or the event was set."""
        return bool(self._received) or self.event.is_set()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Until a signal comes or the event is set (then the event is set), or `timeout_s` passes."""
        remaining = float("inf") if timeout_s is None else timeout_s
        while not self._received and remaining > 0 and not self.event.wait(min(self.POLL_S, remaining)):
            remaining -= self.POLL_S
        if self._received:
            self.event.set()
        return self.event.is_set()


def close_all(closers: Iterable[Callable[[], None]]) -> None:
    """Run every closer in order, even when one raises (a console that fails to stop must not keep the
    actuator from neutral, nor the camera's reader thread from ending); then raise the error (the last, if several)."""
    with contextlib.ExitStack() as stack:
        for close in reversed(list(closers)):  # the stack runs its callbacks last-in first-out
            stack.callback(close)
